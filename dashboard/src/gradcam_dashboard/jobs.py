"""A dashboard run: the user's choices, the client's `process_media`, and what it produced."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.server import GradcamServer
from gradcam_client.render.compose import CompositionSettings, Layout

LAYOUTS: dict[str, str] = {
    "overlay": "Overlay",
    "side_by_side": "Side by side (original | overlay)",
    "grid_layers": "Grid: one panel per layer",
    "grid_methods": "Grid: one panel per method",
}
"""Layout choices of the page and their labels."""

SCOPES: dict[str, str] = {
    "running": "Running maximum (steady, adapts)",
    "clip": "Whole clip (steadiest, two passes)",
    "frame": "Each frame (full contrast, flickers)",
}
"""Normalisation scopes offered, and their labels."""

TARGETS: dict[str, str] = {
    "predicted": "Predicted class of each frame",
    "video": "One class for the whole video",
    "class": "A class I choose",
}
"""Target modes and their labels."""

DEFAULTS = JobSettings()
"""The client's defaults (chosen from its quality benchmark); the page starts from them."""

MAX_OUTPUT_WIDTH = 1920
"""Composed frames are scaled down (never up) to at most this width."""


@dataclass(frozen=True)
class RunRequest:
    """Everything the user chose for one run."""

    model: str
    layout: str = "overlay"  # a key of LAYOUTS
    layers: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    target: str = "predicted"  # a key of TARGETS
    class_index: int | None = None  # for target "class"
    colormap: str = DEFAULTS.composition.colormap
    alpha: float = DEFAULTS.composition.alpha
    scope: str = DEFAULTS.scope
    smoothing: float = DEFAULTS.smoothing
    include_original: bool = False

    def target_value(self) -> str:
        """The `JobSettings.target` text: "predicted", "video" or a class index."""
        if self.target == "class":
            if self.class_index is None:
                raise ValueError("choose a class to explain")
            return str(self.class_index)
        return self.target

    def job_settings(self) -> JobSettings:
        """The client's settings for this request."""
        grid = self.layout.startswith("grid")
        composition = CompositionSettings(
            colormap=self.colormap,
            alpha=float(self.alpha),
            layout=Layout.GRID if grid else Layout.parse(self.layout),
            # The player's controls cover the bottom when paused: the label goes top-right,
            # and one-map layouts leave out the map's title (top-left; the page names it).
            label_corner="top-right",
            show_titles=grid,
            include_original=self.include_original and grid,
            max_width=MAX_OUTPUT_WIDTH,
        )
        return JobSettings(
            target=self.target_value(),
            layers=self.layers,
            methods=self.methods,
            scope=self.scope,
            smoothing=float(self.smoothing),
            composition=composition,
        )


def layouts_for(info: ModelInfo) -> list[str]:
    """The layouts that make sense for a model: a grid needs several layers or methods."""
    offered = ["overlay", "side_by_side"]
    if len(info.layers) > 1:
        offered.append("grid_layers")
    if len(info.methods) > 1:
        offered.append("grid_methods")
    return offered


def panels(request: RunRequest, info: ModelInfo) -> list[tuple[str, int]]:
    """(layer, method index) of every map the run shows, in the client's panel order."""
    layers = list(request.layers) or info.layer_names[:1]
    methods = list(request.methods) or list(info.methods[:1])
    return [(layer, info.methods.index(method)) for layer in layers for method in methods]


@dataclass
class RunOutput:
    """The files and figures of a finished run."""

    request: RunRequest
    source: Path
    folder: Path
    output: Path
    predictions: Path
    maps: Path
    is_image: bool
    frames: int
    seconds: float
    target: str
    skipped: str = ""
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def progress_text(done: int, total: int | None, seconds: float, what: str = "Frame") -> str:
    """``"Frame 24 of 60 · 11.8 frames/s · about 3 s left"`` after `seconds` of this pass."""
    rate = done / seconds if seconds > 0 else 0.0
    parts = [f"{what} {done} of {total}" if total else f"{what} {done}"]
    if rate > 0:
        parts.append(f"{rate:.1f} frames/s")
        if total and total > done:
            parts.append(f"about {(total - done) / rate:.0f} s left")
    return " · ".join(parts)


def progress_fraction(done: int, total: int | None) -> float:
    """Progress in [0, 1] (0 while the total is unknown)."""
    return min(1.0, done / total) if total else 0.0


def output_name(is_image: bool, source: Path) -> str:
    """The result's file name: an MP4 for a video, the input's image type for an image."""
    if not is_image:
        return "result.mp4"
    suffix = source.suffix.lower()
    return f"result{suffix if suffix in ('.png', '.jpg', '.jpeg', '.webp') else '.png'}"


def run(
    server: GradcamServer,
    request: RunRequest,
    source: Path,
    folder: Path,
    is_image: bool,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    first_pass_progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    keep_partial: bool = False,
) -> RunOutput:
    """Process `source` into `folder` (result, predictions.jsonl, maps.npz); see
    `process_media` for the progress callbacks, `cancel` and `keep_partial`."""
    output = folder / output_name(is_image, source)
    predictions = folder / "predictions.jsonl"
    maps = folder / "maps.npz"
    result = process_media(
        server,
        source,
        output,
        request.job_settings(),
        predictions=predictions,
        maps=maps,
        progress=progress,
        first_pass_progress=first_pass_progress,
        cancel=cancel,
        keep_partial=keep_partial,
    )
    return RunOutput(
        request=request,
        source=source,
        folder=folder,
        output=result.output,
        predictions=result.predictions or predictions,
        maps=result.maps or maps,
        is_image=is_image,
        frames=result.frames,
        seconds=result.seconds,
        target=result.target,
        skipped=result.skipped,
    )
