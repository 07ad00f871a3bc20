"""Composing heat-map frames: upsample, colour-map, blend, label, lay out.

Input is an original RGB frame (uint8, any size) and one or more *normalised* maps in [0, 1] at
the explained layer's resolution (see `gradcam_client.render.normalize`). The order is fixed:

1. upsample the [0, 1] heat to the frame's resolution (`upsample`), clipped to [0, 1];
2. colour-map the upsampled heat (`colorize`): colour-mapping first and resizing afterwards
   would interpolate colours instead of heat, giving hues that are not on the colour map;
3. alpha-blend onto the original full-resolution frame (`blend`).

The map is stretched over the whole frame, matching a client that resizes (not crops) frames
to the model's input size. OpenCV colour maps are BGR; everything here is RGB.

`compose_frame` runs the whole pipeline for one frame under `CompositionSettings` and returns
one RGB uint8 image whose size depends only on the frame size and the settings, so a video
encoder gets the same size every frame.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

import cv2
import numpy as np

COLORMAPS: dict[str, int] = {
    name[len("COLORMAP_") :].lower(): getattr(cv2, name)
    for name in sorted(dir(cv2))
    if name.startswith("COLORMAP_")
}
"""Colour-map names (jet, turbo, inferno, viridis, magma, hot, ...) -> OpenCV codes."""

INTERPOLATIONS: dict[str, int] = {
    "cubic": cv2.INTER_CUBIC,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
}
"""Upsampling interpolations by name."""

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_PX_AT_SCALE_1 = 22.0  # cap height of FONT at scale 1
_FONT_LINE_PX = 32.0  # cap height plus descender room (baseline) at scale 1
_MIN_FONT_SCALE = 0.3  # below this Hershey text is not readable
_TEXT_HEIGHT_FRACTION = 0.045  # text height relative to the shorter frame side
BOX_SHADE = 0.35  # the box behind text keeps this fraction of the frame's brightness


class Layout(str, Enum):
    """How the composed image is arranged."""

    OVERLAY = "overlay"
    SIDE_BY_SIDE = "side_by_side"
    GRID = "grid"

    @classmethod
    def parse(cls, value: Layout | str) -> Layout:
        """A layout from itself or its name ("side-by-side" works too)."""
        if isinstance(value, Layout):
            return value
        try:
            return cls(str(value).strip().lower().replace("-", "_"))
        except ValueError:
            choices = ", ".join(lay.value for lay in cls)
            raise ValueError(f"unknown layout {value!r}; choose one of: {choices}") from None


def colormap_code(name: str) -> int:
    """The OpenCV code of a colour map by name; ValueError listing the choices otherwise."""
    code = COLORMAPS.get(str(name).strip().lower())
    if code is None:
        raise ValueError(f"unknown colour map {name!r}; choose one of: {', '.join(COLORMAPS)}")
    return code


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"frame must be a uint8 numpy array; got {getattr(frame, 'dtype', frame)}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame must be RGB of shape (H, W, 3); got shape {frame.shape}")
    return np.ascontiguousarray(frame)


def _check_heat(heat: np.ndarray) -> np.ndarray:
    arr = np.asarray(heat, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"a heat map must be 2-D (h, w); got shape {arr.shape}")
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(arr, 0.0, 1.0)


def upsample(heat: np.ndarray, size: tuple[int, int], interpolation: str = "cubic") -> np.ndarray:
    """Resize a [0, 1] heat map to ``size = (height, width)``; float32, clipped to [0, 1].

    Cubic interpolation overshoots near sharp peaks, hence the clip. NaN counts as 0.
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive; got {size}")
    code = INTERPOLATIONS.get(interpolation)
    if code is None:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; choose one of: {', '.join(INTERPOLATIONS)}"
        )
    arr = _check_heat(heat)  # cleaned at map resolution, before the (large) resize
    if arr.shape != (height, width):
        arr = cv2.resize(arr, (width, height), interpolation=code)
        np.clip(arr, 0.0, 1.0, out=arr)
    return arr


def colorize(heat: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """RGB uint8 image of a [0, 1] heat map under a named OpenCV colour map."""
    return _colorize_clean(_check_heat(heat), colormap)


def _colorize_clean(heat: np.ndarray, colormap: str) -> np.ndarray:
    """`colorize` for a heat map already known to be float32 in [0, 1]."""
    code = colormap_code(colormap)
    index = cv2.convertScaleAbs(heat, alpha=255.0)  # rounds and saturates to uint8
    return cv2.cvtColor(cv2.applyColorMap(index, code), cv2.COLOR_BGR2RGB)


def blend(
    frame: np.ndarray,
    color: np.ndarray,
    alpha: float,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """``(1 - a) * frame + a * color`` as uint8; alpha 0 gives the frame, 1 the colour image.

    With ``weight`` (an (H, W) array in [0, 1], e.g. the heat itself) the opacity is
    ``alpha * weight`` per pixel, so cold regions leave the frame untouched.
    """
    frame = _check_frame(frame)
    if color.shape != frame.shape:
        raise ValueError(f"colour image shape {color.shape} differs from frame {frame.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if weight is None:
        return cv2.addWeighted(frame, 1.0 - alpha, color, alpha, 0.0)
    opacity = (np.float32(alpha) * np.clip(weight, 0.0, 1.0).astype(np.float32))[..., None]
    base = frame.astype(np.float32)
    out = base + (color.astype(np.float32) - base) * opacity
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay(
    frame: np.ndarray,
    heat: np.ndarray,
    colormap: str = "jet",
    alpha: float = 0.5,
    *,
    interpolation: str = "cubic",
    heat_weighted: bool = False,
) -> np.ndarray:
    """Upsample ``heat`` to the frame, colour-map it and blend it onto ``frame`` (RGB uint8)."""
    frame = _check_frame(frame)
    full = upsample(heat, frame.shape[:2], interpolation)
    return blend(frame, _colorize_clean(full, colormap), alpha, full if heat_weighted else None)


def format_label(class_name: str, probability: float) -> str:
    """The label text, e.g. ``"Siamese cat 0.87"``."""
    return f"{class_name} {probability:.2f}"


def _ascii(text: str) -> str:
    """Hershey fonts draw ASCII only: strip accents, drop the rest."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(folded.split())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _candidates(text: str) -> list[str]:
    """The text, then ever shorter truncations ("Siamese c.. 0.87"), keeping a trailing number."""
    head, _, tail = text.rpartition(" ")
    if not (head and _is_number(tail)):
        head, tail = text, ""
    suffix = f" {tail}" if tail else ""
    shorter = [head[:n].rstrip() + ".." + suffix for n in range(len(head) - 1, 0, -1)]
    return [text, *shorter, *([tail] if tail else [])]


def _fit_text(text: str, max_width: int, max_height: int, scale: float) -> tuple[str, float, int]:
    """Shrink (to the readable minimum), then truncate text to fit; ("", 0, 0) if nothing fits."""
    scale = min(scale, max_height / _FONT_LINE_PX)
    if scale < _MIN_FONT_SCALE:
        return "", 0.0, 0
    thickness = max(1, round(scale * 1.6))
    (width, _), _ = cv2.getTextSize(text, FONT, scale, thickness)
    if width > max_width:
        scale = max(_MIN_FONT_SCALE, scale * max_width / width)
        thickness = max(1, round(scale * 1.6))
    for candidate in _candidates(text):
        (width, _), _ = cv2.getTextSize(candidate, FONT, scale, thickness)
        if width <= max_width:
            return candidate, scale, thickness
    return "", 0.0, 0


@dataclass(frozen=True)
class LabelPlacement:
    """Where and how a label is drawn: fitted text, font, and its box (x, y, width, height)."""

    text: str
    scale: float
    thickness: int
    box: tuple[int, int, int, int]
    origin: tuple[int, int]  # text baseline start


def place_label(height: int, width: int, text: str, corner: Corner) -> LabelPlacement | None:
    """How `draw_label` lays out `text` on a (height, width) image; None when nothing fits."""
    text = _ascii(text)
    if not text:
        return None
    target_px = max(min(height, width) * _TEXT_HEIGHT_FRACTION, _MIN_FONT_SCALE * 22.0)
    target_scale = target_px / _FONT_PX_AT_SCALE_1
    margin = max(1, round(target_px * 0.35))
    text, scale, thickness = _fit_text(text, width - 4 * margin, height - 4 * margin, target_scale)
    if not text:
        return None
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = margin
    box_w = min(width, text_w + 2 * pad)
    box_h = min(height, text_h + baseline + 2 * pad)
    x0 = margin if corner.endswith("left") else width - margin - box_w
    y0 = margin if corner.startswith("top") else height - margin - box_h
    x0, y0 = max(0, x0), max(0, y0)
    return LabelPlacement(
        text, scale, thickness, (x0, y0, box_w, box_h), (x0 + pad, y0 + pad + text_h)
    )


def paint_label(
    image: np.ndarray, placement: LabelPlacement, offset: tuple[int, int] = (0, 0)
) -> None:
    """Draw a placed label into `image` in place; `image` starts at `offset` (x, y) of the frame."""
    x0, y0, box_w, box_h = placement.box
    x0, y0 = x0 - offset[0], y0 - offset[1]
    roi = image[y0 : y0 + box_h, x0 : x0 + box_w]
    roi[:] = (roi.astype(np.float32) * BOX_SHADE).astype(np.uint8)
    origin = (placement.origin[0] - offset[0], placement.origin[1] - offset[1])
    cv2.putText(
        image,
        placement.text,
        origin,
        FONT,
        placement.scale,
        (255, 255, 255),
        placement.thickness,
        cv2.LINE_AA,
    )


def draw_label(
    image: np.ndarray,
    text: str,
    corner: Corner = "top-left",
) -> np.ndarray:
    """A copy of ``image`` with ``text`` in white on a dark box in a corner.

    The text height is a fixed fraction of the image's shorter side; too-long text is shrunk,
    then truncated with ".." (keeping a trailing probability). On an image too small to hold
    readable text the copy is returned unchanged.
    """
    out = _check_frame(image).copy()
    placement = place_label(out.shape[0], out.shape[1], text, corner)
    if placement is not None:
        paint_label(out, placement)
    return out


def grid_shape(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for ``count`` panels (columns = ceil(sqrt(n)))."""
    if count < 1:
        raise ValueError(f"a grid needs at least one panel; got {count}")
    cols = columns if columns is not None else math.ceil(math.sqrt(count))
    if cols < 1:
        raise ValueError(f"columns must be positive; got {columns}")
    cols = min(cols, count)
    return math.ceil(count / cols), cols


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two equally sized RGB images next to each other (e.g. original | overlay)."""
    return grid([left, right], columns=2)


def grid(
    panels: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    columns: int | None = None,
) -> np.ndarray:
    """Equally sized RGB panels in a near-square grid, each optionally titled (top-left).

    Empty cells (e.g. 3 panels in a 2x2 grid) are black. The output is
    ``(rows * H, columns * W, 3)``: it depends only on the panel size and count.
    """
    if not panels:
        raise ValueError("a grid needs at least one panel")
    panels = [_check_frame(p) for p in panels]
    shape = panels[0].shape
    if any(p.shape != shape for p in panels):
        raise ValueError(f"panels differ in size: {[p.shape for p in panels]}")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"{len(titles)} titles for {len(panels)} panels")
    rows, cols = grid_shape(len(panels), columns)
    height, width = shape[:2]
    out = np.zeros((rows * height, cols * width, 3), np.uint8)
    for i, panel in enumerate(panels):
        if titles is not None and titles[i]:
            panel = draw_label(panel, titles[i], "top-left")
        r, c = divmod(i, cols)
        out[r * height : (r + 1) * height, c * width : (c + 1) * width] = panel
    return out


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """Pad the bottom/right edge with one black row/column where a dimension is odd."""
    height, width = image.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if not (pad_h or pad_w):
        return image
    return cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))


@dataclass(frozen=True)
class CompositionSettings:
    """How frames are composed.

    - ``colormap``: an OpenCV colour-map name (see `COLORMAPS`).
    - ``alpha``: opacity of the heat map in [0, 1] (0 = original frame, 1 = colour map only).
    - ``layout``: ``overlay``, ``side_by_side`` (original | overlay) or ``grid`` (one panel
      per map, titled).
    - ``show_label``: draw the class label (when one is given) in ``label_corner``.
    - ``label_corner``: where the label goes (default bottom-left; a page whose video player
      puts its controls over the bottom of the picture moves it to the top).
    - ``show_titles``: title each map's panel (top-left) with its name.
    - ``interpolation``: ``cubic``, ``linear`` or ``nearest`` for upsampling the heat.
    - ``heat_weighted``: opacity ``alpha * heat`` per pixel, so cold regions stay untouched.
    - ``include_original``: in the ``grid`` layout, the original frame as the first panel.
    - ``columns``: grid columns (default near-square).
    - ``max_width``: scale frames down (never up) so the output is at most this wide.
    - ``even_dimensions``: pad the output to even width and height (yuv420p encoders).
    """

    colormap: str = "jet"
    alpha: float = 0.5
    layout: Layout | str = Layout.OVERLAY
    show_label: bool = True
    label_corner: Corner = "bottom-left"
    show_titles: bool = True
    interpolation: str = "cubic"
    heat_weighted: bool = False
    include_original: bool = False
    columns: int | None = None
    max_width: int | None = None
    even_dimensions: bool = True

    def __post_init__(self) -> None:
        colormap_code(self.colormap)
        object.__setattr__(self, "colormap", str(self.colormap).strip().lower())
        object.__setattr__(self, "layout", Layout.parse(self.layout))
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
        if self.label_corner not in get_args(Corner):
            raise ValueError(
                f"unknown label corner {self.label_corner!r}; choose from "
                f"{', '.join(get_args(Corner))}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; "
                f"choose one of: {', '.join(INTERPOLATIONS)}"
            )
        if self.columns is not None and not (isinstance(self.columns, int) and self.columns >= 1):
            raise ValueError(f"columns must be a positive integer or None; got {self.columns!r}")
        if self.max_width is not None and not (
            isinstance(self.max_width, int) and self.max_width >= 2
        ):
            raise ValueError(f"max_width must be an integer >= 2 or None; got {self.max_width!r}")


def _panel_count(layout: Layout, maps: int, include_original: bool) -> int:
    if layout is Layout.OVERLAY:
        return 1
    if layout is Layout.SIDE_BY_SIDE:
        return 2
    return maps + int(include_original)


def _fit_width(frame: np.ndarray, columns: int, max_width: int | None) -> np.ndarray:
    """Scale the frame down so ``columns`` panels of it fit in ``max_width``."""
    height, width = frame.shape[:2]
    if max_width is None or columns * width <= max_width:
        return frame
    new_w = max(1, max_width // columns)
    new_h = max(1, round(height * new_w / width))
    return cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)


def compose_frame(
    frame: np.ndarray,
    heats: np.ndarray | Mapping[str, np.ndarray],
    settings: CompositionSettings | None = None,
    label: str | None = None,
) -> np.ndarray:
    """Compose one output image (RGB uint8) from an RGB frame and normalised heat maps.

    ``heats`` is one [0, 1] map or a mapping title -> map (e.g. layer names or method display
    names); ``overlay`` and ``side_by_side`` show exactly one map, ``grid`` one panel per map.
    ``label`` (see `format_label`) is drawn in ``settings.label_corner``: on the overlay panel of
    ``side_by_side`` and on the bottom-left panel of a grid. Titles (the mapping's keys, and
    "original" for the original panel) are drawn top-left.
    """
    settings = settings or CompositionSettings()
    layout = Layout.parse(settings.layout)
    frame = _check_frame(frame)
    named = dict(heats) if isinstance(heats, Mapping) else {"": heats}
    if not named:
        raise ValueError("compose_frame needs at least one heat map")
    if layout is not Layout.GRID and len(named) != 1:
        raise ValueError(
            f"layout {layout.value!r} shows one map; got {len(named)} ({', '.join(named)}); "
            "use the 'grid' layout for several"
        )
    count = _panel_count(layout, len(named), settings.include_original)
    _, cols = grid_shape(count, settings.columns if layout is Layout.GRID else None)
    frame = _fit_width(frame, cols, settings.max_width)

    def render(heat: np.ndarray) -> np.ndarray:
        return overlay(
            frame,
            heat,
            settings.colormap,
            settings.alpha,
            interpolation=settings.interpolation,
            heat_weighted=settings.heat_weighted,
        )

    panels = [render(heat) for heat in named.values()]
    titles = list(named)
    if layout is Layout.SIDE_BY_SIDE or (layout is Layout.GRID and settings.include_original):
        panels.insert(0, frame)
        titles.insert(0, "original")
    if settings.show_label and label and layout is not Layout.OVERLAY:
        if layout is Layout.SIDE_BY_SIDE:
            index = 1
        else:
            rows, cols = grid_shape(len(panels), settings.columns)
            index = (rows - 1) * cols
        panels[index] = draw_label(panels[index], label, settings.label_corner)
    if layout is Layout.OVERLAY:
        out = panels[0]
        if settings.show_titles and titles[0]:
            out = draw_label(out, titles[0], "top-left")
        if settings.show_label and label:
            out = draw_label(out, label, settings.label_corner)
    else:
        columns = settings.columns if layout is Layout.GRID else 2
        out = grid(panels, titles if settings.show_titles else None, columns)
    return pad_to_even(out) if settings.even_dimensions else out
