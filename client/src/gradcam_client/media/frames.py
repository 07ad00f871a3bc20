"""What the client knows about media: file description, decoded frames, decoding report."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

CorruptPolicy = Literal["skip", "raise"]
PixelFormat = Literal["rgb24", "yuv420p"]


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video (or image) file before decoding it all.

    width, height: size of the frames as yielded, i.e. after applying `rotation`.
    fps: average frame rate (0.0 for an image or when unknown).
    frame_count: number of frames declared by the container, None when it does not say.
    duration: seconds, None when unknown.
    rotation: clockwise degrees (0, 90, 180, 270) applied to the stored frames to show them
        upright - the convention of the ``rotate`` tag of phone videos.
    codec: name of the video (or image) codec, e.g. "h264", "png".
    time_base: unit of `Frame.pts`, in seconds.
    start_time: presentation time of the first frame in seconds.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int | None
    duration: float | None
    has_audio: bool
    rotation: int
    codec: str
    time_base: Fraction
    start_time: float = 0.0
    audio_codec: str | None = None
    pix_fmt: str | None = None
    is_image: bool = False

    @property
    def resolution_wh(self) -> tuple[int, int]:
        """(width, height) of the yielded frames."""
        return self.width, self.height

    @property
    def estimated_frames(self) -> int | None:
        """`frame_count`, or an estimate from duration and fps (for progress bars)."""
        if self.frame_count:
            return self.frame_count
        if self.duration and self.fps:
            return max(1, round(self.duration * self.fps))
        return None


class Planes(NamedTuple):
    """A yuv420p picture as its three planes: Y (H, W), then U and V (H/2, W/2), uint8.

    They may be views of a decoder's frame (rows need not be contiguous) that the decoder
    still uses as a reference for later frames: read them, never write into them.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: upright uint8 image with its presentation time.

    image: RGB (H, W, 3) for pixel_format "rgb24"; for "yuv420p" the (H * 3 / 2, W) array of
        `av.VideoFrame.to_ndarray` (luma, then the U and V planes), BT.709 limited range, or
        the decoder's own `Planes` of it (read-only; see `MediaReader.pictures`).
    index: position among the yielded frames (skipped corrupt frames are not counted).
    pts: presentation timestamp in `VideoInfo.time_base` units; time: the same in seconds.
    duration: how long the frame is shown, in `VideoInfo.time_base` units, if known.
    thumbnail: the frame scaled to a small RGB size by the decoder's scaler, when asked for.
    """

    image: np.ndarray
    index: int
    pts: int
    time: float
    duration: int | None = None
    pixel_format: PixelFormat = "rgb24"
    thumbnail: np.ndarray | None = None


@dataclass(frozen=True)
class SkippedFrame:
    """A packet that failed to decode. index: its position counting decoded and skipped frames."""

    index: int
    time: float | None
    error: str


@dataclass
class DecodeReport:
    """What happened while decoding: frames yielded, corrupt frames skipped, early end."""

    frames: int = 0
    skipped: list[SkippedFrame] = field(default_factory=list)
    truncated: str | None = None
    """Why the input seems to end early (only set with ``allow_truncated=True``)."""

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line for the user, empty when there is nothing to say."""
        parts = []
        if self.skipped:
            times = ", ".join(
                f"{s.time:.3f} s" if s.time is not None else f"#{s.index}" for s in self.skipped[:5]
            )
            more = ", ..." if len(self.skipped) > 5 else ""
            noun = "frame" if len(self.skipped) == 1 else "frames"
            parts.append(f"skipped {len(self.skipped)} corrupt {noun} (at {times}{more})")
        if self.truncated:
            parts.append(f"input ends early ({self.truncated})")
        return "; ".join(parts)


def to_seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def frame_step(info: VideoInfo) -> int:
    """Nominal frame duration in `info.time_base` units (at least 1)."""
    fps = info.fps or 25.0
    return max(1, round(1 / (fps * info.time_base)))
