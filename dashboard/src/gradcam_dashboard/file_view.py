"""A heat-map run on a file: start, progress, stop, its result or its failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from gradcam_dashboard import (
    media,
    servers,
)
from gradcam_dashboard.background import Failure
from gradcam_dashboard.config import DashboardConfig, ServerChoice
from gradcam_dashboard.jobs import RunOutput, RunRequest
from gradcam_dashboard.result_view import partial_downloads_ui, results_ui
from gradcam_dashboard.runner import FileRun
from gradcam_dashboard.server_panel import retry_server
from gradcam_dashboard.sessions import new_subfolder, when_session_ends
from gradcam_dashboard.workspace import InputFile, folders

PROGRESS_REFRESH_S = 0.25


def stop_run() -> None:
    """The Stop button: end the run and remove its files."""
    state = st.session_state
    run: FileRun | None = state.pop("active_run", None)
    if run is not None:
        run.stop()
    state["stopped"] = True


def run_again() -> None:
    st.session_state["run_again"] = True
    retry_server()


def run_ui(
    config: DashboardConfig,
    folder: Path,
    choice: ServerChoice,
    source: InputFile | None,
    request: RunRequest | None,
) -> None:
    """The run button; while running, progress and a Stop button; after a failure, what
    was made and one Try again button."""
    state = st.session_state
    st.subheader("3 · Run")
    if state.pop("stopped", False):
        st.info("The run was stopped.", icon=":material/stop_circle:")
    ready = source is not None and source.usable and request is not None
    running = state.get("active_run") is not None
    clicked = st.button(
        "Run",
        type="primary",
        disabled=not ready or running,
        key="run",
        icon=":material/play_arrow:",
    )
    again = state.pop("run_again", False)
    if (clicked or again) and ready and not running:
        assert source is not None and request is not None
        start_run(config, folder, choice, source, request)
    if state.get("active_run") is not None:
        progress_ui(config)
    elif "failed" in state:
        failure_ui(config, state["failed"].failure)


def _drop_previous() -> None:
    """A new run replaces the previous result or failure (and their files)."""
    state = st.session_state
    for key in ("result", "failed"):
        previous = state.pop(key, None)
        if previous is not None:
            shutil.rmtree(previous.folder, ignore_errors=True)


def start_run(
    config: DashboardConfig,
    folder: Path,
    choice: ServerChoice,
    source: InputFile,
    request: RunRequest,
) -> None:
    """Start the run in the background; the progress fragment follows it."""
    assert source.path is not None and source.summary is not None
    _drop_previous()
    connection = config.connection()
    playable = source.summary.is_image or media.browser_playable(source.path, source.summary)
    source_path = source.path

    def make_server(on_retry):
        return servers.job_server(
            choice.url, request.model, config.retry_s, connection, on_retry, config.wire
        )

    def finish(out: RunOutput, server) -> None:
        out.extras["info"] = server.model_info()
        out.extras["wire"] = server.wire.describe()
        out.extras["playable"] = playable
        out.extras["strip"] = media.extract_frames_later(
            source_path, out.output, out.folder / "frames", out.frames
        )

    run = FileRun(
        make_server,
        request,
        source.path,
        new_subfolder(folder, "run-"),
        source.summary.is_image,
        max_frames=config.limits.max_frames,
        finish=finish,
    )
    st.session_state["active_run"] = run.start()
    when_session_ends(st.session_state, run.cancel.set)


@st.fragment(run_every=PROGRESS_REFRESH_S)
def progress_ui(config: DashboardConfig) -> None:
    """The running run's progress, a notice while the server does not answer, and Stop."""
    state = st.session_state
    run: FileRun | None = state.get("active_run")
    if run is None:  # stopped meanwhile
        st.rerun()
        return
    snapshot = run.snapshot()
    if snapshot.finished:
        finish_run(run)
        st.rerun()
    folders(config).touch(run.folder.parent)
    fraction, text = snapshot.progress_bar()
    st.progress(fraction, text=text)
    if snapshot.outage is not None:
        st.warning(
            "**The server is not answering.** The page keeps retrying until "
            f"{snapshot.outage.until_clock}; the frames done so far are kept. "
            f"({snapshot.outage.problem})",
            icon=":material/cloud_off:",
        )
    st.button("Stop", on_click=stop_run, key="stop", icon=":material/stop:")


def finish_run(run: FileRun) -> None:
    """Move a finished run's outcome into the page's state."""
    state = st.session_state
    state.pop("active_run", None)
    if run.result is not None:
        state["result"] = run.result
    elif run.failure is not None:
        state["failed"] = run  # its files stay until the next run
        if run.failure.server_lost:
            retry_server()  # the status is checked afresh
    else:
        shutil.rmtree(run.folder, ignore_errors=True)
        state["stopped"] = True


def failure_ui(config: DashboardConfig, failure: Failure) -> None:
    """Why the run failed, how far it got, what it made, and one Try again button."""
    of = f" of {failure.total}" if failure.total else ""
    done = f"{failure.frames_done}{of} frames were done"
    if failure.server_lost:
        text = (
            f"**The run stopped: the server did not answer for {config.retry_s:g} s.** {done}"
            + ("; what was made is below." if failure.frames_done else ".")
            + f"\n\nDetails: {failure.message}"
        )
    else:
        text = f"**The run failed:** {failure.message} ({done})."
    with st.container(key="run-failed"):
        st.error(text, icon=":material/error:")
        if failure.video is not None or failure.predictions is not None:
            partial_downloads_ui(failure.video, failure.predictions)
        st.button("Try again", key="retry_run", type="primary", on_click=run_again)


def file_ui(
    config: DashboardConfig,
    folder: Path,
    choice: ServerChoice,
    source: InputFile | None,
    request: RunRequest | None,
) -> None:
    """Run an uploaded file or a sample clip, and show the result."""
    run_ui(config, folder, choice, source, request)
    run = st.session_state.get("result")
    if run is not None and "active_run" not in st.session_state:
        current = source if source is not None and source.path == run.source else None
        results_ui(run, current.preview if current is not None else None)
