"""Models for the comparison tests: two versions of one tiny CNN served side by side, a model
without maps and one whose class names are all others."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from served_models import make_tiny_classifier

VERSIONED = "tiny-versions"
"""Versions 1 and 2: the same classes, other weights."""

NO_MAPS = "tiny-nomaps"
"""The same classes, exported for predictions only."""

OTHER_CLASSES = "tiny-other"
"""Maps and five classes, none of whose names the others know."""


def _export(repository: Path, name: str, seed: int, **options) -> Path:
    from gradcam_server import model_sources
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    keras_file = repository.parent / f"{name}-{seed}.keras"
    make_tiny_classifier(seed=seed).save(keras_file)
    class_names = options.pop("class_names", None)
    source = model_sources.keras_file(keras_file, "caffe")
    if class_names is not None:
        source = dataclasses.replace(source, class_names=class_names)
    return export(
        source,
        repository,
        name=name,
        options=ServingOptions(max_batch_size=16, max_queue_delay_us=20000),
        **options,
    )


def export_compare_models(repository: Path) -> Path:
    """Export the comparison's models into `repository` (see the module's docstring)."""
    repository.mkdir(parents=True, exist_ok=True)
    model = _export(repository, VERSIONED, seed=0, layers=["conv2"])
    staging = repository.parent / "staging"
    second = _export(staging, VERSIONED, seed=1, layers=["conv2"])
    shutil.move(second / "1", model / "2")
    shutil.rmtree(staging)
    config = model / "config.pbtxt"
    config.write_text(config.read_text() + "version_policy: { all: {} }\n")
    _export(repository, NO_MAPS, seed=0, layers=[])
    _export(
        repository,
        OTHER_CLASSES,
        seed=2,
        layers=["conv2"],
        class_names=[f"shape {i}" for i in range(5)],
    )
    return repository
