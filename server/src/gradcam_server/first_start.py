"""Fill a model repository on a server's first start: export the built-in models it lacks.

`gradcam-server serve --export-missing efficientnet-lite0` (what the container runs) exports each
named built-in model whose folder has no version folder of the current export format (see
`export_format`), so a repository that ships only the model's `config.pbtxt` (as this project's
`model_repository/` does), nothing at all, or an export by an older version is filled once, and
later starts reuse what is there. A user's own exported models are served as they are.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gradcam_server.export_format import has_current_version, version_folders

BUILTIN_MODELS = ("efficientnet-lite0", "vgg16")


class FirstStartError(Exception):
    """A model could not be exported; the message says which and why."""


def missing_models(repository: Path, wanted: Sequence[str]) -> list[str]:
    """The models of `wanted` that `repository` does not hold ready to serve."""
    unknown = [name for name in wanted if name not in BUILTIN_MODELS]
    if unknown:
        raise FirstStartError(
            f"cannot export {', '.join(unknown)}: built-in models are {', '.join(BUILTIN_MODELS)}"
        )
    return [name for name in wanted if not has_current_version(repository / name)]


def export_command(model: str, repository: Path, export_args: str = "") -> list[str]:
    """`gradcam-server export` of one built-in model on this Python, completing its folder."""
    return [
        sys.executable,
        "-m",
        "gradcam_server.cli",
        "export",
        "--model",
        model,
        "--repository",
        str(repository),
        "--overwrite",
        *shlex.split(export_args),
    ]


def export_missing(
    repository: Path,
    wanted: Sequence[str],
    export_args: str = "",
    run: Callable[[list[str]], int] = subprocess.call,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Export the models of `wanted` that `repository` lacks; returns the ones exported."""
    repository.mkdir(parents=True, exist_ok=True)
    exported = []
    for model in missing_models(repository, wanted):
        why = "an older export" if version_folders(repository / model) else "first start"
        log(f"exporting {model} into {repository / model} ({why}) ...")
        if run(export_command(model, repository, export_args)) != 0:
            raise FirstStartError(
                f"exporting {model} into {repository} failed (its error is above)"
            )
        exported.append(model)
    return exported
