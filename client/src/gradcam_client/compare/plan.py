"""What a comparison of two models compares, checked before any frame is sent.

Each side (A, B) shows one map: a layer and a method of its own model (by default its first
ones; `JobSettings.layers` and `.methods` give one name for both sides or two, A's then
B's). Both explain the predicted class of each frame, or the same class given by name (or
by index when both models have the same class list). Top-1 agreement compares class NAMES
among those both models know, so models with other class lists (or other input sizes) are
compared on what they share; with no name in common only the maps are compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gradcam_client.errors import InputError
from gradcam_client.jobs.settings import JobSettings, Panel, select_panels
from gradcam_client.jobs.targets import PREDICTED, VIDEO, find_class
from gradcam_client.remote.contract import PREDICTED_CLASS, ModelInfo


@dataclass(frozen=True)
class Side:
    """One model of a comparison: how it is addressed, what it serves, what it shows."""

    label: str  # NAME or NAME:VERSION, as the user gave it
    info: ModelInfo
    panel: Panel
    target: int  # TARGET_CLASS of its requests


@dataclass(frozen=True)
class ComparePlan:
    """Both sides, and the class names they share."""

    a: Side
    b: Side
    shared_a: np.ndarray  # [A's classes] bool: the name is one of B's too
    shared_b: np.ndarray  # [B's classes] bool
    notes: tuple[str, ...] = ()

    @property
    def shared_classes(self) -> int:
        """How many of A's class names B knows too."""
        return len({n for n, s in zip(self.a.info.class_names, self.shared_a, strict=True) if s})

    def top1_agree(self, probabilities_a: np.ndarray, probabilities_b: np.ndarray) -> bool | None:
        """Whether both models' most probable shared class is the same name (None: they share
        no class name). A model whose answer holds no shared class disagrees."""
        if not self.shared_a.any():
            return None
        names = []
        for side, mask, probabilities in (
            (self.a, self.shared_a, probabilities_a),
            (self.b, self.shared_b, probabilities_b),
        ):
            masked = np.where(mask, probabilities, -np.inf)
            best = int(np.argmax(masked))
            if not masked[best] > 0:
                return False
            names.append(side.info.class_names[best])
        return names[0] == names[1]


def _per_side(values: Sequence[str], what: str) -> tuple[str | None, str | None]:
    """One value for both sides, two (A's, B's), or none (each model's first)."""
    if len(values) > 2:
        raise InputError(f"a comparison shows one {what} a side: give one for both, or A's,B's")
    if not values:
        return None, None
    return values[0], values[-1]


def _panel(label: str, info: ModelInfo, layer: str | None, method: str | None) -> Panel:
    if not info.layers:
        raise InputError(
            f"model {label} computes no maps (it was exported with --predictions-only): "
            "there is nothing to compare; export it with maps"
        )
    settings = JobSettings(layers=(layer,) if layer else (), methods=(method,) if method else ())
    try:
        (panel,) = select_panels(info, settings)
    except InputError as error:
        raise InputError(str(error).replace(f"model {info.name!r}", f"model {label}")) from None
    return replace(panel, title=f"{label} {panel.title}")


def _targets(
    text: str | None, a: tuple[str, ModelInfo], b: tuple[str, ModelInfo]
) -> tuple[int, int]:
    """TARGET_CLASS for each side: predicted, or the same class name on both."""
    if text is None or text.strip().lower() in ("", PREDICTED):
        return PREDICTED_CLASS, PREDICTED_CLASS
    if text.strip().lower() == VIDEO:
        raise InputError(
            "--target video is not available in a comparison; use 'predicted' or a class"
        )
    (label_a, info_a), (label_b, info_b) = a, b
    if text.strip().lstrip("-").isdigit() and info_a.class_names != info_b.class_names:
        raise InputError(
            f"class index {text.strip()} may name other classes in {label_a} and {label_b}, "
            "whose class lists differ; give the class by name"
        )
    found: list[int | InputError] = []
    for _, info in (a, b):
        try:
            found.append(find_class(text, info.class_names))
        except InputError as error:
            found.append(error)
    index_a, index_b = found
    if isinstance(index_a, InputError) and isinstance(index_b, InputError):
        raise InputError(f"neither {label_a} nor {label_b} knows the class {text!r} ({index_a})")
    if isinstance(index_a, InputError):
        name = info_b.class_names[index_b]  # type: ignore[index]
        raise InputError(f"{label_b} knows the class {name!r} but {label_a} does not ({index_a})")
    if isinstance(index_b, InputError):
        name = info_a.class_names[index_a]
        raise InputError(f"{label_a} knows the class {name!r} but {label_b} does not ({index_b})")
    name_a, name_b = info_a.class_names[index_a], info_b.class_names[index_b]
    if name_a != name_b:
        raise InputError(
            f"{text!r} is the class {name_a!r} in {label_a} but {name_b!r} in {label_b}; "
            "give the exact name"
        )
    return index_a, index_b


def plan_comparison(
    label_a: str, info_a: ModelInfo, label_b: str, info_b: ModelInfo, settings: JobSettings
) -> ComparePlan:
    """Check that the two models can be compared as `settings` asks; InputError saying why
    not (a model without maps, a layer, method or class one of them lacks)."""
    layer_a, layer_b = _per_side(settings.layers, "layer")
    method_a, method_b = _per_side(settings.methods, "method")
    panel_a = _panel(label_a, info_a, layer_a, method_a)
    panel_b = _panel(label_b, info_b, layer_b, method_b)
    target_a, target_b = _targets(settings.target, (label_a, info_a), (label_b, info_b))
    names_b, names_a = set(info_b.class_names), set(info_a.class_names)
    shared_a = np.array([n in names_b for n in info_a.class_names], bool)
    shared_b = np.array([n in names_a for n in info_b.class_names], bool)
    notes = []
    if not shared_a.any():
        notes.append(
            f"{label_a} and {label_b} share no class name: their maps are compared, their "
            "top classes are not"
        )
    elif not (shared_a.all() and shared_b.all()):
        notes.append(
            f"{label_a} and {label_b} share {int(shared_a.sum())} of {len(shared_a)} and "
            f"{len(shared_b)} class names: top-1 agreement is measured on those"
        )
    return ComparePlan(
        a=Side(label_a, info_a, panel_a, target_a),
        b=Side(label_b, info_b, panel_b, target_b),
        shared_a=shared_a,
        shared_b=shared_b,
        notes=tuple(notes),
    )
