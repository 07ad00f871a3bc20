"""Composing the overlay directly on yuv420p pictures, the pixel format the encoder takes.

A decoded frame usually is yuv420p already; converting it to RGB to blend the heat map and back
to yuv420p for the encoder costs more than the blend itself. Blending is linear, so blending in
YUV gives the RGB result up to rounding and the sharing of chroma between 2x2 pixels that
yuv420p does anyway:

1. the [0, 1] heat is upsampled (cubic, clipped) to the chroma planes' resolution (half the
   frame's width and height) and turned into colour-map indices 0..255 there, then the indices
   are upsampled linearly to the luma resolution; a map almost as fine as the frame is
   upsampled to full resolution instead (`color_planes`);
2. each plane takes its colour from a 256-entry table: the colour map's RGB colours in BT.709
   limited-range YUV, the colours the RGB path would give the encoder;
3. each plane is alpha-blended with its colour plane;
4. labels are drawn on the small region under their box only, directly in YUV.

A picture is the (H * 3 / 2, W) uint8 array PyAV uses for yuv420p (`av.VideoFrame.to_ndarray`):
the luma rows, then the U and the V plane, each (H/2, W/2), stored one after the other. Width
and height must be even. Where a picture is only read, its `Planes` do as well: the decoder's
own planes, blended into a picture of a `PicturePool` without being copied first.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from functools import lru_cache

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from gradcam_client.media.frames import Planes
from gradcam_client.render.compose import (
    BOX_SHADE,
    FONT,
    INTERPOLATIONS,
    Corner,
    LabelPlacement,
    _check_heat,
    colormap_code,
    place_label,
)

AnyPicture = np.ndarray | Planes
"""A yuv420p picture to read from: one (H * 3 / 2, W) array, or its `Planes`."""

_BT709 = np.array(
    [[0.2126, 0.7152, 0.0722], [-0.114572, -0.385428, 0.5], [0.5, -0.454153, -0.045847]],
    np.float64,
)


def planes(picture: AnyPicture) -> Planes:
    """Views (Y, U, V) of a yuv420p picture: (H, W), (H/2, W/2), (H/2, W/2)."""
    if isinstance(picture, Planes):
        return picture
    height, width = picture.shape[0] * 2 // 3, picture.shape[1]
    flat = picture.reshape(-1)
    luma = height * width
    quarter = luma // 4
    return Planes(
        flat[:luma].reshape(height, width),
        flat[luma : luma + quarter].reshape(height // 2, width // 2),
        flat[luma + quarter : luma + 2 * quarter].reshape(height // 2, width // 2),
    )


def picture_size(picture: AnyPicture) -> tuple[int, int]:
    """(height, width) of the frame a yuv420p picture holds."""
    if isinstance(picture, Planes):
        return picture.y.shape[0], picture.y.shape[1]
    return picture.shape[0] * 2 // 3, picture.shape[1]


def empty_picture(height: int, width: int) -> np.ndarray:
    """An uninitialised yuv420p picture of an even (height, width)."""
    return np.empty((height * 3 // 2, width), np.uint8)


def resize_picture(picture: AnyPicture, size: tuple[int, int]) -> np.ndarray:
    """A yuv420p picture scaled to `size` (width, height, both even), plane by plane (area
    interpolation when shrinking, linear when growing)."""
    width, height = size
    shrinking = picture_size(picture)[1] >= width
    code = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = empty_picture(height, width)
    for source, target in zip(planes(picture), planes(out), strict=True):
        target[:] = cv2.resize(source, target.shape[::-1], interpolation=code)
    return out


class RgbToPicture:
    """Converts RGB images of even size to yuv420p BT.709 limited-range pictures with FFmpeg's
    scaler, as `VideoWriter.write` converts RGB frames. It keeps its scaler between calls
    (setting one up costs more than converting a small image): one per thread."""

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        return self._reformatter.reformat(
            frame, format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG", threads=1
        ).to_ndarray()


def tile_pictures(rows: list[list[AnyPicture]]) -> np.ndarray:
    """One yuv420p picture of rows of pictures, placed left to right then top to bottom; the
    pictures of a row share a height, the rows a width (all sizes even)."""
    heights = [picture_size(row[0])[0] for row in rows]
    width = sum(picture_size(picture)[1] for picture in rows[0])
    out = empty_picture(sum(heights), width)
    out_planes = planes(out)
    top = 0
    for row, height in zip(rows, heights, strict=True):
        left = 0
        for picture in row:
            piece_width = picture_size(picture)[1]
            for scale, source, target in zip((1, 2, 2), planes(picture), out_planes, strict=True):
                target[
                    top // scale : (top + height) // scale,
                    left // scale : (left + piece_width) // scale,
                ] = source
            left += piece_width
        top += height
    return out


class PicturePool:
    """Pictures to compose into, each taken again once nothing else refers to it.

    A picture handed to the encoder is held by the queues, the frame that wraps it and the
    encoder until it is encoded (FFmpeg's reference to it is a reference to the array), and
    by any view of it. A fresh array for every frame would instead cost the kernel's zeroed
    pages again and again (a 3840x2160 picture is 3000 of them). Used by one thread.
    """

    _FREE = 3  # the pool's list, the loop's name and getrefcount's own argument

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._pictures: list[np.ndarray] = []

    def take(self, height: int, width: int) -> np.ndarray:
        """An uninitialised yuv420p picture of (height, width) that nothing else uses."""
        shape = (height * 3 // 2, width)
        for picture in self._pictures:
            if picture.shape == shape and sys.getrefcount(picture) <= self._FREE:
                return picture
        picture = empty_picture(height, width)
        if len(self._pictures) == self.size:  # all still in use, or of another size
            self._pictures.pop(0)
        self._pictures.append(picture)
        return picture


@lru_cache(maxsize=32)
def colormap_yuv(colormap: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables index 0..255 -> Y, U, V (uint8, BT.709 limited range) of a colour map."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], colormap_code(colormap))
    rgb = bgr[:, 0, ::-1].astype(np.float64) / 255.0
    yuv = rgb @ _BT709.T
    y = 16.0 + 219.0 * yuv[:, 0]
    u = 128.0 + 224.0 * yuv[:, 1]
    v = 128.0 + 224.0 * yuv[:, 2]
    return tuple(np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, u, v))  # type: ignore[return-value]


LOW_RES_FACTOR = 8
"""Heat maps are upsampled at chroma resolution only when that is this many times their size."""


def heat_scale_for(map_size: tuple[int, int], size: tuple[int, int]) -> int:
    """2 (upsample the heat to chroma resolution) when that is still `LOW_RES_FACTOR` times the
    map's (height, width), else 1 (to the frame's full `size`)."""
    coarse = min(size[0] // 2 / map_size[0], size[1] // 2 / map_size[1])
    return 2 if coarse >= LOW_RES_FACTOR else 1


@lru_cache(maxsize=64)
def _resize_matrices(
    map_size: tuple[int, int], size: tuple[int, int], interpolation: str
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) with ``rows @ heat @ columns == cv2.resize(heat, size[::-1])`` for a
    heat map of `map_size` (height, width), to within float rounding.

    Resizing is separable and linear, so each axis is a matrix: OpenCV's own weights, found by
    resizing the identity along that axis. Two small matrix products upsample a 7x7 map four
    times faster than `cv2.resize`.
    """
    code = INTERPOLATIONS[interpolation]
    (map_h, map_w), (height, width) = map_size, size
    rows = cv2.resize(np.eye(map_h, dtype=np.float32), (map_h, height), interpolation=code)
    columns = cv2.resize(np.eye(map_w, dtype=np.float32), (width, map_w), interpolation=code)
    return rows, columns


class _Scratch(threading.local):
    """Arrays kept from one frame to the next on each thread: a fresh array for every plane
    of every frame costs the kernel's zeroed pages again and again."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
        key = (name, shape)
        array = self.arrays.get(key)
        if array is None or array.dtype != dtype:
            if len(self.arrays) > 32:  # sizes changed: start over
                self.arrays.clear()
            array = self.arrays[key] = np.empty(shape, dtype)
        return array


_SCRATCH = _Scratch()


def _fresh(name: str, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return np.empty(shape, dtype)


def color_planes(
    heat: np.ndarray,
    size: tuple[int, int],
    colormap: str = "jet",
    interpolation: str = "cubic",
    heat_scale: int | None = None,
    *,
    take: Callable[..., np.ndarray] = _fresh,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The colour-mapped heat as yuv420p planes (Y, U, V) for a frame of `size` (height, width).

    The heat is upsampled with `interpolation` to the frame's size divided by `heat_scale`
    (default `heat_scale_for`) and turned into colour-map indices. At scale 2 the chroma
    planes look up the indices at their own resolution (the heat is smooth there, so that is
    the colour of the 2x2 pixels) and the luma plane is its colours at that resolution,
    upsampled linearly. At scale 1 (a map almost as fine as the frame) the chroma planes are
    the average colour of each 2x2 block, as converting an RGB image to yuv420p gives.
    `take(name, shape)` gives the arrays written (new ones by default).
    """
    height, width = size
    heat = _check_heat(heat)
    scale = heat_scale or heat_scale_for(heat.shape, size)
    scaled = (max(1, height // scale), max(1, width // scale))
    rows, columns = _resize_matrices(heat.shape, scaled, interpolation)
    # numpy's BLAS: three times as fast as cv2.gemm here (OpenCV bundles an old OpenBLAS);
    # `runtime.prepare_for_frames` keeps it on the calling thread
    upsampled = np.matmul(rows @ heat, columns, out=take("heat", scaled, np.float32))
    index = cv2.convertScaleAbs(upsampled, dst=take("index", scaled), alpha=255.0)
    luma_table, u_table, v_table = colormap_yuv(colormap)
    chroma = (height // 2, width // 2)
    u, v = take("u", chroma), take("v", chroma)
    if scale == 1:
        luma = cv2.LUT(index, luma_table, dst=take("y", size))
        for plane, table in ((u, u_table), (v, v_table)):
            colours = cv2.LUT(index, table, dst=take("full", size))
            cv2.resize(colours, chroma[::-1], dst=plane, interpolation=cv2.INTER_AREA)
        return luma, u, v
    if scaled != chroma:
        index = cv2.resize(index, chroma[::-1], interpolation=cv2.INTER_AREA)
    cv2.LUT(index, u_table, dst=u)
    cv2.LUT(index, v_table, dst=v)
    luma_colours = cv2.LUT(index, luma_table, dst=take("y_chroma", chroma))
    luma = cv2.resize(
        luma_colours, (width, height), dst=take("y", size), interpolation=cv2.INTER_LINEAR
    )
    return luma, u, v


def overlay_yuv(
    picture: AnyPicture,
    heat: np.ndarray,
    colormap: str = "jet",
    alpha: float = 0.5,
    *,
    interpolation: str = "cubic",
    heat_scale: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The heat, colour-mapped, blended over `picture` with `alpha`: a new yuv420p picture, or
    `out` (which may be `picture` itself, to blend in place)."""
    size = picture_size(picture)
    colors = color_planes(heat, size, colormap, interpolation, heat_scale, take=_SCRATCH.take)
    if out is None:
        out = empty_picture(*size)
    for source, target, color in zip(planes(picture), planes(out), colors, strict=True):
        cv2.addWeighted(source, 1.0 - alpha, color, alpha, 0.0, dst=target)
    return out


def _region(placement: LabelPlacement, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The label's box grown by a little room for anti-aliasing, on even coordinates."""
    height, width = size
    x0, y0, box_w, box_h = placement.box
    left, top = max(0, (x0 - 2) // 2 * 2), max(0, (y0 - 2) // 2 * 2)
    right = min(width, (x0 + box_w + 3) // 2 * 2)
    bottom = min(height, (y0 + box_h + 3) // 2 * 2)
    return left, top, right, bottom


def _halve(mask: np.ndarray) -> np.ndarray:
    """A float32 mask at chroma resolution: the mean of each 2x2 block."""
    return cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0] // 2), interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=256)
def _label_shading(
    text: str, corner: Corner, size: tuple[int, int]
) -> tuple[tuple[int, int, int, int], tuple[tuple[np.ndarray, np.ndarray], ...]] | None:
    """Where a label goes on a frame of `size` (its region, as `_region`) and, for the
    region of each plane, the gain and offset that draw it: ``new = old * gain + offset``."""
    placement = place_label(*size, text, corner)
    if placement is None:
        return None
    left, top, right, bottom = region = _region(placement, size)
    x0, y0, box_w, box_h = placement.box
    box = np.zeros((bottom - top, right - left), np.float32)
    box[y0 - top : y0 - top + box_h, x0 - left : x0 - left + box_w] = 1.0
    coverage = np.zeros(box.shape, np.uint8)  # anti-aliasing needs an 8-bit canvas
    origin = (placement.origin[0] - left, placement.origin[1] - top)
    cv2.putText(
        coverage,
        placement.text,
        origin,
        FONT,
        placement.scale,
        255,
        placement.thickness,
        cv2.LINE_AA,
    )
    ink = coverage.astype(np.float32) / 255.0
    shading = []
    for black, white, box_mask, ink_mask in (
        (16.0, 235.0, box, ink),
        (128.0, 128.0, _halve(box), _halve(ink)),
        (128.0, 128.0, _halve(box), _halve(ink)),
    ):
        # darken towards black by the box, then blend in white by the ink's coverage
        shade = 1.0 - box_mask * (1.0 - BOX_SHADE)
        gain = shade * (1.0 - ink_mask)
        offset = black * (1.0 - shade) * (1.0 - ink_mask) + white * ink_mask
        gain.flags.writeable = offset.flags.writeable = False
        shading.append((gain, offset))
    return region, tuple(shading)


def draw_label_yuv(picture: np.ndarray, text: str, corner: Corner = "top-left") -> None:
    """Draw a label (as `compose.draw_label` does) into a yuv420p picture, in place.

    Only the region under the label's box is touched, directly in YUV: the box darkens the
    frame towards black (scaling luma above 16 and chroma around 128, which is what scaling
    RGB does), and the anti-aliased white text is blended in by its coverage. A label's
    shading is worked out once for each text, corner and frame size.
    """
    shading = _label_shading(text, corner, picture_size(picture))
    if shading is None:
        return
    (left, top, right, bottom), gains = shading
    luma, u, v = planes(picture)
    regions = (
        luma[top:bottom, left:right],
        u[top // 2 : bottom // 2, left // 2 : right // 2],
        v[top // 2 : bottom // 2, left // 2 : right // 2],
    )
    for plane, (gain, offset) in zip(regions, gains, strict=True):
        # in float32, rounded half to even and saturated into the plane's own memory
        values = cv2.multiply(plane, gain, dtype=cv2.CV_32F)
        cv2.add(values, offset, dst=values)
        cv2.convertScaleAbs(values, dst=plane)
