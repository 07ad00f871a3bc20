"""One private working folder per browser session, removed when done or abandoned.

Every session gets ``<root>/session-XXXXXXXX`` (made by `tempfile.mkdtemp`, mode 0700) holding
its upload and its results, so two sessions never see each other's files. The folder's
``.last-used`` marker is touched while the session is active; folders idle for longer than the
maximum age are removed by whichever session starts next or uploads a file. Sample clips,
which all sessions share read-only, live in ``<root>/samples`` and are never removed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import unicodedata
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PREFIX = "session-"
MARKER = ".last-used"
SAMPLES = "samples"


class SessionFolders:
    """The session folders under one root."""

    def __init__(self, root: str | os.PathLike[str], max_age_hours: float = 6.0) -> None:
        self.root = Path(root)
        self.max_age_s = max_age_hours * 3600.0

    def create(self) -> Path:
        """A new, empty, private session folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.root))
        self.touch(folder)
        return folder

    def touch(self, folder: Path) -> None:
        """Mark the session as active now."""
        (folder / MARKER).touch()

    def last_used(self, folder: Path) -> float:
        """When the session was last active (its marker's, else the folder's, mtime)."""
        for path in (folder / MARKER, folder):
            try:
                return path.stat().st_mtime
            except FileNotFoundError:
                continue
        return 0.0

    def sessions(self) -> list[Path]:
        """The session folders that exist now."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name.startswith(PREFIX) and p.is_dir())

    def remove_stale(self, now: float | None = None, keep: Path | None = None) -> list[Path]:
        """Remove the folders idle for longer than the maximum age; returns them."""
        now = time.time() if now is None else now
        removed = []
        for folder in self.sessions():
            if keep is not None and folder == keep:
                continue
            if now - self.last_used(folder) > self.max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed

    def remove(self, folder: Path) -> None:
        """Remove one session folder (only one of ours)."""
        if folder.parent == self.root and folder.name.startswith(PREFIX):
            shutil.rmtree(folder, ignore_errors=True)

    def samples_dir(self) -> Path:
        """The shared folder of sample clips."""
        path = self.root / SAMPLES
        path.mkdir(parents=True, exist_ok=True)
        return path


class FolderJanitor:
    """Removes a folder when this object is garbage collected (or `remove` is called).

    Kept in a browser session's state, it removes the session's folder when Streamlit
    disposes of the session (tab closed or reloaded); the stale sweep catches the rest.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(folder), True)

    def remove(self) -> None:
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive


def clear(folder: Path) -> None:
    """Empty a session folder, keeping only its marker."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def when_session_ends(state: Mapping[str, Any], stop: Callable[..., object], *args: object) -> None:
    """Call `stop(*args)` once the browser session whose state this is ends (tab closed):
    when Streamlit disposes of its `FolderJanitor`."""
    janitor = state.get("janitor")
    if janitor is not None:
        weakref.finalize(janitor, stop, *args)


def new_subfolder(folder: Path, prefix: str) -> Path:
    """A fresh, uniquely named folder inside a session folder (e.g. one per run)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=folder))


def safe_filename(name: str, default: str = "upload") -> str:
    """A file name without folders or odd characters, its suffix lower-cased.

    ``"../My Holiday (1).MP4"`` becomes ``"My_Holiday_1.mp4"``.
    """
    base = Path(name.replace("\\", "/")).name
    folded = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    stem, dot, suffix = folded.rpartition(".")
    if not dot:
        stem, suffix = folded, ""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_.")[:80] or default
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:10].lower()
    return f"{stem}.{suffix}" if suffix else stem
