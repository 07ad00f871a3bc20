"""Write a ready Triton model: config.pbtxt plus version folders (1/, 2/, ...) with SavedModels."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from google.protobuf import text_format

from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_server.explainer import GradCamModule
from gradcam_server.export_format import version_folders, write_format
from gradcam_server.model_sources import SourceModel
from gradcam_server.triton_config import (
    ServingOptions,
    VersionPolicy,
    build_config,
    config_text,
    model_info_from_config,
    parse_config_text,
)
from gradcam_server.triton_model import SAVEDMODEL_DIR

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


def _contract_differences(old: ModelInfo, new: ModelInfo) -> list[str]:
    """How a new version would change what the model takes and returns (its shared config)."""
    fields = {
        "input size": lambda i: f"{i.input_height}x{i.input_width}",
        "classes": lambda i: f"{i.num_classes} named {', '.join(i.class_names[:3])}, ...",
        "layers": lambda i: (
            ", ".join(f"{la.name} {la.height}x{la.width}" for la in i.layers) or "none (no maps)"
        ),
        "methods": lambda i: ", ".join(i.methods),
        "top-k outputs": lambda i: str(i.top_k),
    }
    differences = [
        f"{what} {show(new)} instead of {show(old)}"
        for what, show in fields.items()
        if show(old) != show(new) or (what == "classes" and old.class_names != new.class_names)
    ]
    return differences


def _existing(target: Path) -> tuple[ModelInfo, VersionPolicy, list[int]]:
    """What a model folder already serves: its metadata, version policy and versions."""
    try:
        config = parse_config_text((target / "config.pbtxt").read_text())
        info = model_info_from_config(config)
    except (OSError, ValueError, text_format.ParseError) as error:
        raise ExportError(
            f"{target} holds no Grad-CAM model config this exporter can add a version to "
            f"({' '.join(str(error).split())}); pass --overwrite to replace it"
        ) from None
    versions = sorted(int(v.name) for v in version_folders(target))
    return info, VersionPolicy.from_config(config), versions


def _choose_version(
    name: str, version: int | str | None, existing: list[int] | None, overwrite: bool
) -> int:
    """The version folder to write (see `export`)."""
    if version is None:
        if existing is not None and not overwrite:
            raise ExportError(
                f"model {name!r} exists already; pass --overwrite to replace it, or "
                "--version next to add a version"
            )
        return 1
    if version == "next":
        return max(existing or [0]) + 1
    number = int(version)
    if number < 1:
        raise ExportError(f"a model version is a whole number from 1; got {version}")
    if existing and number in existing and not overwrite:
        raise ExportError(
            f"version {number} of model {name!r} exists already; pass --overwrite to replace "
            f"it, or --version next (version {max(existing) + 1})"
        )
    return number


def export(
    source: SourceModel,
    repository: str | Path,
    *,
    name: str | None = None,
    layers: list[str] | None = None,
    methods: list[str] | tuple[str, ...] = ("gradcam",),
    options: ServingOptions | None = None,
    overwrite: bool = False,
    version: int | str | None = None,
) -> Path:
    """Export `source` as Triton model `name` into `repository`; returns the model folder.

    Without `version` the model is written anew as version 1 (an existing model is replaced
    only with `overwrite`). With `version` (a number, or "next": one above the highest there)
    the version is added to the model, or replaces that version with `overwrite`; the other
    versions stay, and must take and return the same tensors (input size, classes, layers,
    methods), since Triton gives all versions of a model one config. That config is written
    with `options`; a version policy of None there (see `VersionPolicy`) keeps the existing
    config's.

    The model (or version) is written under a temporary name and renamed when complete, so a
    server watching the repository never sees half a model.
    """
    name = name or source.name
    repository = Path(repository)
    target = repository / name
    existing = _existing(target) if target.exists() and version is not None else None
    options = options or ServingOptions()
    if existing and options.version_policy is None:
        options = replace(options, version_policy=existing[1])
    if target.exists() and version is None and not overwrite:
        raise ExportError(
            f"{target} exists already; pass --overwrite to replace it, or --version next to "
            "add a version"
        )
    number = _choose_version(name, version, existing[2] if existing else None, overwrite)

    module = build_module(source, layers, list(methods))
    info = model_info(name, source, module, options.max_batch_size)
    if existing:
        differences = _contract_differences(existing[0], info)
        if differences:
            raise ExportError(
                f"version {number} of model {name!r} would take or return other tensors than "
                f"its versions {', '.join(map(str, existing[2]))} ({'; '.join(differences)}): "
                "all versions of a model share one config; export it under another --name"
            )
        return _add_version(target, number, module, info, options)
    return _write_model(repository, target, number, module, info, options)


def _write_version(folder: Path, module: GradCamModule) -> None:
    folder.mkdir()
    module.save(str(folder / SAVEDMODEL_DIR))
    (folder / "model.py").write_text(MODEL_PY)
    write_format(folder)


def _write_model(
    repository: Path,
    target: Path,
    number: int,
    module: GradCamModule,
    info: ModelInfo,
    options: ServingOptions,
) -> Path:
    """A new model folder holding version `number`, in place of `target`."""
    name = target.name
    created = not repository.exists()
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
    staging.chmod(0o755)  # mkdtemp makes it 0700: a server running as another user must read it
    try:
        _write_version(staging / str(number), module)
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


def _add_version(
    target: Path, number: int, module: GradCamModule, info: ModelInfo, options: ServingOptions
) -> Path:
    """Version `number` written into an existing model folder, and its config rewritten."""
    staging = Path(tempfile.mkdtemp(prefix=f".{number}.", dir=target))  # not a number: ignored
    staging.chmod(0o755)
    config = staging / "config.pbtxt"
    try:
        _write_version(staging / "version", module)
        config.write_text(config_text(build_config(info, options)))
        folder = target / str(number)
        if folder.exists():
            shutil.rmtree(folder)
        (staging / "version").rename(folder)
        config.replace(target / "config.pbtxt")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
