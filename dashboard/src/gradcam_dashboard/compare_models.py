"""The compare mode's choices: the model versions a server serves, what the user picked, and
whether the two picks can be compared, said before any frame is sent."""

from __future__ import annotations

from dataclasses import dataclass

from gradcam_client.compare.plan import ComparePlan, plan_comparison
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.model_ref import ModelRef
from gradcam_client.render.compose import CompositionSettings, Layout
from gradcam_dashboard import jobs
from gradcam_dashboard.servers import ServerStatus

SCOPES = {key: label for key, label in jobs.SCOPES.items() if key != "clip"}
"""A comparison normalises each side as it goes (a whole-clip pass is not offered)."""


def version_refs(status: ServerStatus) -> list[str]:
    """NAME:VERSION of every loaded version of the Grad-CAM models (maps or not), by name then
    version (NAME alone for a model the server lists without versions)."""
    refs = []
    for model in sorted(status.models, key=lambda m: m.name):
        if model.info is not None:
            versions = model.versions or (None,)
            refs += [str(ModelRef(model.name, version)) for version in versions]
    return refs


def default_pair(refs: list[str], status: ServerStatus) -> tuple[int, int]:
    """Indices in `refs` of the picker's first choices: a model's two newest loaded versions
    (the older as A), else the first two models with maps."""
    with_maps = {m.name for m in status.models if m.info is not None and m.info.layers}
    usable = [i for i, ref in enumerate(refs) if ModelRef.parse(ref).name in with_maps]
    by_name: dict[str, list[int]] = {}
    for i in usable:
        by_name.setdefault(ModelRef.parse(refs[i]).name, []).append(i)
    for same in reversed(by_name.values()):
        if len(same) >= 2:
            return same[-2], same[-1]
    picks = [*usable, 0, 1][:2]
    return picks[0], picks[1]


@dataclass(frozen=True)
class CompareRequest:
    """Everything the user chose for one comparison."""

    a: str  # NAME or NAME:VERSION
    b: str
    target: str = "predicted"  # "predicted" or a class name both models know
    colormap: str = jobs.DEFAULTS.composition.colormap
    alpha: float = jobs.DEFAULTS.composition.alpha
    scope: str = jobs.DEFAULTS.scope
    smoothing: float = jobs.DEFAULTS.smoothing

    def job_settings(self) -> JobSettings:
        """The client's settings (each side shows its model's first layer and method)."""
        composition = CompositionSettings(
            colormap=self.colormap, alpha=float(self.alpha), layout=Layout.OVERLAY
        )
        return JobSettings(
            target=self.target,
            scope=self.scope,
            smoothing=float(self.smoothing),
            composition=composition,
        )


def plan(request: CompareRequest, info_a: ModelInfo, info_b: ModelInfo) -> ComparePlan:
    """The comparison the request asks for; `InputError` saying why it cannot be made."""
    return plan_comparison(request.a, info_a, request.b, info_b, request.job_settings())


def shared_class_names(info_a: ModelInfo, info_b: ModelInfo) -> list[str]:
    """The class names both models know, in A's order."""
    names_b = set(info_b.class_names)
    return [name for name in dict.fromkeys(info_a.class_names) if name in names_b]
