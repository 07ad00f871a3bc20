"""The compare mode's choices: the model versions a server serves, what the user picked, and
whether the two picks can be compared, said before any frame is sent."""

from __future__ import annotations

from dataclasses import dataclass

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gradcam_client.compare_plan import ComparePlan, plan_comparison
from gradcam_client.compose import CompositionSettings, Layout
from gradcam_client.contract import ModelInfo
from gradcam_client.errors import GradcamError
from gradcam_client.model_ref import ModelRef
from gradcam_client.pipeline import JobSettings
from gradcam_client.triton import Connection
from gradcam_dashboard import jobs
from gradcam_dashboard.servers import ServerStatus, split_urls

INDEX_TIMEOUT_S = 2.0

SCOPES = {key: label for key, label in jobs.SCOPES.items() if key != "clip"}
"""A comparison normalises each side as it goes (a whole-clip pass is not offered)."""


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model in the server's repository, and its state there."""

    name: str
    version: int | None  # None: the repository names the model without a version
    state: str = "READY"
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    @property
    def ref(self) -> str:
        """NAME:VERSION (NAME alone for a model listed without versions)."""
        return str(ModelRef(self.name, self.version))


def list_versions(url: str, connection: Connection | None = None) -> list[ModelVersion]:
    """Every model version the (first) server's repository lists, by name then version.

    `GradcamServer.list_models` gives names only, so the index is read here. Raises
    `GradcamError` when the server does not answer.
    """
    c = connection or Connection()
    client = grpcclient.InferenceServerClient(
        split_urls(url)[0],
        ssl=c.ssl,
        root_certificates=c.root_certificates,
        private_key=c.private_key,
        certificate_chain=c.certificate_chain,
    )
    try:
        index = client.get_model_repository_index(as_json=True, client_timeout=INDEX_TIMEOUT_S)
    except InferenceServerException as error:
        raise GradcamError(f"cannot list the server's models ({error.message()})") from None
    finally:
        client.close()
    found = []
    for entry in index.get("models", []):
        version = str(entry.get("version", ""))
        found.append(
            ModelVersion(
                entry["name"],
                int(version) if version.isdigit() else None,
                entry.get("state", "READY") or "UNLOADED",
                entry.get("reason", "").strip().splitlines()[0] if entry.get("reason") else "",
            )
        )
    return sorted(found, key=lambda v: (v.name, v.version or 0))


def version_label(version: ModelVersion) -> str:
    """A picker's line: ``tiny:2``, or ``tiny:3 (not loaded: ...)``."""
    if version.ready:
        return version.ref
    why = f": {version.reason}" if version.reason else ""
    return f"{version.ref} (not loaded, {version.state.lower()}{why})"


def grad_cam_versions(versions: list[ModelVersion], status: ServerStatus) -> list[ModelVersion]:
    """The versions of the models that answer with Grad-CAM metadata (maps or not)."""
    grad_cam = {model.name for model in status.models if model.info is not None}
    return [v for v in versions if v.name in grad_cam]


def default_pair(versions: list[ModelVersion], status: ServerStatus) -> tuple[int, int]:
    """Indices of the picker's first choices: a model's two newest loaded versions (the older
    as A), else the first two loaded models with maps."""
    with_maps = {m.name for m in status.models if m.info is not None and m.info.layers}
    usable = [i for i, v in enumerate(versions) if v.ready and v.name in with_maps]
    for name in dict.fromkeys(versions[i].name for i in reversed(usable)):
        same = [i for i in usable if versions[i].name == name]
        if len(same) >= 2:
            return same[-2], same[-1]
    picks = [*usable, 0, 1][:2]
    return picks[0], picks[1]


def check_loaded(ref: str, versions: list[ModelVersion]) -> ModelRef:
    """The parsed `ref`, or `GradcamError` saying it is not a loaded version on this server."""
    parsed = ModelRef.parse(ref)
    same_name = [v for v in versions if v.name == parsed.name]
    loaded = [v for v in same_name if v.ready]
    if not same_name:
        names = ", ".join(sorted({v.name for v in versions})) or "none"
        raise GradcamError(f"the server has no model {parsed.name!r}; it serves: {names}")
    if not loaded:
        raise GradcamError(f"no version of {parsed.name} is loaded on the server")
    if parsed.version is None:
        return parsed
    if not any(v.version == parsed.version for v in loaded):
        listed = ", ".join(str(v.version) for v in loaded if v.version is not None)
        raise GradcamError(
            f"version {parsed.version} of {parsed.name} is not loaded on the server "
            f"(loaded: {listed or 'none'})"
        )
    return parsed


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
