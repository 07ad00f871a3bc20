"""Which exports this version of the server can serve: a format number in each version folder.

The committed `model_repository/<model>/config.pbtxt` follows the code, while the exported
SavedModel beside it is the user's own file: after an upgrade the config may declare outputs
(or inputs) an older SavedModel lacks. The exporter writes `EXPORT_FORMAT` into every version
folder it makes; first starts and `make export` export a built-in model again when its folder
holds no version of the current format. Raise `EXPORT_FORMAT` whenever what an exported model
takes or returns changes.
"""

from __future__ import annotations

from pathlib import Path

EXPORT_FORMAT = 3
"""3: encoded frames and top-k outputs (earlier exports carry no format file)."""

FORMAT_FILE = "export-format"


def write_format(version_dir: Path) -> None:
    """Mark a version folder as written by this exporter."""
    (version_dir / FORMAT_FILE).write_text(f"{EXPORT_FORMAT}\n")


def export_format(version_dir: Path) -> int | None:
    """The format a version folder was exported in (None: before formats were written)."""
    try:
        return int((version_dir / FORMAT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def version_folders(model_dir: Path) -> list[Path]:
    """A model folder's numbered version folders."""
    if not model_dir.is_dir():
        return []
    return [child for child in model_dir.iterdir() if child.is_dir() and child.name.isdigit()]


def has_current_version(model_dir: Path) -> bool:
    """Whether a model folder holds a version folder of the current export format."""
    return any(export_format(v) == EXPORT_FORMAT for v in version_folders(model_dir))
