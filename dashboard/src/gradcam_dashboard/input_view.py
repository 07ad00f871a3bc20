"""The input: an upload, a sample clip, or a live source the operator named."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from gradcam_client.errors import GradcamError
from gradcam_dashboard import (
    camera_view,
    live_view,
    media,
)
from gradcam_dashboard.config import DashboardConfig, LiveSourceChoice
from gradcam_dashboard.preview import Preview
from gradcam_dashboard.sessions import (
    safe_filename,
)
from gradcam_dashboard.workspace import InputFile, folders, forget_files


def new_input(config: DashboardConfig, folder: Path) -> None:
    """A new input replaces the old one: clear this session, and sweep abandoned ones."""
    forget_files(folder)
    folders(config).remove_stale(keep=folder)


def _input_error(error: Exception) -> str:
    return getattr(error, "problem", None) or str(error)


def upload_input(config: DashboardConfig, folder: Path) -> InputFile | None:
    """The uploaded file, saved in the session folder and checked."""
    limit = config.max_upload_bytes
    upload = st.file_uploader(
        "Video or image",
        type=list(media.UPLOAD_TYPES),
        max_upload_size=max(1, math.ceil(config.max_upload_mb)),
        key="upload",
        help=f"Videos ({', '.join(media.VIDEO_TYPES)}) or images "
        f"({', '.join(media.IMAGE_TYPES)}) up to {media.human_size(limit)}; videos "
        f"{config.limits.describe()}.",
    )
    if limit < 1024 * 1024 * math.ceil(config.max_upload_mb):
        st.caption(f"Files up to {media.human_size(limit)}.")
    if upload is None:
        return None
    key = f"upload:{upload.file_id}"
    current = st.session_state.get("input")
    if current is not None and current.key == key:
        return current
    new_input(config, folder)
    try:
        media.check_upload(upload.name, upload.size, limit)
    except media.UploadRejected as error:
        return InputFile(key, upload.name, error=str(error))
    path = folder / "input" / safe_filename(upload.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(upload.getbuffer())
    return checked(config, key, upload.name, path)


def checked(config: DashboardConfig, key: str, name: str, path: Path) -> InputFile:
    """An input described by the client's reader and checked against the page's limits, or
    the reason to refuse it; videos a browser cannot play get a preview made meanwhile."""
    try:
        summary = media.summarize(path)
        media.check_limits(name, summary, config.limits)
        thumbnail = media.thumbnail(path)
    except GradcamError as error:
        return InputFile(key, name, error=f"{name} cannot be used: {_input_error(error)}")
    except media.UploadRejected as error:
        return InputFile(key, name, error=str(error))
    preview = None
    if not summary.is_image and not media.browser_playable(path, summary):
        preview = Preview(path, path.with_name("preview.mp4"))
    return InputFile(key, name, path, summary, thumbnail=thumbnail, preview=preview)


def sample_input(config: DashboardConfig, folder: Path) -> InputFile:
    """A sample clip made from a photo shipped by scikit-image (made once, then reused)."""
    names = list(media.SAMPLE_PHOTOS)
    name = st.selectbox(
        "Sample clip",
        names,
        format_func=lambda n: f"{n}: {media.SAMPLE_PHOTOS[n]}",
        key="sample",
        help="A few seconds of camera pan and zoom over a photo shipped by scikit-image.",
    )
    key = f"sample:{name}"
    current = st.session_state.get("input")
    if current is not None and current.key == key and current.path and current.path.is_file():
        return current
    new_input(config, folder)
    with st.spinner("Making the sample clip..."):
        path = media.sample_clip(folders(config).samples_dir(), name, config.sample_seconds)
    return checked(config, key, f"{name}.mp4", path)


SOURCE_KINDS = {
    "upload": "Upload a file",
    "sample": "Sample clip",
    "live": "Live",
    "camera": "Camera",
}
LIVE_KINDS = ("live", "camera")  # sources that play as they come (no whole clip)


def input_ui(config: DashboardConfig, folder: Path) -> InputFile | LiveSourceChoice | None:
    """Choose the input: an upload, a sample clip or a live source; shows it, or why it
    cannot be used. Changing between files and live drops what the other made."""
    st.subheader("1 · Input")
    kinds = [kind for kind in SOURCE_KINDS if config.camera or kind != "camera"]
    kind = st.radio(
        "Source",
        kinds,
        format_func=SOURCE_KINDS.get,
        horizontal=True,
        key="source",
        label_visibility="collapsed",
    )
    if kind in LIVE_KINDS:
        state = st.session_state
        if state.get("input") is not None or {"active_run", "result", "failed"} & set(state):
            new_input(config, folder)
    if kind != "camera":
        camera_view.discard()
    if kind == "camera":
        live_view.discard()
        return None
    if kind == "live":
        return live_view.source_ui(config)
    live_view.discard()
    chosen = upload_input(config, folder) if kind == "upload" else sample_input(config, folder)
    st.session_state["input"] = chosen
    if chosen is None:
        st.info("Upload a video or an image, or choose a sample clip.", icon=":material/upload:")
        return None
    if chosen.error:
        st.error(chosen.error, icon=":material/block:")
        return None
    assert chosen.summary is not None and chosen.path is not None
    picture, text = st.columns([1, 4], vertical_alignment="center")
    if chosen.thumbnail is not None:
        picture.image(chosen.thumbnail, width="stretch")
    text.caption(f"**{chosen.name}**: {chosen.summary.describe()}")
    return chosen
