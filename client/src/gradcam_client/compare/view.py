"""The frames of a comparison video: A | B, each with its map and label, over a strip.

Each half is the frame with its side's heat map (smoothed and normalised like any heat-map
video, `MapRenderer`), titled with the model (top-left) and labelled with its explained
class (bottom-left). Below both, a caption line says whether the top classes agree and
gives the frame's map measures (correlation, hottest-20 % IoU, distance), and under it runs
the strip: one cell per frame of the clip, filled as the video plays, green where the models
agree, amber where their hot regions overlap less than `DIFFER_IOU`, red where their top
classes differ, with a white cursor at the current frame. Halves wider than `MAX_WIDTH` / 2
are scaled down.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from gradcam_client.compare.results import FrameComparison
from gradcam_client.media.frames import Frame
from gradcam_client.render.compose import FONT, pad_to_even
from gradcam_client.render.compose_yuv import (
    AnyPicture,
    RgbToPicture,
    picture_size,
    resize_picture,
    tile_pictures,
)
from gradcam_client.render.renderer import MapRenderer

MAX_WIDTH = 3840
"""The widest comparison frame (both halves)."""

STRIP_FRACTION = 0.04
"""The strip's height relative to the frame's."""

CAPTION_FRACTION = 0.07
"""The caption line's height relative to the frame's."""

AGREE = (40, 160, 70)
MAPS_DIFFER = (240, 170, 0)
TOP1_DIFFERS = (220, 40, 40)
NOT_YET = (48, 48, 48)
CURSOR = (255, 255, 255)


def half_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of one half for a frame of that size (scaled to fit `MAX_WIDTH`, then
    to an even height)."""
    if 2 * width <= MAX_WIDTH:
        return width, height
    new_width = MAX_WIDTH // 2
    return new_width, max(2, round(height * new_width / width / 2) * 2)


def strip_height(height: int) -> int:
    return max(6, round(height * STRIP_FRACTION))


def caption_height(height: int) -> int:
    return max(14, round(height * CAPTION_FRACTION))


def state_colour(comparison: FrameComparison) -> tuple[int, int, int]:
    """The strip's colour for one frame."""
    if comparison.top1_agree is False:
        return TOP1_DIFFERS
    return MAPS_DIFFER if comparison.differ else AGREE


def caption_text(comparison: FrameComparison) -> str:
    """The caption of one frame: top-1 agreement and the map measures."""
    top1 = {True: "same top class", False: "other top class", None: "no shared classes"}
    m = comparison.agreement
    return (
        f"{top1[comparison.top1_agree]}  |  maps: r {m.correlation:.2f}  "
        f"IoU {m.hot_iou:.2f}  d {m.distance:.3f}"
    )


def caption(width: int, height: int, comparison: FrameComparison) -> np.ndarray:
    """The caption line: a square in the frame's strip colour, then `caption_text`."""
    band = np.zeros((height, width, 3), np.uint8)
    pad = max(2, height // 5)
    band[pad : height - pad, pad : height - pad] = state_colour(comparison)
    text = caption_text(comparison)
    scale = (height - 2 * pad) / 22.0
    thickness = max(1, round(scale * 1.5))
    room = width - height - pad
    text_width = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
    if text_width > room:
        scale *= room / text_width
        thickness = max(1, round(scale * 1.5))
    cv2.putText(
        band, text, (height, height - pad), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )
    return band


class Timeline:
    """The strip: a cell per frame over the comparison's width, filled as frames come."""

    def __init__(self, width: int, height: int, total_frames: int | None) -> None:
        self.image = np.empty((height, width, 3), np.uint8)
        self.image[:] = NOT_YET
        self.total = max(1, total_frames or 1)

    def _span(self, index: int) -> tuple[int, int]:
        width = self.image.shape[1]
        total = max(self.total, index + 1)  # an estimate of the frame count may fall short
        start = min(width - 1, index * width // total)
        return start, max(start + 1, (index + 1) * width // total)

    def mark(self, comparison: FrameComparison) -> np.ndarray:
        """Fill the frame's cell; the strip with a cursor at it."""
        start, end = self._span(comparison.frame)
        self.image[:, start:end] = state_colour(comparison)
        shown = self.image.copy()
        cursor = min(shown.shape[1] - 1, (start + end) // 2)
        shown[:, max(0, cursor - 1) : cursor + 1] = CURSOR
        return shown


class PairRenderer:
    """Composes comparison frames (RGB or yuv420p, as decoded) in frame order; see the module
    docstring.

    `compose` has the signature `EncoderThread` calls; the explanations are what
    `file_job.explanation` gives for each side's answer.
    """

    def __init__(
        self, a: MapRenderer, b: MapRenderer, size: tuple[int, int], total: int | None
    ) -> None:
        self.a, self.b = a, b
        width, height = half_size(*size)
        self.half = (width, height)
        self.timeline = Timeline(2 * width, strip_height(height), total)
        self.to_picture = RgbToPicture()

    def render(
        self,
        image: np.ndarray,
        explained_a: tuple[dict[str, np.ndarray], int, float],
        explained_b: tuple[dict[str, np.ndarray], int, float],
        comparison: FrameComparison,
    ) -> np.ndarray:
        """The comparison frame of one RGB frame."""
        if image.shape[1::-1] != self.half:
            image = cv2.resize(image, self.half, interpolation=cv2.INTER_AREA)
        left = self.a.render(image, *explained_a)
        right = self.b.render(image, *explained_b)
        return pad_to_even(np.vstack([np.hstack([left, right]), self.band(comparison)]))

    def band(self, comparison: FrameComparison) -> np.ndarray:
        """The caption line over the strip (RGB), for one frame."""
        text = caption(2 * self.half[0], caption_height(self.half[1]), comparison)
        return np.vstack([text, self.timeline.mark(comparison)])

    def render_picture(
        self,
        picture: AnyPicture,
        explained_a: tuple[dict[str, np.ndarray], int, float],
        explained_b: tuple[dict[str, np.ndarray], int, float],
        comparison: FrameComparison,
    ) -> np.ndarray:
        """`render` for a yuv420p picture of even size: a yuv420p comparison picture
        (`picture` is only read)."""
        if picture_size(picture)[::-1] != self.half:
            picture = resize_picture(picture, self.half)
        right = self.b.render_picture(picture, *explained_b)
        left = self.a.render_picture(picture, *explained_a)
        band = self.to_picture(pad_to_even(self.band(comparison)))
        return tile_pictures([[left, right], [band]])

    def compose(
        self,
        frame: Frame,
        explained_a: tuple[dict[str, np.ndarray], int, float],
        explained_b: tuple[dict[str, np.ndarray], int, float],
        comparison: FrameComparison,
    ) -> Frame:
        """`render` (or `render_picture` for a yuv420p frame) with the frame's timing."""
        explained = (explained_a, explained_b, comparison)
        if frame.pixel_format == "yuv420p":
            return replace(frame, image=self.render_picture(frame.image, *explained))
        return replace(frame, image=self.render(frame.image, *explained))
