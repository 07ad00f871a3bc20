"""Reading video and image files: `MediaReader` yields upright RGB frames with their times.

PyAV decodes anything FFmpeg reads; still images go through OpenCV, falling back to PyAV.

- frames come out as RGB ``uint8`` arrays of shape (H, W, 3) whatever the pixel format
  (grayscale, alpha - which is dropped -, palette, high bit depth, odd or 1x1 sizes);
- rotation metadata (display matrix side data, or the legacy ``rotate`` tag) is applied, so the
  frames are upright and `VideoInfo.width`/`height` are those of the upright frames;
- every frame keeps its real presentation timestamp (``pts`` in `VideoInfo.time_base` units and
  ``time`` in seconds), so variable frame rates survive; times decoded out of order (packed
  B-frames) are put back in order (`in_display_order`);
- packets that fail to decode are skipped and listed in `MediaReader.report` (or stop the read
  with `CorruptFrameError` when ``on_corrupt="raise"``);
- unusable inputs raise a specific `InputError` subclass (see `gradcam_client.errors`).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from gradcam_client.errors import (
    CorruptFrameError,
    NoFramesError,
    NotMediaError,
    TruncatedMediaError,
)
from gradcam_client.media.checks import (
    codec_name,
    ffmpeg_reason,
    file_head,
    is_image_container,
    open_input,
    truncation,
    video_stream,
)
from gradcam_client.media.frames import (
    CorruptPolicy,
    DecodeReport,
    Frame,
    Planes,
    SkippedFrame,
    VideoInfo,
    frame_step,
    to_seconds,
)

REORDER_DEPTH = 4
"""Decoded frames held back to put presentation times in order (see `in_display_order`)."""


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
        formats: str | None = None,
    ) -> None:
        self.path = path
        self.report = report
        self.on_corrupt = on_corrupt
        self.allow_truncated = allow_truncated
        self.formats = formats

    def frames(self) -> Iterator[tuple[av.VideoFrame, av.video.VideoStream]]:
        """Yield decoded frames (with their stream); raise input errors as they are found."""
        container, size = open_input(self.path, self.formats)
        with container:
            stream = video_stream(container, self.path)
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
                    broken = f"reading stopped: {ffmpeg_reason(error)}"
                    packet = None
                if packet is not None and packet.pts is not None and packet.duration:
                    last_end = to_seconds(packet.pts + packet.duration, time_base)
                try:
                    decoded = stream.decode(packet)
                except av.error.FFmpegError as error:
                    if packet is None or not packet.size:
                        break  # errors while flushing: nothing left to recover
                    skipped = SkippedFrame(
                        position, to_seconds(packet.pts, time_base), ffmpeg_reason(error)
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
        head = file_head(self.path)
        structural = truncation(self.path, size, head)
        if structural:
            return structural
        declared = _stream_duration(stream)
        start = to_seconds(stream.start_time, stream.time_base) or 0.0
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


def to_rgb(
    frame: av.VideoFrame, rotation: int, scaler: VideoReformatter | None = None
) -> np.ndarray:
    """A decoded frame as an upright RGB uint8 (H, W, 3) array (converted by `scaler`, else
    by a scaler of its own)."""
    kwargs = {}
    if frame.color_range:
        kwargs["src_color_range"] = frame.color_range
    scaler = scaler or VideoReformatter()
    rgb = scaler.reformat(frame, format="rgb24", threads=1, **kwargs).to_ndarray()
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=-(rotation // 90)))
    return rgb


_KNOWN_MATRICES = (1, 4, 5, 6, 7)  # BT.709, FCC, BT.601 (two tags), SMPTE 240M


def _source_colors(frame: av.VideoFrame) -> dict[str, int]:
    """The frame's colour matrix and range for FFmpeg's scaler (its defaults when untagged)."""
    colors = {}
    if frame.colorspace in _KNOWN_MATRICES:
        colors["src_colorspace"] = frame.colorspace
    if frame.color_range:
        colors["src_color_range"] = frame.color_range
    return colors


def copy_planes(frame: av.VideoFrame) -> np.ndarray:
    """The three planes of a yuv420p frame copied into one picture (see `Frame`), once."""
    width, height = frame.width, frame.height
    picture = np.empty((height * 3 // 2, width), np.uint8)
    flat = picture.reshape(-1)
    start = 0
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        end = start + plane.height * plane.width
        flat[start:end].reshape(plane.height, plane.width)[:] = rows[:, : plane.width]
        start = end
    return picture


def decoded_planes(frame: av.VideoFrame) -> Planes:
    """The three planes of a yuv420p frame as views of the frame's own memory (no copy; each
    keeps the frame alive). Read-only: a decoder reads its past frames to decode the next."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        views.append(rows[:, : plane.width])
    return Planes(*views)


class Scalers:
    """FFmpeg's scaler set up once for every frame of a read: setting one up per frame (as
    `av.VideoFrame.reformat` does) costs more than scaling a frame to the model's size."""

    def __init__(self) -> None:
        self._picture = VideoReformatter()
        self._thumbnail = VideoReformatter()
        self.rgb = VideoReformatter()

    def picture(
        self, frame: av.VideoFrame, width: int, height: int, copy: bool = True
    ) -> np.ndarray | Planes:
        """A decoded frame as a yuv420p BT.709 limited-range picture of (width, height):
        copied into one array, or without `copy` the frame's own `Planes`."""
        as_is = (
            frame.format.name == "yuv420p"
            and frame.colorspace == 1
            and frame.color_range in (0, 1)
            and (frame.width, frame.height) == (width, height)
        )
        if not as_is:
            frame = self._picture.reformat(
                frame,
                width=width,
                height=height,
                format="yuv420p",
                dst_colorspace="ITU709",
                dst_color_range="MPEG",
                interpolation="AREA",
                threads=1,
                **_source_colors(frame),
            )
        return copy_planes(frame) if copy else decoded_planes(frame)

    def image(
        self,
        frame: av.VideoFrame,
        size: tuple[int, int],
        yuv: bool,
        rotation: int = 0,
        *,
        copy: bool = True,
    ) -> tuple[Any, str]:
        """What a job composes on, with its pixel format: a yuv420p picture of `size` (width,
        height; without `copy`, the decoder's own `Planes` where it can), or the upright RGB
        frame resized to `size` when it differs."""
        if yuv:
            return self.picture(frame, *size, copy), "yuv420p"
        image = to_rgb(frame, rotation, self.rgb)
        if image.shape[:2] != (size[1], size[0]):  # a resolution change, or an odd size
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image, "rgb24"

    def thumbnail(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
        """The frame scaled to `size` (width, height) as RGB, in one pass."""
        small = self._thumbnail.reformat(
            frame,
            width=size[0],
            height=size[1],
            format="rgb24",
            interpolation="AREA",
            threads=1,
            **_source_colors(frame),
        )
        return small.to_ndarray()


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
    formats: FFmpeg's demuxers allowed (comma-separated names; None: any). Files from
        strangers name the plain single-file ones, so that a playlist or a concat list
        posing as a video cannot read other files.

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
        formats: str | None = None,
    ) -> None:
        if on_corrupt not in ("skip", "raise"):
            raise ValueError(f"on_corrupt must be 'skip' or 'raise', not {on_corrupt!r}")
        self.path = Path(path)
        self.on_corrupt: CorruptPolicy = on_corrupt
        self.allow_truncated = allow_truncated
        self.formats = formats
        self.report = DecodeReport()
        self._image: np.ndarray | None = None
        self.info = self._probe()

    @property
    def is_image(self) -> bool:
        """True for a still image (one frame, to be written back with `write_image`)."""
        return self.info.is_image

    def _probe(self) -> VideoInfo:
        try:
            container, size = open_input(self.path, self.formats)
        except NotMediaError:
            image = _read_image_file(self.path)  # formats OpenCV reads but FFmpeg does not
            if image is None:
                raise
            return self._image_info(image, "image")
        with container:
            if is_image_container(container) and container.streams.video:
                stream = container.streams.video[0]
                image = _read_image_file(self.path)
                if image is None:
                    try:
                        frame = next(container.decode(stream), None)
                    except av.error.FFmpegError as error:
                        reason = ffmpeg_reason(error)
                        raise NoFramesError(
                            f"image cannot be decoded ({reason})", self.path
                        ) from error
                    if frame is None:
                        raise NoFramesError("image cannot be decoded", self.path)
                    image = to_rgb(frame, 0)
                return self._image_info(image, codec_name(stream))
            truncated = truncation(self.path, size, file_head(self.path))
            if truncated and not self.allow_truncated:
                raise TruncatedMediaError(f"truncated file: {truncated}", self.path)
            stream = video_stream(container, self.path)
            tags = {key.lower(): value for key, value in stream.metadata.items()}
            rotate_tag = tags.get("rotate")
            audio = list(container.streams.audio)
            info_streams = {
                "codec": codec_name(stream),
                "pix_fmt": stream.codec_context.pix_fmt,
                "frame_count": stream.frames or None,
                "time_base": stream.time_base or Fraction(1, 1),
                "has_audio": bool(audio),
                "audio_codec": codec_name(audio[0]) if audio else None,
            }
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            duration = _stream_duration(stream)
            if duration is None and container.duration:
                duration = container.duration / av.time_base
            start = to_seconds(stream.start_time, stream.time_base) or 0.0

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
        decoder = _Decoder(self.path, report, "skip", allow_truncated=True, formats=self.formats)
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
        return self._frames()

    @property
    def yuv_ready(self) -> bool:
        """True when `pictures` can serve this input: a video, upright, of even size."""
        info = self.info
        return not info.is_image and not info.rotation and not (info.width % 2 or info.height % 2)

    def pictures(self, thumbnail: tuple[int, int] | None = None, *, copy: bool = True) -> Pictures:
        """The frames as yuv420p pictures (see `Frame`), each with an RGB thumbnail of
        `thumbnail` = (width, height) when given; only for inputs that are `yuv_ready`.

        A yuv420p BT.709 input is handed over as decoded; other pixel formats and colour
        matrices are converted by FFmpeg's scaler, which also makes the thumbnail. Each
        picture is a copy of its own, or without `copy` the decoder's read-only `Planes`
        (for a reader that composes into pictures of its own).
        """
        if not self.yuv_ready:
            raise ValueError(f"{self.path}: rotated, odd-sized or still input; iterate RGB frames")
        return Pictures(self, thumbnail, copy)

    def _frames(
        self,
        *,
        yuv: bool = False,
        thumbnail: tuple[int, int] | None = None,
        copy: bool = True,
    ) -> Iterator[Frame]:
        self.report = DecodeReport()
        if self._image is not None:
            self.report.frames = 1
            yield Frame(self._image, 0, 0, 0.0)
            return
        info = self.info
        decoder = _Decoder(
            self.path,
            self.report,
            self.on_corrupt,
            allow_truncated=self.allow_truncated,
            formats=self.formats,
        )
        step = frame_step(info)
        last_pts: int | None = None
        scalers = Scalers()
        for frame, pts in in_display_order(f for f, _stream in decoder.frames()):
            small = scalers.thumbnail(frame, thumbnail) if thumbnail else None
            image, pixel_format = scalers.image(
                frame, info.resolution_wh, yuv, info.rotation, copy=copy
            )
            if pts is None:
                pts = 0 if last_pts is None else last_pts + step
            last_pts = pts
            duration = frame.duration or None
            time = float(pts * info.time_base)
            yield Frame(image, self.report.frames, pts, time, duration, pixel_format, small)
            self.report.frames += 1
        if self.report.frames == 0:
            reason = f" ({self.report.n_skipped} corrupt packets)" if self.report.skipped else ""
            raise NoFramesError(f"video stream has no decodable frame{reason}", self.path)


@dataclass(frozen=True)
class Pictures:
    """The yuv420p pictures of a `MediaReader` (see `MediaReader.pictures`); each iteration
    re-reads the file, as iterating the reader does."""

    reader: MediaReader
    thumbnail: tuple[int, int] | None = None
    copy: bool = True

    @property
    def path(self) -> Path:
        return self.reader.path

    def __iter__(self) -> Iterator[Frame]:
        return self.reader._frames(yuv=True, thumbnail=self.thumbnail, copy=self.copy)


def open_media(
    path: str | Path,
    *,
    on_corrupt: CorruptPolicy = "skip",
    allow_truncated: bool = False,
    formats: str | None = None,
) -> MediaReader:
    """Open a video or a still image; ``reader.is_image`` tells which. See `MediaReader`."""
    return MediaReader(
        path, on_corrupt=on_corrupt, allow_truncated=allow_truncated, formats=formats
    )


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
    decoder = _Decoder(reader.path, DecodeReport(), "skip", formats=reader.formats)
    return [
        float(pts * reader.info.time_base)
        for _frame, pts in in_display_order(f for f, _stream in decoder.frames())
        if pts is not None
    ]


def read_image(path: str | Path) -> np.ndarray:
    """The RGB image of a still image file (or the first frame of a video)."""
    return next(iter(MediaReader(path))).image
