"""Write a ready Triton model: config.pbtxt plus a version folder with the SavedModel."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from gradcam_client.contract import LayerInfo, ModelInfo
from gradcam_server.explainer import GradCamModule
from gradcam_server.export_format import write_format
from gradcam_server.model_sources import SourceModel
from gradcam_server.triton_config import ServingOptions, build_config, config_text
from gradcam_server.triton_model import SAVEDMODEL_DIR

VERSION = "1"

MODEL_PY = '''"""Triton python-backend entry point of a Grad-CAM model."""

from gradcam_server.triton_model import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


class ExportError(Exception):
    """The model cannot be exported as asked."""


def build_module(
    source: SourceModel, layers: list[str] | None, methods: list[str]
) -> GradCamModule:
    """The serving graph for a source model, layer presets expanded."""
    try:
        return GradCamModule(
            source.model, source.preprocess, source.resolve_layers(layers), methods
        )
    except ValueError as error:
        raise ExportError(str(error)) from error


def model_info(name: str, source: SourceModel, module: GradCamModule, max_batch: int) -> ModelInfo:
    """The metadata clients read from the server."""
    if len(source.class_names) != module.num_classes:
        raise ExportError(
            f"{len(source.class_names)} class names for a model with {module.num_classes} classes"
        )
    return ModelInfo(
        name=name,
        input_height=module.input_size[0],
        input_width=module.input_size[1],
        class_names=tuple(source.class_names),
        layers=tuple(LayerInfo(n, *module.layer_shapes[n]) for n in module.layers),
        methods=module.methods,
        max_batch_size=max_batch,
        description=source.description,
        top_k=module.top_k,
        encoded_frames=True,
    )


def export(
    source: SourceModel,
    repository: str | Path,
    *,
    name: str | None = None,
    layers: list[str] | None = None,
    methods: list[str] | tuple[str, ...] = ("gradcam",),
    options: ServingOptions | None = None,
    overwrite: bool = False,
) -> Path:
    """Export `source` as Triton model `name` into `repository`; returns the model folder.

    The model is written under a temporary name and renamed when complete, so a server
    watching the repository never sees half a model.
    """
    options = options or ServingOptions()
    name = name or source.name
    repository = Path(repository)
    target = repository / name
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists already; pass --overwrite to replace it")

    module = build_module(source, layers, list(methods))
    info = model_info(name, source, module, options.max_batch_size)
    created = not repository.exists()
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
    staging.chmod(0o755)  # mkdtemp makes it 0700: a server running as another user must read it
    try:
        version = staging / VERSION
        version.mkdir()
        module.save(str(version / SAVEDMODEL_DIR))
        (version / "model.py").write_text(MODEL_PY)
        write_format(version)
        (staging / "config.pbtxt").write_text(config_text(build_config(info, options)))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:  # leave no empty repository behind either
            with contextlib.suppress(OSError):
                repository.rmdir()
        raise
    return target
