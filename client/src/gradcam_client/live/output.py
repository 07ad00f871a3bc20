"""Outputs of a live run besides its predictions: recording segments and a live re-stream.

The recording is a fragmented MP4 (see `VideoWriter`'s ``fragmented``): it plays up to its last
frames however the run ends. When the source has to be reopened the recording goes on in a new
file, ``<name>-2.mp4``, ``<name>-3.mp4``, ...

`Restream` sends the composed frames to a player as they are made: MPEG-TS over UDP, TCP or SRT
(``udp://127.0.0.1:5000``; watch with ``ffplay udp://127.0.0.1:5000``), a push to an RTSP
server (``rtsp://host:8554/gradcam``) or an RTMP server (``rtmp://host/live/key``). It encodes
on its own thread from a one-frame mailbox, so a slow network never holds the run up (frames
it could not send in time are left out of the re-stream only).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from gradcam_client.errors import OutputError
from gradcam_client.media.checks import ffmpeg_reason
from gradcam_client.media.frames import VideoInfo

RESTREAM_FORMATS = {
    "udp": "mpegts",
    "tcp": "mpegts",
    "srt": "mpegts",
    "http": "mpegts",
    "https": "mpegts",
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "rtmp": "flv",
    "rtmps": "flv",
}
"""The container sent for each kind of re-stream address."""

TIME_BASE = Fraction(1, 90000)


def recording_info(path: str | Path, width: int, height: int, fps: float) -> VideoInfo:
    """What a live recording's writer needs to know: H.264 video, no audio, no known length,
    times in `TIME_BASE` units."""
    return VideoInfo(
        path=Path(path),
        width=width,
        height=height,
        fps=fps,
        frame_count=None,
        duration=None,
        has_audio=False,
        rotation=0,
        codec="h264",
        time_base=TIME_BASE,
    )


def segment_path(output: str | Path, segment: int) -> Path:
    """The recording file of `segment` (0: `output` itself, then ``<stem>-2<suffix>``, ...)."""
    output = Path(output)
    if segment == 0:
        return output
    return output.with_name(f"{output.stem}-{segment + 1}{output.suffix}")


def restream_format(url: str) -> str:
    """The container for a re-stream address, or `OutputError` for an address it cannot take."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in RESTREAM_FORMATS:
        raise OutputError(
            f"cannot re-stream to this kind of address; use one of "
            f"{', '.join(f'{s}://' for s in RESTREAM_FORMATS)}",
            url,
        )
    return RESTREAM_FORMATS[scheme]


class Restream:
    """Encodes composed yuv420p pictures (H.264, no look-ahead) and sends them to `url`.

    `put` never blocks: a picture waiting when the next comes is replaced. The first failure
    (the server refuses, the network is gone) ends the re-stream and is reported once through
    `on_error`; the run itself goes on.
    """

    def __init__(
        self,
        url: str,
        fps: float,
        on_error: Callable[[str], None],
        *,
        crf: int = 23,
        keyframe_seconds: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.format = restream_format(url)
        self.fps = Fraction(fps or 25).limit_denominator(1001)
        self.on_error = on_error
        self.crf = crf
        self.keyframe_seconds = keyframe_seconds
        self.timeout = timeout
        self.sent = 0
        self.failed: str | None = None
        self._mailbox: tuple[np.ndarray, float] | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="restream", daemon=True)
        self._thread.start()

    def put(self, picture: np.ndarray, seconds: float) -> None:
        """Offer one composed yuv420p picture shown at `seconds` since the run started."""
        with self._wake:
            self._mailbox = (picture, seconds)
            self._wake.notify()

    def close(self, wait: float = 2.0) -> None:
        """Send what is waiting, end the stream and stop the thread (within `wait` seconds)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(wait)

    def _next(self) -> tuple[np.ndarray, float] | None:
        with self._wake:
            self._wake.wait_for(lambda: self._mailbox is not None or self._closing)
            item, self._mailbox = self._mailbox, None
            return item

    def _work(self) -> None:
        container = None
        try:
            first = self._next()
            if first is None:
                return
            options = {"rtsp_transport": "tcp"} if self.format == "rtsp" else {}
            container = av.open(
                self.url, "w", format=self.format, options=options, timeout=self.timeout
            )
            picture, start = first
            height, width = picture.shape[0] * 2 // 3, picture.shape[1]
            stream = container.add_stream(
                "libx264",
                rate=self.fps,
                options={
                    "preset": "ultrafast",
                    "tune": "zerolatency",
                    "crf": str(self.crf),
                    "g": str(max(1, round(self.fps * self.keyframe_seconds))),
                },
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE  # frames come when they come
            last_pts = -1
            item: tuple[np.ndarray, float] | None = first
            while item is not None:
                picture, seconds = item
                if picture.shape[1] == width and picture.shape[0] * 2 // 3 == height:
                    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
                    frame.pts = max(last_pts + 1, round((seconds - start) / TIME_BASE))
                    frame.time_base = TIME_BASE
                    last_pts = frame.pts
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    self.sent += 1
                item = self._next()
            for packet in stream.encode(None):
                container.mux(packet)
        except (av.error.FFmpegError, OSError) as error:
            self.failed = ffmpeg_reason(error)
            self.on_error(f"the re-stream to {self.url} stopped: {self.failed}")
        finally:
            if container is not None:
                with contextlib.suppress(av.error.FFmpegError, OSError):
                    container.close()
