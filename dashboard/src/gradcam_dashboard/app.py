"""The Grad-CAM video dashboard: a Streamlit page (start it with ``gradcam-dashboard``).

The page talks to the server only through the client library, and only to the servers the
operator named at launch; everything that is not drawing (metrics, session folders, chart
data, runs in the background, previews) lives in plain modules of this package.
"""

from __future__ import annotations

import datetime
import functools
import math
import shutil
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from gradcam_client.compose import COLORMAPS
from gradcam_client.contract import ModelInfo
from gradcam_client.errors import GradcamError
from gradcam_dashboard import (
    camera_view,
    charts,
    compare_mode,
    jobs,
    live_view,
    media,
    metrics,
    servers,
)
from gradcam_dashboard.config import DashboardConfig, LiveSourceChoice, ServerChoice
from gradcam_dashboard.jobs import RunOutput, RunRequest
from gradcam_dashboard.preview import Preview
from gradcam_dashboard.result_view import partial_downloads_ui, results_ui
from gradcam_dashboard.runner import BackgroundRun, Failure, Snapshot
from gradcam_dashboard.servers import ServerStatus
from gradcam_dashboard.sessions import (
    FolderJanitor,
    SessionFolders,
    clear,
    new_subfolder,
    safe_filename,
)

LOAD_REFRESH_S = 5
STATUS_REFRESH_S = 1
LOAD_HISTORY = 60
PROGRESS_REFRESH_S = 0.25
STATUS_TTL_S = 4
METRICS_TIMEOUT_S = 1.5


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


@dataclass(frozen=True)
class FailedRun:
    """A run that failed: why, and what it made; its files stay until the next run."""

    failure: Failure
    folder: Path


# --------------------------------------------------------------------------- shared resources


@st.cache_resource(show_spinner=False)
def session_folders(root: str, max_age_hours: float) -> SessionFolders:
    """The session folders under `root` (one object per server process)."""
    return SessionFolders(root, max_age_hours)


@st.cache_data(ttl=STATUS_TTL_S, show_spinner=False, max_entries=32)
def server_status(url: str, attempt: int, _config: DashboardConfig) -> ServerStatus:
    """The server's status, re-read at most every few seconds (or at once on a new attempt).

    Only addresses the configuration allows reach this function.
    """
    return servers.probe_server(url, _config.connection())


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
    run: BackgroundRun | None = state.pop("active_run", None)
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


# --------------------------------------------------------------------------- server panel


def retry_server() -> None:
    st.session_state["attempt"] = st.session_state.get("attempt", 0) + 1


def server_choice_ui(config: DashboardConfig) -> ServerChoice:
    """The server this session uses: one of the operator's, or (if allowed) any address."""
    state = st.session_state
    if config.allow_any_url:
        url = st.text_input(
            "Triton gRPC address",
            value=config.url,
            key="server_url",
            help="HOST:PORT of a Triton server's gRPC endpoint; several, comma-separated, "
            "share the work.",
        )
    else:
        urls = [server.url for server in config.servers]
        if state.get("server_url") not in urls:  # a value the page never offered
            state["server_url"] = urls[0]
        url = st.selectbox(
            "Triton server",
            urls,
            key="server_url",
            disabled=len(urls) == 1,
            help="The servers this dashboard is set up for (gRPC addresses).",
        )
    return config.choice(url) or config.servers[0]


def status_ui(status: ServerStatus, snapshot: Snapshot | None) -> None:
    """One line saying whether the server answers (during a run, as the run sees it)."""
    if snapshot is not None and snapshot.outage is not None:
        until = datetime.datetime.fromtimestamp(snapshot.outage.until).strftime("%H:%M:%S")
        st.error(f"Not answering; retrying until {until}", icon=":material/cloud_off:")
    elif snapshot is not None:
        st.success("Live: your run is in progress", icon=":material/cloud_done:")
    elif not status.live:
        st.error(f"Down: {status.url}", icon=":material/cloud_off:")
    elif status.ready:
        count = len(status.usable_models)
        st.success(f"Live and ready: {count} Grad-CAM model(s)", icon=":material/cloud_done:")
    else:
        st.warning("Live, but no Grad-CAM model is ready", icon=":material/cloud_sync:")


def _signature(status: ServerStatus) -> tuple:
    return (status.live, tuple((m.name, m.usable) for m in status.models))


@st.fragment(run_every=STATUS_REFRESH_S)
def status_fragment(config: DashboardConfig, choice: ServerChoice) -> None:
    """The status line, refreshed on its own; during a run (a file run or a comparison), as
    the run sees the server.

    When the server comes back or goes away the whole page is redrawn, so that the page
    never says something else than the status line.
    """
    state = st.session_state
    run: BackgroundRun | None = state.get("active_run") or state.get(compare_mode.RUN)
    snapshot = run.snapshot() if run is not None else None
    if snapshot is None:
        status = server_status(choice.url, state.get("attempt", 0), config)
        if state.get("page_status") not in (None, _signature(status)):
            st.rerun()
    else:
        status = ServerStatus(choice.url, live=snapshot.outage is None)
    status_ui(status, snapshot)


@st.fragment(run_every=LOAD_REFRESH_S)
def load_fragment(choice: ServerChoice) -> None:
    """The load panel, refreshed on its own (also while this session's run goes on)."""
    load_ui(choice)


def server_ui(config: DashboardConfig) -> tuple[ServerChoice, ServerStatus]:
    """Sidebar: the server, its status, hosted models and live load."""
    state = st.session_state
    with st.sidebar:
        st.header("Server")
        choice = server_choice_ui(config)
        status = server_status(choice.url, state.get("attempt", 0), config)
        state["page_status"] = _signature(status)
        status_fragment(config, choice)
        if status.live:
            models_ui(status)
        st.button("Check again", on_click=retry_server, key="recheck", icon=":material/refresh:")
        load_fragment(choice)
    if not status.live and "failed" not in state:  # a failed run already says so
        server_down_ui(status)
    return choice, status


def server_down_ui(status: ServerStatus) -> None:
    """The notice shown in the page when the server cannot be reached."""
    with st.container(key="server-down"):
        st.error(
            f"**The Grad-CAM server at `{status.url}` cannot be reached.** It may be stopped, "
            "restarting, or the address may be wrong. You can still pick a video; running it "
            f"needs the server.\n\nDetails: {status.error}",
            icon=":material/error:",
        )
        st.button("Retry", on_click=retry_server, key="retry", type="primary")


def models_ui(status: ServerStatus) -> None:
    """The hosted models with their layers and methods."""
    rows = servers.model_rows(status)
    if not rows:
        st.caption("The server hosts no models.")
        return
    st.caption("Models on this server")
    for row in rows:
        ready = row["status"] == "ready"
        icon = ":material/check_circle:" if ready else ":material/pending:"
        with st.expander(row["model"], expanded=len(rows) <= 2, icon=icon):
            if "input" not in row:
                st.caption(f"Not a Grad-CAM model: {row['layers']}")
                continue
            versions = f" · {row['versions']}" if row["versions"] else ""
            st.markdown(
                f"**{row['status']}** · input {row['input']} · {row['classes']} classes"
                f"{versions}  \n"
                f"**Layers:** {row['layers']}  \n**Methods:** {row['methods']}"
            )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def load_ui(choice: ServerChoice) -> None:
    """Live load of the (shared) server from its metrics endpoint."""
    st.subheader("Load")
    state = st.session_state
    if choice.metrics_url is None:
        st.caption("No load figures: this server has no metrics endpoint.")
        return
    try:
        now = metrics.read_load(choice.metrics_url, time.monotonic(), timeout=METRICS_TIMEOUT_S)
    except metrics.MetricsUnavailable as error:
        st.caption(f"No load figures: the server's metrics endpoint does not answer ({error}).")
        return
    previous = state.get("load_previous")
    if previous is None or previous[0] != choice.metrics_url:
        previous, history = None, []
    else:
        previous, history = previous[1], state.get("load_history", [])
    figures = metrics.recent(now, previous)
    total = figures[metrics.TOTAL]
    if previous is not None:
        history = [*history, (now.time, total.requests_per_s, total.frames_per_s)][-LOAD_HISTORY:]
    state["load_previous"] = (choice.metrics_url, now)
    state["load_history"] = history
    overall = now.total
    recent_batch = total.delta.mean_batch
    recent_queue = total.delta.mean_queue_ms
    left, right = st.columns(2)
    left.metric("Requests/s", _fmt(total.requests_per_s))
    right.metric("Frames/s", _fmt(total.frames_per_s))
    left.metric(
        "Mean batch",
        _fmt(recent_batch if recent_batch is not None else overall.mean_batch),
        help="Frames per model execution (nv_inference_count / nv_inference_exec_count); "
        "recent if there was traffic in the last interval, else since the server started.",
    )
    right.metric(
        "Queue ms",
        _fmt(recent_queue if recent_queue is not None else overall.mean_queue_ms),
        help="Mean time a request waited in the queue "
        "(nv_inference_queue_duration_us / nv_inference_request_success).",
    )
    st.caption(
        f"{overall.requests:.0f} requests, {overall.inferences:.0f} frames since the server "
        f"started · {overall.pending:.0f} waiting now"
    )
    if len(history) >= 2:
        st.altair_chart(charts.load_chart(charts.load_history_data(history)))
    if len(now.models) > 1:
        table = [
            {
                "model": name,
                "requests": int(load.requests),
                "failed": int(load.failures),
                "mean batch": load.mean_batch,
                "queue ms": load.mean_queue_ms,
                "waiting": int(load.pending),
            }
            for name, load in now.models.items()
        ]
        st.dataframe(table, hide_index=True)


# --------------------------------------------------------------------------- input


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


# --------------------------------------------------------------------------- settings


def _layer_method_ui(layout: str, info: ModelInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The layer(s) and method(s) the layout shows."""
    model = info.name
    layers, methods = info.layer_names, list(info.methods)
    if layout == "grid_layers":
        chosen_layers = st.multiselect("Layers", layers, default=layers, key=f"layers:{model}")
    else:
        chosen_layers = [st.selectbox("Layer", layers, key=f"layer:{model}")]
    if layout == "grid_methods":
        chosen_methods = st.multiselect(
            "Methods",
            methods,
            default=methods,
            format_func=servers.method_name,
            key=f"methods:{model}",
        )
    else:
        chosen_methods = [
            st.selectbox("Method", methods, format_func=servers.method_name, key=f"method:{model}")
        ]
    return tuple(chosen_layers), tuple(chosen_methods)


def _step(value: float, step: float = 0.05) -> float:
    """A default on a slider's steps."""
    return round(round(value / step) * step, 2)


def _offered(key: str, options: dict[str, str], live: bool, whole: str) -> list[str]:
    """The choices of a radio: a live source has no whole clip, so `whole` goes in Live."""
    offered = [option for option in options if not (live and option == whole)]
    if st.session_state.get(key) not in offered:
        st.session_state.pop(key, None)
    return offered


def settings_ui(status: ServerStatus, live: bool = False) -> RunRequest | None:
    """Model, layers, methods, target and looks; None while the choice is incomplete.

    live: for a live source (no choices that need the whole video first).
    """
    st.subheader("2 · Settings")
    models = status.usable_models
    if not status.live:
        st.caption("The settings appear once the server answers.")
        return None
    if not models:
        st.warning("The server hosts no Grad-CAM model that is ready.")
        return None
    by_name = {m.name: m.info for m in models if m.info is not None}
    what, target_col, looks = st.columns(3, gap="large")
    with what:
        model = st.selectbox("Model", list(by_name), key="model")
        info = by_name[model]
        layouts = jobs.layouts_for(info)
        if st.session_state.get("layout") not in layouts:
            st.session_state["layout"] = layouts[0]
        layout = st.radio("Layout", layouts, format_func=jobs.LAYOUTS.get, key="layout")
        layers, methods = _layer_method_ui(layout, info)
        include_original = layout.startswith("grid") and st.checkbox(
            "Original frame as first panel", key="include_original"
        )
    with target_col:
        target = st.radio(
            "Class to explain",
            _offered("target", jobs.TARGETS, live, "video"),
            format_func=jobs.TARGETS.get,
            key="target",
        )
        class_index = None
        if target == "class":
            names = info.class_names
            class_index = st.selectbox(
                "Class (type to search)",
                range(len(names)),
                format_func=lambda i: f"{names[i]} ({i})",
                key=f"class:{model}",
            )
        st.caption(
            "Predicted: each frame explains its own top class."
            + (
                ""
                if live
                else " Whole video: one class, the one with the highest mean probability, "
                "for every frame (needs a first pass)."
            )
        )
    with looks:
        colormaps = list(COLORMAPS)
        colormap = st.selectbox(
            "Colour map",
            colormaps,
            index=colormaps.index(jobs.DEFAULTS.composition.colormap),
            key="colormap",
        )
        st.image(media.colormap_strip(colormap), caption="low → high", width="stretch")
        alpha = st.slider(
            "Opacity", 0.0, 1.0, _step(jobs.DEFAULTS.composition.alpha), 0.05, key="alpha"
        )
        scopes = _offered("scope", jobs.SCOPES, live, "clip")
        scope = st.radio(
            "Normalisation",
            scopes,
            index=scopes.index(jobs.DEFAULTS.scope) if jobs.DEFAULTS.scope in scopes else 0,
            format_func=jobs.SCOPES.get,
            key="scope",
        )
        smoothing = st.slider(
            "Temporal smoothing",
            0.0,
            0.95,
            min(0.95, _step(jobs.DEFAULTS.smoothing)),
            0.05,
            key="smoothing",
            help="Exponential moving average of the raw maps over frames (0 = off).",
        )
    if not layers or not methods:
        st.warning("Choose at least one layer and one method.")
        return None
    return RunRequest(
        model=model,
        layout=layout,
        layers=layers,
        methods=methods,
        target=target,
        class_index=class_index,
        colormap=colormap,
        alpha=alpha,
        scope=scope,
        smoothing=smoothing,
        include_original=bool(include_original),
    )


# --------------------------------------------------------------------------- run


def stop_run() -> None:
    """The Stop button: end the run and remove its files."""
    state = st.session_state
    run: BackgroundRun | None = state.pop("active_run", None)
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
        failure_ui(config, state["failed"])


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

    run = BackgroundRun(
        make_server,
        request,
        source.path,
        new_subfolder(folder, "run-"),
        source.summary.is_image,
        max_frames=config.limits.max_frames,
        finish=finish,
    )
    st.session_state["active_run"] = run.start()
    janitor = st.session_state.get("janitor")
    if janitor is not None:  # a session that ends (tab closed) stops its run too
        weakref.finalize(janitor, run.cancel.set)


def _progress_line(snapshot: Snapshot) -> tuple[float, str]:
    """The progress bar's fraction and text for a snapshot."""
    if snapshot.phase == "starting":
        return 0.0, "Starting..."
    if snapshot.phase == "finishing":
        return 1.0, "Finishing..."
    fraction = jobs.progress_fraction(snapshot.done, snapshot.total)
    if snapshot.phase == "first pass":
        what = "Whole-clip pass: frame"
        return fraction, jobs.progress_text(
            snapshot.done, snapshot.total, snapshot.pass_elapsed, what
        )
    return fraction, jobs.progress_text(snapshot.done, snapshot.total, snapshot.pass_elapsed)


@st.fragment(run_every=PROGRESS_REFRESH_S)
def progress_ui(config: DashboardConfig) -> None:
    """The running run's progress, a notice while the server does not answer, and Stop."""
    state = st.session_state
    run: BackgroundRun | None = state.get("active_run")
    if run is None:  # stopped meanwhile
        st.rerun()
        return
    snapshot = run.snapshot()
    if snapshot.finished:
        finish_run(run)
        st.rerun()
    folders(config).touch(run.folder.parent)
    fraction, text = _progress_line(snapshot)
    st.progress(fraction, text=text)
    if snapshot.outage is not None:
        until = datetime.datetime.fromtimestamp(snapshot.outage.until).strftime("%H:%M:%S")
        st.warning(
            f"**The server is not answering.** The page keeps retrying until {until}; the "
            f"frames done so far are kept. ({snapshot.outage.problem})",
            icon=":material/cloud_off:",
        )
    st.button("Stop", on_click=stop_run, key="stop", icon=":material/stop:")


def finish_run(run: BackgroundRun) -> None:
    """Move a finished run's outcome into the page's state."""
    state = st.session_state
    state.pop("active_run", None)
    if run.result is not None:
        state["result"] = run.result
    elif run.failure is not None:
        state["failed"] = FailedRun(run.failure, run.folder)
        if run.failure.server_lost:
            retry_server()  # the status is checked afresh
    else:
        shutil.rmtree(run.folder, ignore_errors=True)
        state["stopped"] = True


def failure_ui(config: DashboardConfig, failed: FailedRun) -> None:
    """Why the run failed, how far it got, what it made, and one Try again button."""
    failure = failed.failure
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


# --------------------------------------------------------------------------- page


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


def main() -> None:
    """The whole page."""
    st.set_page_config(page_title="Grad-CAM video", page_icon="🔥", layout="wide")
    config = DashboardConfig.from_env()
    folder = workspace(config)
    st.title("Grad-CAM video")
    st.caption("Where does the model look? Heat maps over every frame of a video or an image.")
    choice, status = server_ui(config)
    mode = compare_mode.mode_ui()
    source = input_ui(config, folder)
    kind = st.session_state.get("source")
    if mode == "compare":
        file_source = None if isinstance(source, LiveSourceChoice) else source
        compare_mode.compare_ui(config, folder, choice, status, file_source)
    elif kind == "camera":
        request = settings_ui(status, live=True)
        touch = functools.partial(folders(config).touch, folder)
        camera_view.camera_ui(config, folder, choice, request, touch)
    elif isinstance(source, LiveSourceChoice) or kind == "live":
        live_source = source if isinstance(source, LiveSourceChoice) else None
        request = settings_ui(status, live=True)
        touch = functools.partial(folders(config).touch, folder)
        live_view.live_ui(config, folder, choice, live_source, request, touch)
    else:
        file_ui(config, folder, choice, source, settings_ui(status))
    with st.sidebar:
        st.divider()
        if st.button("Remove my files", key="forget", icon=":material/delete:"):
            forget_files(folder)
            st.rerun()


if __name__ == "__main__":
    main()
