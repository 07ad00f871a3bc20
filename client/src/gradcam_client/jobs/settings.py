"""What a job is asked to do: `JobSettings` (target, layers and methods, composition,
batching, encoding) and the panels of maps it draws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gradcam_client.errors import (
    InputError,
)
from gradcam_client.media.writer import ENCODERS
from gradcam_client.remote import contract
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.render.compose import CompositionSettings, Layout
from gradcam_client.render.normalize import (
    DEFAULT_DECAY,
    DEFAULT_SMOOTHING,
    Scope,
    TemporalSmoother,
)

Progress = Callable[[int, int | None], None]
"""Called with (frames done, total frames if known) as the job advances."""

ENCODER_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)


@dataclass(frozen=True)
class JobSettings:
    """Everything about a job except its files and its server."""

    target: str | None = None  # None/"predicted", "video", a class index or a class name
    layers: tuple[str, ...] = ()  # default: the model's first layer (all of them in a grid)
    methods: tuple[str, ...] = ()  # default: the model's first method
    scope: str = "running"
    smoothing: float = DEFAULT_SMOOTHING
    decay: float = DEFAULT_DECAY
    composition: CompositionSettings = field(default_factory=CompositionSettings)
    batch_size: int = 8
    max_in_flight: int = 4
    on_corrupt: str = "skip"
    top_k: int = 5
    # libx264: superfast at CRF 21 looks as good as veryfast at CRF 20 (luma PSNR and SSIM on
    # heat-map frames) for 0.54-0.58 of its CPU and 1.35-1.4 times the bytes
    # (bench/encoder_cost.py)
    encoder_preset: str = "superfast"
    crf: int = 21
    yuv: bool = True  # compose on the decoded yuv420p pictures when the input and layout allow
    encoder: str = "auto"  # H.264 encoder (ENCODERS): "auto" is NVENC when it opens, else libx264
    encoder_threads: int = 0  # 0: the encoder's own choice

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_in_flight < 1:
            raise InputError("batch size and requests in flight must be at least 1")
        if self.encoder_preset not in ENCODER_PRESETS:
            raise InputError(
                f"unknown encoder preset {self.encoder_preset!r}; choose from "
                f"{', '.join(ENCODER_PRESETS)}"
            )
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be between 0 and 51; got {self.crf}")
        if self.encoder not in ENCODERS:
            raise InputError(f"unknown encoder {self.encoder!r}; choose from {', '.join(ENCODERS)}")
        Scope.parse(self.scope)
        TemporalSmoother(self.smoothing)


@dataclass(frozen=True)
class Panel:
    """One map shown in the output: a layer, one of its methods, and its title."""

    layer: str
    method_index: int
    title: str


def select_panels(info: ModelInfo, settings: JobSettings) -> list[Panel]:
    """The maps to show, checked against what the model offers."""
    grid = settings.composition.layout is Layout.GRID
    layers = list(settings.layers) or (info.layer_names if grid else info.layer_names[:1])
    methods = list(settings.methods) or list(info.methods[:1])
    for layer in layers:
        if layer not in info.layer_names:
            raise InputError(
                f"model {info.name!r} explains no layer {layer!r}; it has: "
                f"{', '.join(info.layer_names)}"
            )
    for method in methods:
        if method not in info.methods:
            raise InputError(
                f"model {info.name!r} computes no method {method!r}; it has: "
                f"{', '.join(info.methods)}"
            )
    panels = []
    for layer in layers:
        for method in methods:
            name = contract.METHODS.get(method, method)
            title = (
                f"{layer} {name}"
                if len(layers) > 1 and len(methods) > 1
                else (layer if len(layers) > 1 else name)
            )
            panels.append(Panel(layer, info.methods.index(method), title))
    if not grid and len(panels) > 1:
        raise InputError(
            "the overlay and side-by-side layouts show one map; use the grid "
            "layout for several layers or methods"
        )
    return panels


def composes_in_yuv(settings: JobSettings, yuv_ready: bool) -> bool:
    """Whether frames can be composed on their yuv420p pictures (see `render.compose_yuv`): the
    input allows it (`yuv_ready`) and the layout is a plain overlay at the input's size."""
    composition = settings.composition
    return (
        settings.yuv
        and yuv_ready
        and composition.layout is Layout.OVERLAY
        and not composition.heat_weighted
        and composition.max_width is None
    )
