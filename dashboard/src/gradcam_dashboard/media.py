"""Inputs and pictures: upload checks, what a file holds, inspector frames, raw-map images."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gradcam_client.jobs.file_job import IMAGE_SUFFIXES
from gradcam_client.media import open_media, read_image
from gradcam_client.render.compose import colorize
from gradcam_dashboard.config import Limits

VIDEO_TYPES = ("mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "wmv", "flv", "3gp", "ts")
IMAGE_TYPES = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)
UPLOAD_TYPES = VIDEO_TYPES + IMAGE_TYPES
"""File name suffixes the uploader accepts."""

UPLOAD_DEMUXERS = ",".join(
    (
        "mov", "matroska", "avi", "mpeg", "mpegvideo", "asf", "flv", "mpegts", "h264", "hevc",
        "m4v", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "mjpeg", "apng",
        "image2",
    )
)  # fmt: skip
"""FFmpeg demuxers of the upload types: each reads its one file (``image2`` reads a sequence
only for a name holding ``%d``, which saved uploads never have: see `safe_filename`).
Playlists and concat lists, which open other files, are refused whatever the upload's name
says."""

BROWSER_VIDEO_TYPES = ("mp4", "m4v", "mov", "webm")
"""Containers a browser's video element is likely to play."""

BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")
"""Video codecs a browser's video element is likely to play (in those containers)."""


class UploadRejected(Exception):
    """An upload is refused before it is decoded (one-line message for the page)."""


def human_size(size: float) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def check_upload(name: str, size: int, max_bytes: int) -> str:
    """The upload's type ("video" or "image"), or `UploadRejected` saying what is wrong."""
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix in VIDEO_TYPES:
        kind = "video"
    elif suffix in IMAGE_TYPES:
        kind = "image"
    else:
        raise UploadRejected(
            f"{name} is not a video or image file this page accepts. Videos: "
            f"{', '.join(VIDEO_TYPES)}; images: {', '.join(IMAGE_TYPES)}."
        )
    if size == 0:
        raise UploadRejected(f"{name} is empty (0 bytes).")
    if size > max_bytes:
        raise UploadRejected(
            f"{name} is {human_size(size)}; the largest file this page accepts is "
            f"{human_size(max_bytes)}."
        )
    return kind


@dataclass(frozen=True)
class MediaSummary:
    """What an input holds, for display."""

    is_image: bool
    width: int
    height: int
    fps: float
    frames: int | None
    duration: float | None
    has_audio: bool
    codec: str

    def describe(self) -> str:
        """``"480x320 video, 4.0 s, 60 frames at 15.0 fps, h264"``."""
        if self.is_image:
            return f"{self.width}x{self.height} image ({self.codec})"
        parts = [f"{self.width}x{self.height} video"]
        if self.duration:
            parts.append(f"{self.duration:.1f} s")
        if self.frames:
            parts.append(f"{self.frames} frames at {self.fps:.1f} fps")
        parts.append(self.codec + (", with audio" if self.has_audio else ""))
        return ", ".join(parts)


def browser_playable(path: Path, summary: MediaSummary) -> bool:
    """Whether a browser is likely to play the file as it is."""
    suffix = path.suffix.lower().lstrip(".")
    return suffix in BROWSER_VIDEO_TYPES and summary.codec.lower() in BROWSER_CODECS


def check_limits(name: str, summary: MediaSummary, limits: Limits) -> None:
    """`UploadRejected` naming the first limit the input exceeds (duration, frames, size)."""
    long_side, short_side = limits.max_resolution
    sides = sorted((summary.width, summary.height), reverse=True)
    if sides[0] > long_side or sides[1] > short_side:
        raise UploadRejected(
            f"{name} is {summary.width}x{summary.height}; this page runs frames up to "
            f"{long_side}x{short_side}."
        )
    if summary.is_image:
        return
    if summary.duration and summary.duration > limits.max_seconds:
        raise UploadRejected(
            f"{name} lasts {summary.duration:.0f} s; this page runs videos up to "
            f"{limits.max_seconds:g} s."
        )
    if summary.frames and summary.frames > limits.max_frames:
        raise UploadRejected(
            f"{name} has {summary.frames} frames; this page runs videos up to "
            f"{limits.max_frames} frames."
        )


def summarize(path: Path) -> MediaSummary:
    """Open the file with the client's reader (raising its `InputError`s) and describe it;
    a file no upload demuxer reads (`UPLOAD_DEMUXERS`) is refused."""
    reader = open_media(path, formats=UPLOAD_DEMUXERS)
    info = reader.info
    return MediaSummary(
        is_image=reader.is_image,
        width=info.width,
        height=info.height,
        fps=info.fps,
        frames=info.estimated_frames,
        duration=info.duration,
        has_audio=info.has_audio,
        codec=info.codec,
    )


@dataclass(frozen=True)
class FrameStrip:
    """Downscaled frames for the inspector: original and result of every `step`-th frame."""

    folder: Path
    frames: int  # frames in the result
    step: int
    max_width: int = 640
    sources: tuple[Path, Path] | None = None  # (original, result) for the frames in between

    @property
    def indices(self) -> list[int]:
        return list(range(0, self.frames, self.step))

    def original(self, index: int) -> Path:
        return self._picture("original", index)

    def result(self, index: int) -> Path:
        return self._picture("result", index)

    def clamp(self, index: int) -> int:
        return min(max(index, 0), self.frames - 1)

    def _picture(self, name: str, index: int) -> Path:
        """The kept picture of frame `index`, or one decoded now (between kept frames)."""
        index = self.clamp(index)
        path = self.folder / f"{name}-{index:06d}.jpg"
        if path.is_file():
            return path
        if self.sources is None:  # only the kept frames
            return self.folder / f"{name}-{index - index % self.step:06d}.jpg"
        media = self.sources[0 if name == "original" else 1]
        for frame in open_media(media):
            if frame.index == index:
                _save_jpeg(path, fit_width(frame.image, self.max_width))
                break
        return path


def fit_width(image: np.ndarray, max_width: int) -> np.ndarray:
    """The image scaled down (never up) to at most `max_width` wide."""
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def extract_frames(
    source: Path,
    result: Path,
    folder: Path,
    frames: int,
    max_frames: int = 1000,
    max_width: int = 640,
) -> FrameStrip:
    """Decode the original and the result once, keeping at most `max_frames` of each as JPEG
    (the frames in between are decoded when asked for).

    Frame i of the result was made from the i-th decoded frame of the original (frames that
    fail to decode are skipped by both), so the two are read in lock-step.
    """
    folder.mkdir(parents=True, exist_ok=True)
    frames = max(frames, 1)
    step = max(1, math.ceil(frames / max_frames))
    strip = FrameStrip(folder, frames, step, max_width, (source, result))
    for path, name in ((source, "original"), (result, "result")):
        for frame in open_media(path):
            if frame.index >= frames:
                break
            if frame.index % step == 0:
                _save_jpeg(
                    folder / f"{name}-{frame.index:06d}.jpg", fit_width(frame.image, max_width)
                )
    return strip


def extract_frames_later(
    source: Path, result: Path, folder: Path, frames: int
) -> Future[FrameStrip]:
    """`extract_frames` in a daemon thread, so the result can be shown meanwhile."""
    future: Future[FrameStrip] = Future()

    def work() -> None:
        try:
            future.set_result(extract_frames(source, result, folder, frames))
        except Exception as error:  # shown by the inspector
            future.set_exception(error)

    threading.Thread(target=work, name="inspector-frames", daemon=True).start()
    return future


def map_picture(raw: np.ndarray, colormap: str = "jet", size: int = 224) -> np.ndarray:
    """A raw map (h, w) as an RGB picture: divided by its own maximum, each cell a square.

    Nearest-neighbour enlargement keeps the layer's resolution visible (a 7x7 map shows 49
    cells), with thin dark lines between cells when they are large enough.
    """
    raw = np.nan_to_num(np.asarray(raw, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(raw.max()) if raw.size else 0.0
    heat = raw / peak if peak > 0 else np.zeros_like(raw)
    height, width = heat.shape
    cell = max(1, size // max(height, width))
    picture = cv2.resize(
        colorize(heat, colormap), (width * cell, height * cell), interpolation=cv2.INTER_NEAREST
    )
    if cell >= 8:
        picture[::cell, :] = (picture[::cell, :] * 0.6).astype(np.uint8)
        picture[:, ::cell] = (picture[:, ::cell] * 0.6).astype(np.uint8)
    return picture


def thumbnail(path: Path, max_width: int = 360) -> np.ndarray:
    """The first frame of a video (or the image), at most `max_width` wide."""
    return fit_width(read_image(path), max_width)


def colormap_strip(colormap: str, width: int = 256, height: int = 14) -> np.ndarray:
    """A horizontal bar from 0 (left) to 1 (right) in a colour map, for the settings."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    return colorize(ramp, colormap)


SAMPLE_PHOTOS: dict[str, str] = {
    "chelsea": "Chelsea the tabby cat",
    "coffee": "a cup of coffee",
    "astronaut": "an astronaut",
    "rocket": "a rocket on its launch pad",
}
"""The scikit-image photos sample clips are made from, and what they show."""


def sample_clip(folder: Path, name: str, seconds: float = 4.0) -> Path:
    """The pan-and-zoom sample clip of a photo, made once and then reused from `folder`."""
    from gradcam_client.media.samples import write_sample_clip

    path = folder / f"{name}-{seconds:g}s.mp4"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".making-", dir=folder))
    try:
        made = write_sample_clip(private / path.name, name, seconds=seconds)
        os.replace(made, path)  # atomic: a session never sees half a clip
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return path
