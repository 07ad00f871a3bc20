"""Models served in several versions, for the comparison tests, built the way a user adds a
version (`export(..., version="next")`, `gradcam-server export --version next`), with a version
policy naming the versions Triton loads.

`export_compare_models` makes the dashboard's set: two versions of one tiny CNN served side by
side, a model without maps and one whose class names are all others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from served_models import make_tiny_classifier

VERSIONED = "tiny-versions"
"""Versions 1 and 2: the same classes, other weights."""

NO_MAPS = "tiny-nomaps"
"""The same classes, exported for predictions only."""

OTHER_CLASSES = "tiny-other"
"""Maps and five classes, none of whose names the others know."""


def tiny_source(
    folder: Path,
    seed: int,
    *,
    size: int = 32,
    classes: int = 5,
    class_names: Sequence[str] | None = None,
) -> Any:
    """A tiny CNN (`make_tiny_classifier`) saved in `folder`, as the exporter's source model;
    other weights for each `seed`, the exporter's class names unless `class_names`."""
    from gradcam_server import model_sources

    path = folder / f"tiny-{seed}-{size}-{classes}.keras"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        make_tiny_classifier(size=size, classes=classes, seed=seed).save(path)
    source = model_sources.keras_file(path, "caffe")
    if class_names is not None:
        source = dataclasses.replace(source, class_names=list(class_names))
    return source


def export_versions(
    repository: Path,
    name: str,
    sources: Sequence[Any],
    *,
    policy: str = "all",
    layers: Sequence[str] = ("conv2",),
    max_batch_size: int = 8,
    max_queue_delay_us: int = 5000,
) -> Path:
    """Export each of `sources` as the next version of model `name` (1, 2, ...), Triton
    loading the versions `policy` names ("all", "latest:K", "specific:1,3"); the model's
    folder."""
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions, VersionPolicy

    options = ServingOptions(
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        version_policy=VersionPolicy.parse(policy),
    )
    folder = repository / name
    for source in sources:
        folder = export(
            source, repository, name=name, layers=list(layers), options=options, version="next"
        )
    return folder


def export_compare_models(repository: Path) -> Path:
    """Export the dashboard's comparison models into `repository` (see the module's
    docstring)."""
    keras = repository.parent / "keras"
    repository.mkdir(parents=True, exist_ok=True)
    batching = {"max_batch_size": 16, "max_queue_delay_us": 20000}
    export_versions(
        repository, VERSIONED, [tiny_source(keras, 0), tiny_source(keras, 1)], **batching
    )
    export_versions(repository, NO_MAPS, [tiny_source(keras, 0)], layers=(), **batching)
    names = [f"shape {i}" for i in range(5)]
    export_versions(
        repository, OTHER_CLASSES, [tiny_source(keras, 2, class_names=names)], **batching
    )
    return repository
