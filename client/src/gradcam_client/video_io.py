"""All reading and writing of video and image files of the client.

Modelled on supervision's ``utils/video.py``: `VideoInfo` describes a file, `open_media` /
`iter_frames` yield its frames, `VideoWriter` is the sink; drawing code never touches files.

Reading (PyAV, so anything FFmpeg decodes; still images through OpenCV, falling back to PyAV):

- frames come out as RGB ``uint8`` arrays of shape (H, W, 3) whatever the pixel format
  (grayscale, alpha - which is dropped -, palette, high bit depth, odd or 1x1 sizes);
- rotation metadata (display matrix side data, or the legacy ``rotate`` tag) is applied, so the
  frames are upright and `VideoInfo.width`/`height` are those of the upright frames;
- every frame keeps its real presentation timestamp (``pts`` in `VideoInfo.time_base` units and
  ``time`` in seconds), so variable frame rates survive;
- packets that fail to decode are skipped and listed in `MediaReader.report` (or stop the read
  with `CorruptFrameError` when ``on_corrupt="raise"``);
- unusable inputs raise a specific `InputError` subclass (see `gradcam_client.errors`).

Writing: `VideoWriter` encodes H.264 (libx264, yuv420p, BT.709) into MP4 with the timestamps it
is given (normally those of the input frames, so frame count and timing are unchanged), copies
the input's audio (AAC/MP3 packets are remuxed, other codecs are re-encoded to AAC), and only
renames its temporary file to the final name once everything is written. `write_image` writes
a still image through OpenCV, also via a temporary name.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import secrets
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import av.error
import cv2
import numpy as np

from .errors import (
    CorruptFrameError,
    EmptyMediaError,
    InputError,
    MediaNotFoundError,
    NoFramesError,
    NotMediaError,
    NoVideoStreamError,
    OutputError,
    TruncatedMediaError,
)

__all__ = [
    "MP4_COPY_AUDIO_CODECS",
    "DecodeReport",
    "Frame",
    "MediaReader",
    "SkippedFrame",
    "VideoInfo",
    "VideoWriter",
    "iter_frames",
    "open_media",
    "probe",
    "read_image",
    "read_timestamps",
    "write_image",
]

CorruptPolicy = Literal["skip", "raise"]

MP4_COPY_AUDIO_CODECS = frozenset({"aac", "mp3"})
"""Audio codecs copied into the output as they are; any other audio is re-encoded to AAC."""

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
_IMAGE_FORMATS = ("image2", "image2pipe")
_HEAD_BYTES = 4096
REORDER_DEPTH = 4
"""Decoded frames held back to put presentation times in order (see `in_display_order`)."""


# --------------------------------------------------------------------------- data types


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


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: upright RGB uint8 image (H, W, 3) with its presentation time.

    index: position among the yielded frames (skipped corrupt frames are not counted).
    pts: presentation timestamp in `VideoInfo.time_base` units; time: the same in seconds.
    duration: how long the frame is shown, in `VideoInfo.time_base` units, if known.
    """

    image: np.ndarray
    index: int
    pts: int
    time: float
    duration: int | None = None


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


# --------------------------------------------------------------------------- input checks


def _check_file(path: Path) -> int:
    """Raise if `path` is not a non-empty regular file; return its size."""
    if not path.exists():
        raise MediaNotFoundError("no such file", path)
    if not path.is_file():
        raise MediaNotFoundError("not a regular file", path)
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise InputError(f"cannot be read ({error.strerror or error})", path) from error
    if size == 0:
        raise EmptyMediaError("file is empty (0 bytes)", path)
    return size


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(_HEAD_BYTES)


def _looks_like_text(head: bytes) -> bool:
    """True when the first bytes of a file are printable text (UTF-8)."""
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + sum(1 for c in text if not c.isprintable() and c not in "\r\n\t")
    return bad <= max(2, len(text) // 100)


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/QuickTime"),
    (4, b"moov", "QuickTime"),
    (4, b"mdat", "QuickTime"),
    (4, b"wide", "QuickTime"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "RIFF (AVI/WAV/WebP)"),
    (0, b"OggS", "Ogg"),
    (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG program stream"),
    (0, b"\x00\x00\x01\xb3", "MPEG video"),
    (0, b"\x30\x26\xb2\x75", "ASF/WMV"),
    (0, b"\x89PNG", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF8", "GIF"),
)


def _container_name(head: bytes) -> str | None:
    """Name of the container recognised from the file signature, if any."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "MPEG transport stream"
    return None


def _bmff_truncation(path: Path, size: int, strict: bool) -> str | None:
    """Why an MP4/QuickTime file looks truncated (a top-level box runs past the end), or None.

    With `strict` false only the boxes that hold the media (mdat, moov, moof) count, so trailing
    garbage after a valid file is not mistaken for truncation.
    """
    seen = set()
    with path.open("rb") as file:
        pos = 0
        while pos + 8 <= size:
            file.seek(pos)
            header = file.read(16)
            box_size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if box_size == 1:
                if len(header) < 16:
                    return f"the '{kind}' box header is cut off"
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - pos
            if box_size < 8 or not kind.isprintable():
                break  # not a box structure we understand: let FFmpeg judge
            seen.add(kind)
            if pos + box_size > size and (strict or kind in ("mdat", "moov", "moof")):
                missing = pos + box_size - size
                return f"the '{kind}' box ends {missing} bytes past the end of the file"
            pos += box_size
    if strict and not seen & {"moov", "moof"}:
        return "its index ('moov' box, written when a recording finishes) is missing"
    return None


def _read_vint(data: bytes, pos: int) -> tuple[int | None, int]:
    """Decode an EBML variable-size integer at `pos`: (value or None if unknown, length)."""
    if pos >= len(data) or data[pos] == 0:
        return None, 1
    length = 8 - data[pos].bit_length() + 1
    value = data[pos] & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    if value == (1 << (7 * length)) - 1:
        return None, length  # "unknown size" (live recordings)
    return value, length


def _ebml_truncation(head: bytes, size: int) -> str | None:
    """Why a Matroska/WebM file looks truncated (the segment runs past the end), or None."""
    header_size, n = _read_vint(head, 4)
    if header_size is None:
        return None
    pos = 4 + n + header_size
    if head[pos : pos + 4] != b"\x18\x53\x80\x67":
        return None
    segment_size, n = _read_vint(head, pos + 4)
    if segment_size is None:
        return None
    end = pos + 4 + n + segment_size
    if end > size:
        return f"the Matroska segment ends {end - size} bytes past the end of the file"
    return None


def _truncation(path: Path, size: int, head: bytes, strict: bool = False) -> str | None:
    """Why the file structure says it is truncated, or None (only MP4/QuickTime, Matroska)."""
    try:
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
            return _bmff_truncation(path, size, strict)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _ebml_truncation(head, size)
    except OSError:
        return None
    return None


def _ffmpeg_reason(error: Exception) -> str:
    """The FFmpeg error text without the errno and file name decorations."""
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return error.strerror
    return str(error)


def _unreadable(path: Path, size: int, error: Exception) -> InputError:
    """The error to raise when FFmpeg cannot open a file at all."""
    head = _head(path)
    truncated = _truncation(path, size, head, strict=True)
    container = _container_name(head)
    if truncated:
        return TruncatedMediaError(f"truncated {container or 'media'} file: {truncated}", path)
    if container:
        return TruncatedMediaError(
            f"damaged or truncated {container} file ({_ffmpeg_reason(error)})", path
        )
    if _looks_like_text(head):
        return NotMediaError("is a text file, not a video or image", path)
    return NotMediaError(
        f"not a video or image format FFmpeg can read ({_ffmpeg_reason(error)})", path
    )


def _open_input(path: Path) -> tuple[av.container.InputContainer, int]:
    """Open a file with PyAV, turning failures into specific input errors."""
    size = _check_file(path)
    try:
        return av.open(str(path), metadata_errors="replace"), size
    except av.error.FFmpegError as error:
        raise _unreadable(path, size, error) from error


def _codec_name(stream: av.stream.Stream) -> str:
    """Canonical codec name ("mp3", "av1"), not the name of the decoder FFmpeg picked."""
    return stream.codec_context.codec.canonical_name


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    """The first video stream that is not cover art, or NoVideoStreamError."""
    attached = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not stream.disposition & attached:
            return stream
    kinds = [f"{s.type} ({_codec_name(s)})" for s in container.streams if s.codec_context]
    if container.streams.video:
        kinds.append("cover art only")
    found = ", ".join(kinds) if kinds else "no streams at all"
    raise NoVideoStreamError(f"has no video stream (found: {found})", path)


def _is_image_container(container: av.container.InputContainer) -> bool:
    """True for FFmpeg's still-image demuxers (png_pipe, jpeg_pipe, image2, ...)."""
    name = container.format.name
    return name in _IMAGE_FORMATS or name.endswith("_pipe")


# --------------------------------------------------------------------------- decoding


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _hms(text: str) -> float | None:
    """Parse a Matroska ``DURATION`` tag ("HH:MM:SS.nnnnnnnnn") to seconds."""
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _stream_duration(stream: av.video.VideoStream) -> float | None:
    """Declared duration of one stream in seconds (mp4 track duration, mkv DURATION tag)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in stream.metadata.items() if k.lower() == "duration"), None)
    return _hms(tag) if tag else None


def _clockwise(frame_rotation: int, rotate_tag: str | None) -> int:
    """Clockwise display rotation (0/90/180/270) from a frame's display matrix or the tag."""
    if frame_rotation:
        degrees = -frame_rotation  # the display matrix angle is counter-clockwise
    else:
        try:
            degrees = int(float(rotate_tag or 0))
        except ValueError:
            degrees = 0
    return (round((degrees % 360) / 90) % 4) * 90


class _Decoder:
    """Decode one video stream packet by packet, skipping (or raising on) corrupt packets."""

    def __init__(
        self,
        path: Path,
        report: DecodeReport,
        on_corrupt: CorruptPolicy = "skip",
        *,
        allow_truncated: bool = False,
    ) -> None:
        self.path = path
        self.report = report
        self.on_corrupt = on_corrupt
        self.allow_truncated = allow_truncated

    def frames(self) -> Iterator[tuple[av.VideoFrame, av.video.VideoStream]]:
        """Yield decoded frames (with their stream); raise input errors as they are found."""
        container, size = _open_input(self.path)
        with container:
            stream = _video_stream(container, self.path)
            time_base = stream.time_base
            position = 0  # frames decoded or skipped so far
            last_end: float | None = None
            broken: str | None = None
            demuxer = container.demux(stream)
            while True:
                try:
                    packet = next(demuxer)
                except StopIteration:
                    break
                except av.error.FFmpegError as error:
                    broken = f"reading stopped: {_ffmpeg_reason(error)}"
                    packet = None
                if packet is not None and packet.pts is not None and packet.duration:
                    last_end = _seconds(packet.pts + packet.duration, time_base)
                try:
                    decoded = stream.decode(packet)
                except av.error.FFmpegError as error:
                    if packet is None or not packet.size:
                        break  # errors while flushing: nothing left to recover
                    skipped = SkippedFrame(
                        position, _seconds(packet.pts, time_base), _ffmpeg_reason(error)
                    )
                    position += 1
                    if self.on_corrupt == "raise":
                        where = f"{skipped.time:.3f} s" if skipped.time is not None else "?"
                        raise CorruptFrameError(
                            f"frame #{skipped.index} at {where} cannot be decoded "
                            f"({skipped.error})",
                            self.path,
                            index=skipped.index,
                            time=skipped.time,
                        ) from error
                    self.report.skipped.append(skipped)
                    continue
                for frame in decoded:
                    position += 1
                    yield frame, stream
                if packet is None:
                    break
            if broken is None:
                broken = self._ended_early(stream, last_end, size, container)
            if broken:
                if not self.allow_truncated:
                    raise TruncatedMediaError(f"truncated or damaged: {broken}", self.path)
                self.report.truncated = broken

    def _ended_early(
        self,
        stream: av.video.VideoStream,
        last_end: float | None,
        size: int,
        container: av.container.InputContainer,
    ) -> str | None:
        """Why the stream looks cut short once all packets were read, or None."""
        head = _head(self.path)
        structural = _truncation(self.path, size, head)
        if structural:
            return structural
        declared = _stream_duration(stream)
        start = _seconds(stream.start_time, stream.time_base) or 0.0
        if declared is None or last_end is None or "mov" in container.format.name:
            return None  # mp4 sample tables are checked structurally above
        missing = start + declared - last_end
        if missing > max(0.5, 0.1 * declared):
            return f"video stops at {last_end:.2f} s of a declared {declared:.2f} s"
        return None


def in_display_order(
    frames: Iterable[av.VideoFrame], depth: int = REORDER_DEPTH
) -> Iterator[tuple[av.VideoFrame, int | None]]:
    """Each decoded frame with its presentation time, the times sorted (None stays None).

    Decoders hand out frames in display order, but some files give them times out of order:
    MPEG-4 Part 2 AVIs with packed B-frames (DivX, Xvid) decode as 0.1, 0.3, 0.2, 0.5, 0.4 s.
    The k-th frame is shown at the k-th smallest time, so `depth` frames are held back and
    each frame leaves with the smallest time seen so far.
    """
    held: deque[av.VideoFrame] = deque()
    times: list[int] = []

    def release() -> tuple[av.VideoFrame, int | None]:
        frame = held.popleft()
        return frame, None if frame.pts is None else heapq.heappop(times)

    for frame in frames:
        held.append(frame)
        if frame.pts is not None:
            heapq.heappush(times, frame.pts)
        if len(held) > depth:
            yield release()
    while held:
        yield release()


def _to_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """A decoded frame as an upright RGB uint8 (H, W, 3) array."""
    kwargs = {}
    if frame.color_range:
        kwargs["src_color_range"] = frame.color_range
    rgb = frame.to_ndarray(format="rgb24", **kwargs)
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=-(rotation // 90)))
    return rgb


def _read_image_file(path: Path) -> np.ndarray | None:
    """Decode a still image with OpenCV (EXIF orientation applied) as RGB, or None."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class MediaReader:
    """A video or still image opened for reading. Iterate it for `Frame` objects.

    on_corrupt: "skip" drops frames that fail to decode and lists them in `report`;
        "raise" stops with `CorruptFrameError` at the first one.
    allow_truncated: decode what is there of a file that ends early (noted in
        `report.truncated`) instead of raising `TruncatedMediaError`.

    Opening already decodes the first frame (to learn the rotation and validate the input),
    so most unusable inputs fail here rather than in the middle of a run. Each iteration
    re-reads the file from the start and resets `report`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        on_corrupt: CorruptPolicy = "skip",
        allow_truncated: bool = False,
    ) -> None:
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', not {on_corrupt!r}")
        self.path = Path(path)
        self.on_corrupt: CorruptPolicy = on_corrupt
        self.allow_truncated = allow_truncated
        self.report = DecodeReport()
        self._image: np.ndarray | None = None
        self.info = self._probe()

    @property
    def is_image(self) -> bool:
        """True for a still image (one frame, to be written back with `write_image`)."""
        return self.info.is_image

    def _probe(self) -> VideoInfo:
        try:
            container, size = _open_input(self.path)
        except NotMediaError:
            image = _read_image_file(self.path)  # formats OpenCV reads but FFmpeg does not
            if image is None:
                raise
            return self._image_info(image, "image")
        with container:
            if _is_image_container(container) and container.streams.video:
                stream = container.streams.video[0]
                image = _read_image_file(self.path)
                if image is None:
                    try:
                        frame = next(container.decode(stream), None)
                    except av.error.FFmpegError as error:
                        reason = _ffmpeg_reason(error)
                        raise NoFramesError(
                            f"image cannot be decoded ({reason})", self.path
                        ) from error
                    if frame is None:
                        raise NoFramesError("image cannot be decoded", self.path)
                    image = _to_rgb(frame, 0)
                return self._image_info(image, _codec_name(stream))
            truncated = _truncation(self.path, size, _head(self.path))
            if truncated and not self.allow_truncated:
                raise TruncatedMediaError(f"truncated file: {truncated}", self.path)
            stream = _video_stream(container, self.path)
            tags = {key.lower(): value for key, value in stream.metadata.items()}
            rotate_tag = tags.get("rotate")
            audio = list(container.streams.audio)
            info_streams = {
                "codec": _codec_name(stream),
                "pix_fmt": stream.codec_context.pix_fmt,
                "frame_count": stream.frames or None,
                "time_base": stream.time_base or Fraction(1, 1),
                "has_audio": bool(audio),
                "audio_codec": _codec_name(audio[0]) if audio else None,
            }
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            duration = _stream_duration(stream)
            if duration is None and container.duration:
                duration = container.duration / av.time_base
            start = _seconds(stream.start_time, stream.time_base) or 0.0

        first = self._first_frame()
        rotation = _clockwise(first.rotation, rotate_tag)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=self.path,
            width=width,
            height=height,
            fps=float(rate) if rate else 0.0,
            duration=duration,
            rotation=rotation,
            start_time=start,
            **info_streams,
        )

    def _first_frame(self) -> av.VideoFrame:
        """The first decodable frame; raises NoFramesError when there is none."""
        report = DecodeReport()
        decoder = _Decoder(self.path, report, "skip", allow_truncated=True)
        frames = decoder.frames()
        try:
            for frame, _stream in frames:
                return frame
        finally:
            frames.close()
        if report.truncated and not self.allow_truncated:
            raise TruncatedMediaError(
                f"truncated or damaged, no frame decodes: {report.truncated}", self.path
            )
        reason = f" ({report.n_skipped} corrupt packets)" if report.skipped else ""
        raise NoFramesError(f"video stream has no decodable frame{reason}", self.path)

    def _image_info(self, image: np.ndarray, codec: str) -> VideoInfo:
        self._image = image
        return VideoInfo(
            path=self.path,
            width=image.shape[1],
            height=image.shape[0],
            fps=0.0,
            frame_count=1,
            duration=None,
            has_audio=False,
            rotation=0,
            codec=codec,
            time_base=Fraction(1, 1),
            is_image=True,
        )

    def __iter__(self) -> Iterator[Frame]:
        self.report = DecodeReport()
        if self._image is not None:
            self.report.frames = 1
            yield Frame(self._image, 0, 0, 0.0)
            return
        info = self.info
        decoder = _Decoder(
            self.path, self.report, self.on_corrupt, allow_truncated=self.allow_truncated
        )
        step = _frame_step(info)
        last_pts: int | None = None
        for frame, pts in in_display_order(f for f, _stream in decoder.frames()):
            rgb = _to_rgb(frame, info.rotation)
            if rgb.shape[:2] != (info.height, info.width):  # resolution changed mid-stream
                rgb = cv2.resize(rgb, info.resolution_wh, interpolation=cv2.INTER_AREA)
            if pts is None:
                pts = 0 if last_pts is None else last_pts + step
            last_pts = pts
            duration = frame.duration or None
            yield Frame(rgb, self.report.frames, pts, float(pts * info.time_base), duration)
            self.report.frames += 1
        if self.report.frames == 0:
            reason = f" ({self.report.n_skipped} corrupt packets)" if self.report.skipped else ""
            raise NoFramesError(f"video stream has no decodable frame{reason}", self.path)


def _frame_step(info: VideoInfo) -> int:
    """Nominal frame duration in `info.time_base` units (at least 1)."""
    fps = info.fps or 25.0
    return max(1, round(1 / (fps * info.time_base)))


def open_media(
    path: str | Path, *, on_corrupt: CorruptPolicy = "skip", allow_truncated: bool = False
) -> MediaReader:
    """Open a video or a still image; ``reader.is_image`` tells which. See `MediaReader`."""
    return MediaReader(path, on_corrupt=on_corrupt, allow_truncated=allow_truncated)


def iter_frames(
    path: str | Path, *, on_corrupt: CorruptPolicy = "skip", allow_truncated: bool = False
) -> Iterator[Frame]:
    """Yield the upright RGB frames of a video (or the one frame of an image)."""
    yield from open_media(path, on_corrupt=on_corrupt, allow_truncated=allow_truncated)


def probe(path: str | Path) -> VideoInfo:
    """Describe a video or image file (raises the same input errors as `open_media`)."""
    return MediaReader(path).info


def read_timestamps(path: str | Path) -> list[float]:
    """Presentation times in seconds of the frames that decode, in display order."""
    reader = MediaReader(path)
    if reader.is_image:
        return [0.0]
    decoder = _Decoder(reader.path, DecodeReport(), "skip")
    return [
        float(pts * reader.info.time_base)
        for _frame, pts in in_display_order(f for f, _stream in decoder.frames())
        if pts is not None
    ]


def read_image(path: str | Path) -> np.ndarray:
    """The RGB image of a still image file (or the first frame of a video)."""
    return next(iter(MediaReader(path))).image


# --------------------------------------------------------------------------- writing


def _temporary_name(path: Path) -> Path:
    """A hidden, unique name next to `path` for writing before the final rename."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_image(path: str | Path, rgb: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write an RGB (H, W, 3) or grayscale (H, W) uint8 image; the format follows the suffix.

    The image is written under a temporary name and renamed, so `path` never holds a partial
    file.
    """
    path = Path(path)
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) image, got {image.dtype}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"expected 3 channels, got {image.shape[2]}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality, cv2.IMWRITE_WEBP_QUALITY, jpeg_quality]
    try:
        ok = cv2.imwrite(str(temporary), image, params)
        if not ok:
            raise OutputError("OpenCV could not write the image", path)
        os.replace(temporary, path)
    except cv2.error as error:
        _remove(temporary)
        raise OutputError(f"cannot write an image of this type ({path.suffix})", path) from error
    except BaseException:
        _remove(temporary)
        raise
    return path


class _AudioCopier:
    """Copies the first audio stream of a file into an output container, interleaved.

    AAC/MP3 packets are remuxed untouched; other codecs are decoded and re-encoded to AAC.
    Timestamps stay those of the source, so audio and video (which keep the source's
    timestamps too) stay in sync.
    """

    def __init__(self, source: Path, output: av.container.OutputContainer) -> None:
        self._output = output
        self._input = av.open(str(source))
        try:
            self._source = self._input.streams.audio[0]
            self.copy = False
            codec = _codec_name(self._source)
            if codec in MP4_COPY_AUDIO_CODECS:
                with contextlib.suppress(ValueError):
                    self._stream = output.add_stream_from_template(self._source)
                    self.copy = True
            if not self.copy:
                context = self._source.codec_context
                rate = context.sample_rate if context.sample_rate in _AAC_RATES else 48000
                layout = "mono" if context.layout.nb_channels == 1 else "stereo"
                self._stream = output.add_stream("aac", rate=rate, layout=layout)
            self.codec = _codec_name(self._stream)
            self._packets = self._input.demux(self._source)
            self._pending: av.Packet | None = None
            self._done = False
        except BaseException:
            self._input.close()
            raise

    def feed_until(self, seconds: float | None) -> None:
        """Write the audio packets that start before `seconds` (all of them for None)."""
        while not self._done:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets)
                except (StopIteration, av.error.FFmpegError):
                    self._done = True
                    break
            start = _seconds(packet.pts if packet.pts is not None else packet.dts, packet.time_base)
            if seconds is not None and start is not None and start > seconds:
                self._pending = packet
                return
            self._pending = None
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        if self.copy:
            if packet.size and packet.dts is not None:
                packet.stream = self._stream
                self._output.mux(packet)
            return
        try:
            frames = self._source.decode(packet if packet.size else None)
        except av.error.FFmpegError:
            return  # a corrupt audio packet: a short gap is better than no output
        for frame in frames:
            self._output.mux(self._stream.encode(frame))

    def finish(self) -> None:
        """Write the remaining audio, flush the encoder and close the source."""
        self.feed_until(None)
        if not self.copy:
            self._output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()


class VideoWriter:
    """Sink writing RGB frames to an H.264 MP4 file, usable as a context manager.

    >>> with VideoWriter("out.mp4", reader.info) as sink:
    ...     for frame in reader:
    ...         sink.write(overlay(frame.image), frame.pts, duration=frame.duration)

    info: the input's `VideoInfo`; its `time_base` is the unit of the pts given to `write`, its
        `fps` the nominal rate, and its audio (if any) is copied unless `audio` is false.
    size: (width, height) of the frames; default: that of the first frame written.
    crf / preset: libx264 quality (lower crf = better) and speed.
    audio_source: file whose audio is copied; default `info.path` when `info.has_audio`.

    Frames are encoded as they come (nothing is buffered beyond the encoder's look-ahead). The
    pixel format is yuv420p, which needs even sizes: an odd width or height is padded by one
    pixel on the right or bottom edge, repeating the last column or row. The frames are not
    rotated (they are written upright, without rotation metadata).

    The file is written under a hidden temporary name in the same folder and renamed to `path`
    when `close` succeeds; if an exception leaves the ``with`` block (or `abort` is called) the
    temporary file is deleted and `path` is left untouched.
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo,
        *,
        size: tuple[int, int] | None = None,
        crf: int = 20,
        preset: str = "medium",
        audio: bool = True,
        audio_source: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in _VIDEO_SUFFIXES:
            raise OutputError(
                f"VideoWriter writes MP4; use one of {', '.join(_VIDEO_SUFFIXES)}", self.path
            )
        self.info = info
        self.size = size
        self.crf = crf
        self.preset = preset
        if audio_source is None and audio and info.has_audio and not info.is_image:
            audio_source = info.path
        self.audio_source = Path(audio_source) if audio and audio_source else None
        self.time_base = info.time_base if not info.is_image else Fraction(1, 25)
        self.frames_written = 0
        self._step = _frame_step(info) if not info.is_image else 1
        self._temporary = _temporary_name(self.path)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.VideoStream | None = None
        self._audio: _AudioCopier | None = None
        self._last_pts: int | None = None
        self._finished = False
        self._durations: dict[int, int] = {}

    # -- context manager

    def __enter__(self) -> VideoWriter:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- public

    def open(self) -> None:
        """Create the temporary output file (called by ``with``)."""
        if self._container is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(
                str(self._temporary),
                "w",
                format="mp4",
                # movie_timescale: the edit list of a clip not starting at 0 stays exact
                options={
                    "movflags": "+faststart",
                    "movie_timescale": str(self.time_base.denominator),
                },
            )
        except (OSError, av.error.FFmpegError) as error:
            _remove(self._temporary)
            raise OutputError(f"cannot create the output ({error})", self.path) from error

    @property
    def audio_codec(self) -> str | None:
        """Codec of the audio stream of the output (None without audio or before a frame)."""
        return self._audio.codec if self._audio else None

    @property
    def audio_copied(self) -> bool:
        """True when the audio packets are copied unchanged (not re-encoded)."""
        return bool(self._audio and self._audio.copy)

    @property
    def finished(self) -> bool:
        """True once the output file has been moved to its final name."""
        return self._finished

    def write(
        self, image: np.ndarray, pts: int | None = None, *, duration: int | None = None
    ) -> None:
        """Encode one RGB uint8 (H, W, 3) frame shown at `pts` (in `info.time_base` units).

        Pass the input frame's `Frame.pts` (and `Frame.duration`, which sets how long the last
        frame lasts) to keep its timing; a None pts continues at the nominal frame rate.
        Timestamps must increase; one that does not is moved just after the previous one.
        """
        if self._container is None:
            self.open()
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {image.shape}")
        if self._stream is None:
            self._start(image)
        width, height = self.size or (0, 0)
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"frame is {image.shape[1]}x{image.shape[0]}, the video is {width}x{height}"
            )
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        pad_h, pad_w = height % 2, width % 2
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts = pts
        frame.time_base = self.time_base
        self._durations[pts] = duration or self._step
        try:
            assert self._stream is not None
            self._mux_video(self._stream.encode(frame))
            if self._audio is not None:
                self._audio.feed_until(float(pts * self.time_base))
        except av.error.FFmpegError as error:
            raise OutputError(f"encoding failed ({_ffmpeg_reason(error)})", self.path) from error
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, finish the audio and move the file to its final name."""
        if self._container is None:
            return
        try:
            if self._stream is None:
                raise OutputError("no frames were written", self.path)
            try:
                self._mux_video(self._stream.encode(None))
                if self._audio is not None:
                    self._audio.finish()
                container, self._container = self._container, None
                container.close()
            except (OSError, av.error.FFmpegError) as error:
                raise OutputError(f"writing failed ({error})", self.path) from error
            os.replace(self._temporary, self.path)
            self._finished = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop writing and delete the temporary file; `path` is not created."""
        if self._audio is not None:
            with contextlib.suppress(Exception):
                self._audio.close()
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        _remove(self._temporary)

    # -- internals

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Mux encoded packets, giving each the duration of the frame it holds."""
        assert self._container is not None
        for packet in packets:
            duration = self._durations.pop(packet.pts, None) if packet.pts is not None else None
            if duration:
                packet.duration = duration
            self._container.mux(packet)

    def _start(self, image: np.ndarray) -> None:
        """Create the video (and audio) streams once the frame size is known."""
        assert self._container is not None
        height, width = image.shape[:2]
        if self.size is None:
            self.size = (width, height)
        fps = Fraction(self.info.fps or 25).limit_denominator(1001)
        stream = self._container.add_stream(
            "libx264", rate=fps, options={"crf": str(self.crf), "preset": self.preset}
        )
        stream.width = self.size[0] + self.size[0] % 2
        stream.height = self.size[1] + self.size[1] % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        context = stream.codec_context
        context.color_range = 1  # MPEG (limited)
        context.colorspace = 1  # BT.709
        context.color_primaries = 1
        context.color_trc = 1
        self._stream = stream
        if self.audio_source is not None:
            try:
                self._audio = _AudioCopier(self.audio_source, self._container)
            except (IndexError, OSError, av.error.FFmpegError):
                self._audio = None  # the source has no usable audio: write video only
