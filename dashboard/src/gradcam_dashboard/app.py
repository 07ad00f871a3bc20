"""The Grad-CAM video dashboard: a Streamlit page (start it with ``gradcam-dashboard``).

The page talks to the server only through the client library; everything that is not drawing
(metrics, session folders, chart data, runs) lives in plain modules of this package.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from gradcam_client.compose import COLORMAPS
from gradcam_client.contract import ModelInfo
from gradcam_client.errors import GradcamError, ServerUnavailable
from gradcam_dashboard import charts, jobs, media, metrics, servers
from gradcam_dashboard.config import DashboardConfig
from gradcam_dashboard.jobs import RunOutput, RunRequest
from gradcam_dashboard.servers import ServerStatus
from gradcam_dashboard.sessions import (
    FolderJanitor,
    SessionFolders,
    clear,
    new_subfolder,
    safe_filename,
)

LOAD_REFRESH_S = 5
LOAD_HISTORY = 60
PROGRESS_EVERY_S = 0.2


@dataclass(frozen=True)
class InputFile:
    """The session's current input: where it is and what it holds, or why it is unusable."""

    key: str
    name: str
    path: Path | None = None
    summary: media.MediaSummary | None = None
    error: str = ""
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def usable(self) -> bool:
        return self.path is not None and self.summary is not None and not self.error


# --------------------------------------------------------------------------- shared resources


@st.cache_resource(show_spinner=False)
def session_folders(root: str, max_age_hours: float) -> SessionFolders:
    """The session folders under `root` (one object per server process)."""
    return SessionFolders(root, max_age_hours)


@st.cache_data(ttl=10, show_spinner=False, max_entries=32)
def server_status(url: str, attempt: int) -> ServerStatus:
    """The server's status, re-read at most every 10 s (or at once on a new attempt)."""
    return servers.probe_server(url)


@st.cache_resource(show_spinner=False, max_entries=16)
def job_client(url: str, model: str, retry_s: float):
    """One client per server and model, shared by all sessions (it is thread-safe)."""
    return servers.job_server(url, model, retry_s)


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
        for key in ("input", "result"):
            state.pop(key, None)
        st.info("Your earlier files were removed after a long pause; please start again.")
    folders(config).remove_stale()
    folder = folders(config).create()
    state["workdir"] = str(folder)
    state["janitor"] = FolderJanitor(folder)  # removes the folder when the session ends
    return folder


def forget_files(folder: Path) -> None:
    """Remove this session's input and results (files and page state)."""
    clear(folder)
    for key in ("input", "result"):
        st.session_state.pop(key, None)


# --------------------------------------------------------------------------- server panel


def retry_server() -> None:
    st.session_state["attempt"] = st.session_state.get("attempt", 0) + 1


def server_ui(config: DashboardConfig) -> ServerStatus:
    """Sidebar: address, status, hosted models, live load. A down server also gets a notice."""
    with st.sidebar:
        st.header("Server")
        url = st.text_input(
            "Triton gRPC address",
            value=config.url,
            key="server_url",
            help="HOST:PORT of the Triton server's gRPC endpoint (default from GRADCAM_URL); "
            "several, comma-separated, share the work.",
        ).strip()
        with st.spinner("Contacting the server..."):
            status = server_status(url, st.session_state.get("attempt", 0))
        if not status.live:
            st.error(f"Down: {url}", icon=":material/cloud_off:")
        elif status.ready:
            count = len(status.usable_models)
            st.success(f"Live and ready: {count} Grad-CAM model(s)", icon=":material/cloud_done:")
        else:
            st.warning("Live, but no Grad-CAM model is ready", icon=":material/cloud_sync:")
        if status.live:
            models_ui(status)
        st.button("Check again", on_click=retry_server, key="recheck", icon=":material/refresh:")
        metrics_url = st.text_input(
            "Metrics URL",
            value=config.metrics_for(url),
            key=f"metrics_url:{url}",
            help="Triton's Prometheus endpoint (default from GRADCAM_METRICS_URL, else port 8002"
            " on the server's host).",
        ).strip()
        load_ui(metrics_url)
    if not status.live:
        server_down_ui(status)
    return status


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
            st.markdown(
                f"**{row['status']}** · input {row['input']} · {row['classes']} classes  \n"
                f"**Layers:** {row['layers']}  \n**Methods:** {row['methods']}"
            )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@st.fragment(run_every=LOAD_REFRESH_S)
def load_ui(metrics_url: str) -> None:
    """Live load of the (shared) server from its metrics endpoint, refreshed every few s."""
    st.subheader("Load")
    state = st.session_state
    try:
        now = metrics.read_load(metrics_url, time.monotonic())
    except metrics.MetricsUnavailable as error:
        st.caption(f"No load figures: {error}")
        return
    previous = state.get("load_previous")
    if previous is None or previous[0] != metrics_url:
        previous, history = None, []
    else:
        previous, history = previous[1], state.get("load_history", [])
    figures = metrics.recent(now, previous)
    total = figures[metrics.TOTAL]
    if previous is not None:
        history = [*history, (now.time, total.requests_per_s, total.frames_per_s)][-LOAD_HISTORY:]
    state["load_previous"] = (metrics_url, now)
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
        f"({', '.join(media.IMAGE_TYPES)}) up to {media.human_size(limit)}.",
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
    return checked(key, upload.name, path)


def checked(key: str, name: str, path: Path) -> InputFile:
    """An input described by the client's reader, or the reader's reason to refuse it."""
    try:
        summary = media.summarize(path)
        preview = media.thumbnail(path)
    except GradcamError as error:
        return InputFile(key, name, error=f"{name} cannot be used: {_input_error(error)}")
    return InputFile(key, name, path, summary, preview=preview)


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
    return checked(key, f"{name}.mp4", path)


def input_ui(config: DashboardConfig, folder: Path) -> InputFile | None:
    """Choose the input: an upload or a sample clip; shows it, or why it cannot be used."""
    st.subheader("1 · Input")
    kind = st.radio(
        "Source",
        ["upload", "sample"],
        format_func={"upload": "Upload a file", "sample": "Sample clip"}.get,
        horizontal=True,
        key="source",
        label_visibility="collapsed",
    )
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
    if chosen.preview is not None:
        picture.image(chosen.preview, width="stretch")
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


def settings_ui(status: ServerStatus) -> RunRequest | None:
    """Model, layers, methods, target and looks; None while the choice is incomplete."""
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
        layout = st.radio("Layout", list(jobs.LAYOUTS), format_func=jobs.LAYOUTS.get, key="layout")
        layers, methods = _layer_method_ui(layout, info)
        include_original = layout.startswith("grid") and st.checkbox(
            "Original frame as first panel", key="include_original"
        )
    with target_col:
        target = st.radio(
            "Class to explain", list(jobs.TARGETS), format_func=jobs.TARGETS.get, key="target"
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
            "Predicted: each frame explains its own top class. Whole video: one class, the one "
            "with the highest mean probability, for every frame (needs a first pass)."
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
        scopes = list(jobs.SCOPES)
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
    st.session_state["stopped"] = True


def run_ui(
    config: DashboardConfig, folder: Path, source: InputFile | None, request: RunRequest | None
) -> None:
    """The run button; while running a progress bar with frames/s and a stop button."""
    st.subheader("3 · Run")
    if st.session_state.pop("stopped", False):
        st.info("The run was stopped.", icon=":material/stop_circle:")
    ready = source is not None and source.usable and request is not None
    clicked = st.button(
        "Run", type="primary", disabled=not ready, key="run", icon=":material/play_arrow:"
    )
    again = st.session_state.pop("run_again", False)
    if not (clicked or (again and ready)) or source is None or request is None:
        return
    previous = st.session_state.pop("result", None)
    if previous is not None:
        shutil.rmtree(previous.folder, ignore_errors=True)
    start_run(config, folder, source, request)


def run_again() -> None:
    st.session_state["run_again"] = True


def start_run(
    config: DashboardConfig, folder: Path, source: InputFile, request: RunRequest
) -> None:
    """Run the job with a progress bar; keeps its result in the session, or says why not.

    Clicking Stop (or anything else) reruns the page, which raises Streamlit's rerun
    exception in the progress callback: the job ends there and its files are removed.
    """
    assert source.path is not None and source.summary is not None
    run_folder: Path | None = None
    bar = st.progress(0.0, text="Starting...")
    stop_slot = st.empty()
    meter = jobs.ProgressMeter()
    last_update = [0.0]

    def progress(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last_update[0] < PROGRESS_EVERY_S and done != total:
            return
        last_update[0] = now
        bar.progress(meter.fraction(done, total), text=meter.text(done, total))
        folders(config).touch(folder)

    try:
        stop_slot.button("Stop", on_click=stop_run, key="stop", icon=":material/stop:")
        run_folder = new_subfolder(folder, "run-")
        client = job_client(status_url(config), request.model, config.retry_s)
        out = jobs.run(client, request, source.path, run_folder, source.summary.is_image, progress)
        out.extras["info"] = client.model_info()
        out.extras["strip"] = media.extract_frames(
            source.path, out.output, run_folder / "frames", out.frames
        )
        st.session_state["result"] = out  # kept even if the page reruns from here on
    except GradcamError as error:
        _drop(run_folder)
        bar.empty()
        if isinstance(error, ServerUnavailable):
            retry_server()  # the server panel checks again on the next interaction
            text = f"The run failed: the server stopped answering. {error}"
        else:
            text = f"The run failed: {error}"
        st.error(text, icon=":material/error:")
        st.button("Try again", key="retry_run", type="primary", on_click=run_again)
        return
    except Exception as error:
        _drop(run_folder)
        bar.empty()
        st.error(f"The run failed unexpectedly: {type(error).__name__}: {error}")
        with st.expander("Details"):
            st.code(traceback.format_exc())
        return
    except BaseException:  # stopped (the page reran): drop the half-made files
        _drop(run_folder)
        raise
    finally:
        stop_slot.empty()
    bar.progress(
        1.0, text=f"Done: {out.frames} frame(s) in {out.seconds:.1f} s ({out.fps:.1f} frames/s)"
    )


def _drop(run_folder: Path | None) -> None:
    if run_folder is not None:
        shutil.rmtree(run_folder, ignore_errors=True)


def status_url(config: DashboardConfig) -> str:
    return str(st.session_state.get("server_url", config.url)).strip()


# --------------------------------------------------------------------------- results


def _records(run: RunOutput) -> list[charts.Record]:
    if "records" not in run.extras:
        run.extras["records"] = charts.read_predictions(run.predictions)
    return run.extras["records"]  # type: ignore[return-value]


def _maps(run: RunOutput) -> dict[str, np.ndarray]:
    if "maps" not in run.extras:
        with np.load(run.maps) as data:
            run.extras["maps"] = {name: data[name] for name in data.files}
    return run.extras["maps"]  # type: ignore[return-value]


def results_ui(run: RunOutput) -> None:
    """The result beside the original, the timeline, the frame inspector and downloads."""
    info: ModelInfo = run.extras["info"]  # type: ignore[assignment]
    st.subheader("4 · Result")
    request = run.request
    st.caption(
        f"{request.model} · {jobs.LAYOUTS[request.layout].lower()} · explained: {run.target} · "
        f"{run.frames} frame(s) in {run.seconds:.1f} s ({run.fps:.1f} frames/s)"
        + (f" · {run.skipped}" if run.skipped else "")
    )
    original, result = st.columns([1, 1] if request.layout == "overlay" else [1, 2])
    with original, st.container(key="original-media"):
        st.markdown("**Original**")
        if run.is_image:
            st.image(str(run.source))
        elif run.source.suffix.lower().lstrip(".") in media.BROWSER_VIDEO_TYPES:
            st.video(str(run.source))
        else:
            st.caption("Browsers cannot play this format; the inspector below shows its frames.")
    with result, st.container(key="result-media"):
        st.markdown("**Grad-CAM**")
        if run.is_image:
            st.image(str(run.output))
        else:
            st.video(str(run.output))
    records = _records(run)
    key = f"inspect:{run.folder.name}"
    strip: media.FrameStrip = run.extras["strip"]  # type: ignore[assignment]
    index = strip.nearest(int(st.session_state.get(key, 0)))
    if len(records) > 1:
        with st.container(key="timeline"):
            st.markdown("**Top classes over the video**")
            marker = float(records[min(index, len(records) - 1)]["time"])
            data = charts.timeline_data(records)
            st.altair_chart(charts.timeline_chart(data, marker))
    inspector_ui(run, records, info, key)
    downloads_ui(run)


def inspector_ui(run: RunOutput, records: list[charts.Record], info: ModelInfo, key: str) -> None:
    """A frame slider: original, result, raw maps at layer resolution and the top five."""
    strip: media.FrameStrip = run.extras["strip"]  # type: ignore[assignment]
    with st.container(key="inspector"):
        st.markdown("**Frame inspector**")
        if len(records) > 1:
            index = st.slider(
                "Frame",
                0,
                strip.indices[-1],
                0,
                step=strip.step,
                key=key,
                help="Every frame" if strip.step == 1 else f"Every {strip.step}th frame",
            )
        else:
            index = 0
        index = strip.nearest(index)
        record = records[min(index, len(records) - 1)]
        panels = jobs.panels(run.request, info)
        if len(panels) == 1:
            original, result, raw, top = st.columns([3, 3, 2, 3])
        else:  # the maps get a row of their own
            original, result, top = st.columns([2, 3, 2])
            raw = None
        original.image(
            str(strip.original(index)),
            caption=f"Original · frame {index} · {record['time']:.2f} s",
            width="stretch",
        )
        result.image(str(strip.result(index)), caption="Grad-CAM", width="stretch")
        with top:
            st.altair_chart(charts.top5_chart(charts.frame_top5(record)))
            st.caption(f"Explained: **{record['explained_name']}**")
        cells = [raw] if raw is not None else st.columns(max(len(panels), 4))
        maps_ui(run, index, info, panels, cells)


def maps_ui(
    run: RunOutput,
    index: int,
    info: ModelInfo,
    panels: list[tuple[str, int]],
    cells: list,
) -> None:
    """The raw maps of one frame at the layer's resolution, each scaled to its own maximum."""
    maps = _maps(run)
    for (layer, method_index), cell in zip(panels, cells, strict=False):
        if layer not in maps or index >= len(maps[layer]):
            continue
        raw = maps[layer][index, method_index]
        method = servers.method_name(info.methods[method_index])
        cell.image(
            media.map_picture(raw, run.request.colormap),
            caption=f"{layer} · {method} · {raw.shape[0]}x{raw.shape[1]} · max {raw.max():.3g}",
            width="stretch",
        )


def downloads_ui(run: RunOutput) -> None:
    """Download buttons: the result, the per-frame predictions and the raw maps."""
    video, predictions, maps = st.columns(3)
    kind = "Image" if run.is_image else "Video (MP4)"
    mime = "image/png" if run.is_image else "video/mp4"
    video.download_button(
        f"{kind}", run.output.read_bytes, run.output.name, mime, key="dl_video", on_click="ignore"
    )
    predictions.download_button(
        "Predictions (JSONL)",
        run.predictions.read_bytes,
        "predictions.jsonl",
        "application/jsonl",
        key="dl_predictions",
        on_click="ignore",
    )
    maps.download_button(
        "Raw maps (NPZ)",
        run.maps.read_bytes,
        "maps.npz",
        "application/octet-stream",
        key="dl_maps",
        on_click="ignore",
    )


# --------------------------------------------------------------------------- page


def main() -> None:
    """The whole page."""
    st.set_page_config(page_title="Grad-CAM video", page_icon="🔥", layout="wide")
    config = DashboardConfig.from_env()
    folder = workspace(config)
    st.title("Grad-CAM video")
    st.caption("Where does the model look? Heat maps over every frame of a video or an image.")
    status = server_ui(config)
    source = input_ui(config, folder)
    request = settings_ui(status)
    run_ui(config, folder, source, request)
    run = st.session_state.get("result")
    if run is not None:
        results_ui(run)
    with st.sidebar:
        st.divider()
        if st.button("Remove my files", key="forget", icon=":material/delete:"):
            forget_files(folder)
            st.rerun()


if __name__ == "__main__":
    main()
