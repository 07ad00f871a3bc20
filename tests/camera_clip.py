"""A fake camera for Chromium: a Y4M clip of scikit-image photos whose frames carry their own
number as a bar code along the bottom, readable again from any frame made from them.

Each of `BITS` bits is a pair of neighbouring cells, white-black for 1 and black-white for 0:
a heat map blended over the bar tints both cells of a pair alike, so comparing the two reads
the bit whatever the colour (the map's resolution is far coarser than a cell).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gradcam_client.media.samples import pan_zoom_frames

BITS = 8
BAR_HEIGHT = 0.1  # of the frame's height
CELLS = 2 * BITS


def draw_code(image: np.ndarray, number: int) -> np.ndarray:
    """`image` (RGB) with `number` as a bar code along its bottom edge."""
    out = image.copy()
    height, width = out.shape[:2]
    top = round(height * (1 - BAR_HEIGHT))
    for bit in range(BITS):
        one = (number >> (BITS - 1 - bit)) & 1
        for half, white in enumerate((one, 1 - one)):
            cell = 2 * bit + half
            x0, x1 = cell * width // CELLS, (cell + 1) * width // CELLS
            out[top:, x0:x1] = 255 if white else 0
    return out


def read_code(image: np.ndarray) -> int:
    """The number `draw_code` drew into a frame made from it (any size, RGB or BGR)."""
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    height, width = gray.shape
    top = round(height * (1 - BAR_HEIGHT))
    band = gray[top + (height - top) // 4 : height - (height - top) // 4]
    means = []
    for cell in range(CELLS):
        x0, x1 = cell * width // CELLS, (cell + 1) * width // CELLS
        inner = max(1, (x1 - x0) // 4)
        means.append(float(band[:, x0 + inner : x1 - inner].mean()))
    return code_from_means(means)


def code_from_means(means: list[float]) -> int:
    """The number from the mean brightness of each cell of the bar, left to right."""
    number = 0
    for bit in range(BITS):
        number = (number << 1) | int(means[2 * bit] > means[2 * bit + 1])
    return number


BAR_MEANS_JS = f"""(video) => {{
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    const canvas = document.createElement('canvas');
    canvas.width = w; canvas.height = h;
    const context = canvas.getContext('2d', {{willReadFrequently: true}});
    context.drawImage(video, 0, 0, w, h);
    const data = context.getImageData(0, 0, w, h).data;
    const top = Math.round(h * (1 - {BAR_HEIGHT})), quarter = Math.floor((h - top) / 4);
    const means = [];
    for (let cell = 0; cell < {CELLS}; cell++) {{
        const x0 = Math.floor(cell * w / {CELLS}), x1 = Math.floor((cell + 1) * w / {CELLS});
        const inner = Math.max(1, Math.floor((x1 - x0) / 4));
        let sum = 0, n = 0;
        for (let y = top + quarter; y < h - quarter; y++)
            for (let x = x0 + inner; x < x1 - inner; x++) {{
                const i = 4 * (y * w + x);
                sum += (data[i] + data[i + 1] + data[i + 2]) / 3; n++;
            }}
        means.push(sum / n);
    }}
    const grid = [];
    for (let gy = 0; gy < 6; gy++)
        for (let gx = 0; gx < 8; gx++) {{
            const x = Math.floor((gx + 0.5) * w / 8), y = Math.floor((gy + 0.5) * top / 6);
            const i = 4 * (y * w + x);
            grid.push(data[i], data[i + 1], data[i + 2]);
        }}
    return {{means, grid, width: w, height: h}};
}}"""
"""A page function of a video element: the bar's cell means (see `code_from_means`), a
coarse grid of the picture's colours above the bar, and the video's size."""


def photo_frames(
    photos: tuple[str, ...], per_photo: int, size: tuple[int, int]
) -> list[tuple[str, np.ndarray]]:
    """Each photo panned over in turn (`per_photo` frames each), numbered by bar code."""
    frames = []
    for name in photos:
        for image in pan_zoom_frames(per_photo, size, name):
            frames.append((name, draw_code(image, len(frames))))
    return frames


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """RGB frames as a Y4M file (4:2:0), the format Chromium's fake camera reads."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
