"""What a live run is told and what it reports: settings, counters, frames, results, events.

These are the types of `live.LiveJob`'s interface, importable from `gradcam_client.live.job`.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from gradcam_client.errors import InputError
from gradcam_client.jobs.settings import ENCODER_PRESETS
from gradcam_client.live.output import restream_format
from gradcam_client.live.source import SourceEvent, SourceInfo
from gradcam_client.live.source_guard import SourceGuard

LiveEvent = SourceEvent
"""Something that happened during a run (``kind``, one-line ``message``): "listening",
"opened", "lost", "reopened", "gave-up", "ended", "segment", "restream", "budget", "stopped"."""


@dataclass(frozen=True)
class LiveSettings:
    """How a live run reads its source and what else it makes (see `LiveJob`).

    realtime: None decides by the source (streams and cameras: yes; an HTTP(S) file: no);
        True skips frames when slower than the source, False processes every frame.
    open_timeout / read_timeout: seconds to wait for a source to start / for its next data.
    reconnect_deadline: seconds to keep reopening a source that stopped (0: end the run).
    duration: stop after this many seconds (None: until stopped or the source ends).
    restream: an address to send the composed frames to (see `live_output.Restream`).
    batch_size / max_in_flight: frames per request at most, and requests in flight at most;
        small values keep the latency low (None: in real time one frame, the newest, per
        request, otherwise `JobSettings`' batch size up to 4; in flight at most 2).
    buffer: decoded frames waiting at most (None: `batch_size`).
    queue_timeout: seconds a request may wait in the server's queue; past that the server
        drops it and its frames count as skipped (`LiveStats.turned_away`), as do frames of a
        request refused because the queue is full (None: wait and retry as files do).
    keyframe_seconds: key-frame interval of the recording and the re-stream, which is how
        much a crash can lose at most.
    encoder_preset: libx264 preset of the recording (the re-stream is always `ultrafast`).
        A live run must keep up with its source on the same CPU, so the fastest by default:
        at 1920x1080 it costs about 0.4 of `superfast`'s CPU for about 1.4 times the bytes
        (bench/results/encoder_cost.md); `JobSettings.encoder_preset` is for files.
    guard: for an address a stranger typed: every opening is checked and confined (see
        `source_guard`); None trusts the address.
    max_size: the largest frame (long side, short side) in either orientation: a source
        declaring larger frames is refused, one whose frames grow larger is stopped.
    max_fps: a source declaring a higher frame rate is refused.
    max_bytes: the run stops once its recordings and predictions hold this many bytes (the
        files are kept).
    """

    realtime: bool | None = None
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect_deadline: float = 30.0
    duration: float | None = None
    restream: str | None = None
    batch_size: int | None = None
    max_in_flight: int | None = None
    buffer: int | None = None
    queue_timeout: float | None = 0.25
    keyframe_seconds: float = 1.0
    encoder_preset: str = "ultrafast"
    guard: SourceGuard | None = None
    max_size: tuple[int, int] | None = None
    max_fps: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.open_timeout <= 0 or self.read_timeout <= 0:
            raise InputError("the open and read time-outs must be positive")
        if self.reconnect_deadline < 0:
            raise InputError("the reconnect deadline cannot be negative")
        if self.duration is not None and self.duration <= 0:
            raise InputError("the duration must be positive")
        if self.queue_timeout is not None and self.queue_timeout <= 0:
            raise InputError("the queue time-out must be positive")
        if self.restream is not None:
            restream_format(self.restream)
        if self.encoder_preset not in ENCODER_PRESETS:
            raise InputError(
                f"unknown encoder preset {self.encoder_preset!r}; choose from "
                f"{', '.join(ENCODER_PRESETS)}"
            )
        if (self.max_fps is not None and self.max_fps <= 0) or (
            self.max_bytes is not None and self.max_bytes <= 0
        ):
            raise InputError("the frame rate and byte limits must be positive")

    def oversized(self, width: int, height: int) -> bool:
        """Whether a frame of this size is over `max_size` (in either orientation)."""
        if self.max_size is None:
            return False
        long_side, short_side = sorted((width, height), reverse=True)
        return long_side > self.max_size[0] or short_side > self.max_size[1]

    def size_limit(self) -> str:
        long_side, short_side = self.max_size or (0, 0)
        return f"{long_side}x{short_side}"


@dataclass(frozen=True)
class LiveStats:
    """Counters of a run so far. ``received == processed + skipped + in progress``.

    latency_p50 / latency_p95: seconds from a frame's arrival to its composed frame, over the
        last `LATENCY_WINDOW` frames while running, over the whole run in `LiveResult`.
    """

    seconds: float  # since the run started
    received: int  # frames decoded from the source
    processed: int  # frames explained and composed
    skipped: int  # frames dropped unprocessed (the run was slower than the source, or stopped)
    corrupt: int  # packets of the source that failed to decode
    reconnects: int  # times the source was reopened
    latency_p50: float | None
    latency_p95: float | None
    restreamed: int = 0  # frames sent to the re-stream
    turned_away: int = 0  # of the skipped: frames the server's queue refused or timed out

    @property
    def skipped_fraction(self) -> float:
        return self.skipped / self.received if self.received else 0.0

    @property
    def fps(self) -> float:
        """Frames processed per second."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for people."""
        text = (
            f"{self.processed} frames explained of {self.received} received, "
            f"{self.skipped} skipped ({100 * self.skipped_fraction:.0f} %)"
        )
        if self.latency_p50 is not None and self.latency_p95 is not None:
            text += (
                f"; latency p50 {1000 * self.latency_p50:.0f} ms, "
                f"p95 {1000 * self.latency_p95:.0f} ms"
            )
        if self.turned_away:
            text += f" ({self.turned_away} turned away by the busy server)"
        if self.reconnects:
            text += f"; source reopened {self.reconnects} time(s)"
        return text


LATENCY_WINDOW = 500
"""Frames over which the running latency percentiles are taken."""


@dataclass(frozen=True)
class LiveFrame:
    """One composed frame, as `LiveJob` reports it to `on_frame`.

    picture: the composed frame, yuv420p ``(H * 3 / 2, W)`` or RGB ``(H, W, 3)`` as
        `pixel_format` says; `rgb()` gives RGB either way.
    record: its predictions, the same JSON object as a line of the predictions file
        (``class_name``, ``score``, ``top5``, ``explained_name``, ``time`` since the run
        started, ``source_frame``, ``segment``, ``latency_ms``).
    """

    index: int  # among the processed frames
    source_index: int  # among the frames received
    segment: int  # 0, then 1, 2, ... after each reopening of the source
    seconds: float  # arrival, since the run started
    latency: float  # seconds from arrival to this composed frame
    picture: np.ndarray
    pixel_format: str
    record: dict[str, Any]
    stats: LiveStats

    def rgb(self) -> np.ndarray:
        """The composed frame as RGB ``(H, W, 3)`` uint8."""
        if self.pixel_format == "rgb24":
            return self.picture
        frame = av.VideoFrame.from_ndarray(self.picture, format="yuv420p")
        return frame.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG")


@dataclass(frozen=True)
class LiveResult:
    """How a live run ended and what it made."""

    ended: str  # "stopped", "duration reached", "source ended", "source lost"
    stats: LiveStats
    source: SourceInfo
    recordings: list[Path] = field(default_factory=list)  # one per segment
    predictions: Path | None = None


class Latencies:
    """Arrival-to-composed latencies of every processed frame (8 bytes each)."""

    def __init__(self) -> None:
        self.values = array("d")

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def recent(self, window: int | None = None) -> np.ndarray:
        """A copy of the last `window` values (None: all)."""
        data = np.frombuffer(self.values, np.float64) if self.values else np.zeros(0)
        return (data if window is None else data[-window:]).copy()

    def percentiles(self, window: int | None = None) -> tuple[float | None, float | None]:
        if not self.values:
            return None, None
        data = np.frombuffer(self.values, np.float64)
        if window is not None:
            data = data[-window:]
        p50, p95 = np.percentile(data, [50, 95])
        return float(p50), float(p95)
