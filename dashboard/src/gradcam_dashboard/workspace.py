"""This session's folder and its current input: made when the session starts, removed with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from gradcam_dashboard import (
    camera_view,
    compare_mode,
    live_view,
    media,
)
from gradcam_dashboard.config import DashboardConfig
from gradcam_dashboard.preview import Preview
from gradcam_dashboard.runner import FileRun
from gradcam_dashboard.sessions import (
    FolderJanitor,
    SessionFolders,
    clear,
)


@dataclass(frozen=True)
class InputFile:
    """The session's current input: where it is and what it holds, or why it is unusable."""

    key: str
    name: str
    path: Path | None = None
    summary: media.MediaSummary | None = None
    error: str = ""
    thumbnail: np.ndarray | None = None
    preview: Preview | None = None  # a browser-playable copy, for formats browsers cannot play

    @property
    def usable(self) -> bool:
        return self.path is not None and self.summary is not None and not self.error


@st.cache_resource(show_spinner=False)
def session_folders(root: str, max_age_hours: float) -> SessionFolders:
    """The session folders under `root` (one object per server process)."""
    return SessionFolders(root, max_age_hours)


def folders(config: DashboardConfig) -> SessionFolders:
    return session_folders(str(config.root), config.max_age_hours)


def workspace(config: DashboardConfig) -> Path:
    """This session's private folder, made (and stale ones removed) when the session starts."""
    state = st.session_state
    folder = Path(state["workdir"]) if "workdir" in state else None
    if folder is not None and folder.is_dir():
        folders(config).touch(folder)
        return folder
    if folder is not None:  # removed while the session idled
        for key in ("input", "result", "failed"):
            state.pop(key, None)
        st.info("Your earlier files were removed after a long pause; please start again.")
    folders(config).remove_stale()
    folder = folders(config).create()
    state["workdir"] = str(folder)
    state["janitor"] = FolderJanitor(folder)  # removes the folder when the session ends
    return folder


def forget_files(folder: Path) -> None:
    """Stop a run, and remove this session's input and results (files and page state)."""
    state = st.session_state
    run: FileRun | None = state.pop("active_run", None)
    if run is not None:
        run.stop()
    live_view.discard()
    camera_view.discard()
    compare_mode.discard()
    current: InputFile | None = state.get("input")
    if current is not None and current.preview is not None:
        current.preview.cancel()
    clear(folder)
    for key in ("input", "result", "failed"):
        state.pop(key, None)
