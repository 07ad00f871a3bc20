"""Sample clips made from real photos shipped by scikit-image (no download needed).

A crop window pans and zooms across the photo, so the clip has camera motion: the heat map
must follow the subject from frame to frame. Needs ``pip install gradcam-client[samples]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from gradcam_client.media import VideoInfo, VideoWriter

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
"""scikit-image photos usable as sources: a tabby cat, a coffee cup, an astronaut, a rocket."""


def photo(name: str = "chelsea") -> np.ndarray:
    """An RGB uint8 photo from `skimage.data`."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}")
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def pan_zoom_frames(
    n_frames: int = 12, size: tuple[int, int] = (160, 120), name: str = "chelsea"
) -> list[np.ndarray]:
    """Frames (width, height = `size`) of a camera panning left to right while zooming in."""
    width, height = size
    source = photo(name)
    src_h, src_w = source.shape[:2]
    aspect = width / height
    frames = []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        scale = 0.95 - 0.35 * t  # the window shrinks from 95 % to 60 % of the photo
        win_h = min(src_h, src_w / aspect) * scale
        win_w = win_h * aspect
        x0 = (src_w - win_w) * (0.1 + 0.8 * t)
        y0 = (src_h - win_h) * (0.5 + 0.3 * math.sin(2 * math.pi * t)) / 1.3
        crop = source[int(y0) : int(y0 + win_h), int(x0) : int(x0 + win_w)]
        frames.append(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))
    return frames


def write_frames(
    path: str | Path, frames: Iterable[np.ndarray], n_frames: int, size: tuple[int, int], fps: int
) -> Path:
    """Write `n_frames` RGB frames (width, height = `size`) as an H.264 MP4 at `fps`."""
    path = Path(path)
    info = VideoInfo(
        path=path,
        width=size[0],
        height=size[1],
        fps=float(fps),
        frame_count=n_frames,
        duration=n_frames / fps,
        has_audio=False,
        rotation=0,
        codec="h264",
        time_base=Fraction(1, fps),
    )
    with VideoWriter(path, info, audio=False) as writer:
        for index, frame in enumerate(frames):
            writer.write(frame, index)
    return path


def write_sample_clip(
    path: str | Path,
    name: str = "chelsea",
    *,
    seconds: float = 4.0,
    fps: int = 15,
    size: tuple[int, int] = (480, 320),
) -> Path:
    """Write an H.264 MP4 pan-and-zoom clip of a photo; returns its path."""
    n_frames = max(1, round(seconds * fps))
    return write_frames(path, pan_zoom_frames(n_frames, size, name), n_frames, size, fps)


def main() -> None:
    """`python -m gradcam_client.media.samples OUT.mp4 [PHOTO]`: write a sample clip."""
    import sys

    if len(sys.argv) < 2:
        sys.exit(f"usage: python -m gradcam_client.media.samples OUT.mp4 [{'|'.join(PHOTOS)}]")
    print(write_sample_clip(sys.argv[1], *sys.argv[2:3]))


if __name__ == "__main__":
    main()
