"""Heat maps onto frames: `MapRenderer` smooths and normalises each panel's maps and composes
them on full-resolution frames (RGB, or yuv420p pictures in place); the server's answers per
frame (`FrameOutput`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradcam_client.jobs.results import MapStore
from gradcam_client.jobs.settings import JobSettings, Panel
from gradcam_client.media import (
    Frame,
    VideoWriter,
)
from gradcam_client.remote.server import BatchResult
from gradcam_client.render.compose import Layout, compose_frame, format_label
from gradcam_client.render.compose_yuv import (
    AnyPicture,
    PicturePool,
    draw_label_yuv,
    overlay_yuv,
    picture_size,
)
from gradcam_client.render.normalize import (
    Normalizer,
    Scope,
    TemporalSmoother,
)
from gradcam_client.runtime import prepare_for_frames


@dataclass
class FrameOutput:
    """The server's answer for one frame."""

    probabilities: np.ndarray
    class_index: int
    maps: dict[str, np.ndarray]  # layer -> [methods, h, w]


def explanation(out: FrameOutput) -> tuple[dict[str, np.ndarray], int, float]:
    """The maps, the explained class and its probability: what a frame's label shows."""
    return out.maps, out.class_index, float(out.probabilities[out.class_index])


def frame_outputs(result: BatchResult) -> list[FrameOutput]:
    """A batch's answer split into one `FrameOutput` per frame."""
    return [
        FrameOutput(
            probabilities=result.probabilities[i],
            class_index=int(result.class_index[i]),
            maps={layer: maps[i] for layer, maps in result.maps.items()},
        )
        for i in range(len(result.class_index))
    ]


class MapRenderer:
    """Smooths, normalises and composes the selected maps onto full-resolution frames.

    Creating one makes OpenCV and numpy's BLAS run on the calling thread only and malloc keep
    freed blocks, for the whole process (`runtime.prepare_for_frames`). A yuv420p frame is
    composed into a picture of the renderer's own `PicturePool`, never in place, so a
    decoder's planes can be read as they are.
    """

    def __init__(
        self,
        panels: list[Panel],
        settings: JobSettings,
        class_names: tuple[str, ...],
        clip_maxima: list[float] | None = None,
    ) -> None:
        prepare_for_frames()
        self.pictures = PicturePool()
        self.panels = panels
        self.settings = settings
        self.class_names = class_names
        self.smoothers = [TemporalSmoother(settings.smoothing) for _ in panels]
        scope = Scope.parse(settings.scope)
        self.normalizers = [
            Normalizer(
                scope,
                maximum=None if clip_maxima is None else clip_maxima[i],
                decay=settings.decay,
            )
            for i in range(len(panels))
        ]

    def smoothed(self, maps: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [
            smoother(maps[panel.layer][panel.method_index])
            for panel, smoother in zip(self.panels, self.smoothers, strict=True)
        ]

    def _heats(self, maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        heats = {
            panel.title: normalizer(raw)
            for panel, normalizer, raw in zip(
                self.panels, self.normalizers, self.smoothed(maps), strict=True
            )
        }
        composition = self.settings.composition
        if composition.layout is not Layout.GRID and not composition.show_titles:
            heats = {"": next(iter(heats.values()))}
        return heats

    def render(
        self, image: np.ndarray, maps: dict[str, np.ndarray], class_index: int, probability: float
    ) -> np.ndarray:
        """The output frame: maps of this frame over the full-resolution image, labelled."""
        label = format_label(self.class_names[class_index], probability)
        return compose_frame(image, self._heats(maps), self.settings.composition, label)

    def render_picture(
        self,
        picture: AnyPicture,
        maps: dict[str, np.ndarray],
        class_index: int,
        probability: float,
    ) -> np.ndarray:
        """`render` for the overlay layout on a yuv420p picture (see `render.compose_yuv`):
        the output frame, a picture of the renderer's pool (`picture` is only read)."""
        ((title, heat),) = self._heats(maps).items()
        composition = self.settings.composition
        out = overlay_yuv(
            picture,
            heat,
            composition.colormap,
            composition.alpha,
            interpolation=composition.interpolation,
            out=self.pictures.take(*picture_size(picture)),
        )
        if composition.show_titles and title:
            draw_label_yuv(out, title, "top-left")
        if composition.show_label:
            label = format_label(self.class_names[class_index], probability)
            draw_label_yuv(out, label, "bottom-left")
        return out

    def compose(self, frame: Frame, maps: dict[str, np.ndarray], *explained: Any) -> Frame:
        """The output frame of `frame` (RGB or yuv420p, as decoded), with its timing."""
        if frame.pixel_format == "yuv420p":
            return replace(frame, image=self.render_picture(frame.image, maps, *explained))
        return replace(frame, image=self.render(frame.image, maps, *explained))

    def write(
        self, sink: VideoWriter, frame: Frame, maps: dict[str, np.ndarray], *explained: Any
    ) -> None:
        """Compose one frame and hand it to the encoder."""
        encode(sink, self.compose(frame, maps, *explained))


def encode(sink: VideoWriter, composed: Frame) -> None:
    """Hand a composed frame (see `MapRenderer.compose`) to the encoder."""
    if composed.pixel_format == "yuv420p":
        sink.write_picture(composed.image, composed.pts, duration=composed.duration)
    else:
        sink.write(composed.image, composed.pts, duration=composed.duration)


def clip_maxima(store: MapStore, panels: list[Panel], smoothing: float) -> list[float]:
    """Per panel, the maximum of its smoothed maps over the whole clip."""
    maxima = []
    for panel in panels:
        smoother = TemporalSmoother(smoothing)
        peak = 0.0
        for raw in store.read(panel.layer)[:, panel.method_index]:
            peak = max(peak, float(smoother(raw).max()))
        maxima.append(peak)
    return maxima
