"""The compare mode's part of the page: two models or versions on one clip, run in the
background, then the side-by-side video, the agreement over time, the summary figures, the
worst frames and an inspector with both maps and both predictions."""

from __future__ import annotations

import shutil
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

import numpy as np
import streamlit as st

from gradcam_client.compare.plan import ComparePlan, Side
from gradcam_client.compare.results import FrameComparison, read_comparisons
from gradcam_client.errors import GradcamError
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.model_ref import ModelRef
from gradcam_client.render.compose import COLORMAPS
from gradcam_dashboard import charts, compare_charts, compare_models, jobs, media, servers
from gradcam_dashboard.background import Failure
from gradcam_dashboard.compare_models import CompareRequest
from gradcam_dashboard.compare_runner import CompareOutput, CompareRun
from gradcam_dashboard.config import DashboardConfig, ServerChoice
from gradcam_dashboard.servers import ServerStatus
from gradcam_dashboard.sessions import new_subfolder, when_session_ends

MODES = {"explain": "Explain with one model", "compare": "Compare two models"}
OTHER = "__other__"
"""The picker's last choice: a NAME:VERSION typed by hand."""

PROGRESS_REFRESH_S = 0.25
INSPECTOR_POLL_S = 1.0
VERSION_INFO_TTL_S = 4
RUN, RESULT, FAILED, STOPPED = "compare_run", "compare_result", "compare_failed", "compare_stopped"


class Input(Protocol):
    """What the compare mode needs of the page's input (`app.InputFile`)."""

    path: Path | None
    summary: media.MediaSummary | None

    @property
    def usable(self) -> bool: ...


def mode_ui() -> str:
    """The page's mode: explain with one model, or compare two."""
    return st.radio(
        "Mode",
        list(MODES),
        format_func=MODES.get,
        horizontal=True,
        key="mode",
        label_visibility="collapsed",
    )


def discard() -> None:
    """Stop this session's comparison and drop its results (their files too)."""
    state = st.session_state
    run: CompareRun | None = state.pop(RUN, None)
    if run is not None:
        run.stop()
    for key in (RESULT, FAILED):
        previous = state.pop(key, None)
        if previous is not None:
            shutil.rmtree(previous.folder, ignore_errors=True)


def running() -> bool:
    return st.session_state.get(RUN) is not None


@st.cache_data(ttl=VERSION_INFO_TTL_S, show_spinner=False, max_entries=64)
def version_info(url: str, ref: str, attempt: int, _config: DashboardConfig) -> ModelInfo:
    """The metadata of one model version, re-read at most every few seconds; `GradcamError`
    (not cached) with the client's one line for a version the server does not serve."""
    return servers.version_info(url, ref, _config.connection())


# --------------------------------------------------------------------------- models


def _pick(label: str, key: str, options: list[str], labels: dict[str, str], default: int) -> str:
    state = st.session_state
    if state.get(key) not in options:
        state[key] = options[min(default, len(options) - 1)]
    chosen = st.selectbox(
        label,
        options,
        key=key,
        format_func=lambda ref: labels.get(ref, "Another version (type NAME:VERSION)"),
    )
    if chosen == OTHER:
        return st.text_input(f"{label}: NAME or NAME:VERSION", key=f"{key}_typed").strip()
    return chosen


def models_ui(
    config: DashboardConfig, choice: ServerChoice, status: ServerStatus
) -> tuple[CompareRequest, ComparePlan] | None:
    """Models A and B, the class to explain and the looks; the comparison's plan, or None
    with the reason shown when the choice cannot be compared."""
    st.subheader("2 · Models")
    if not status.live:
        st.caption("The models appear once the server answers.")
        return None
    offered = compare_models.version_refs(status)
    if not offered:
        st.warning("The server hosts no Grad-CAM model to compare.")
        return None
    labels = {ref: ref for ref in offered}
    options = [*offered, OTHER]
    first_a, first_b = compare_models.default_pair(offered, status)
    left, right, looks = st.columns(3, gap="large")
    with left:
        ref_a = _pick("Model A", "compare_a", options, labels, first_a)
    with right:
        ref_b = _pick("Model B", "compare_b", options, labels, first_b)
    attempt = st.session_state.get("attempt", 0)
    try:
        parsed = [ModelRef.parse(ref) for ref in (ref_a, ref_b)]
        info_a, info_b = (version_info(choice.url, str(ref), attempt, config) for ref in parsed)
    except GradcamError as error:
        problem_ui(str(error))
        return None
    shared = compare_models.shared_class_names(info_a, info_b)
    with left:
        target = st.radio(
            "Class to explain",
            ["predicted", "class"],
            format_func={"predicted": "Each model's own prediction", "class": "A class"}.get,
            key="compare_target",
            disabled=not shared,
        )
    with right:
        if target == "class" and shared:
            target = st.selectbox("Class (both models know it)", shared, key="compare_class")
        else:
            target = "predicted"
    with looks:
        colormaps = list(COLORMAPS)
        colormap = st.selectbox(
            "Colour map",
            colormaps,
            index=colormaps.index(jobs.DEFAULTS.composition.colormap),
            key="compare_colormap",
        )
        scopes = list(compare_models.SCOPES)
        scope = st.radio(
            "Normalisation",
            scopes,
            index=scopes.index(jobs.DEFAULTS.scope) if jobs.DEFAULTS.scope in scopes else 0,
            format_func=compare_models.SCOPES.get,
            key="compare_scope",
        )
    request = CompareRequest(
        a=str(parsed[0]), b=str(parsed[1]), target=target, colormap=colormap, scope=scope
    )
    try:
        plan = compare_models.plan(request, info_a, info_b)
    except GradcamError as error:
        problem_ui(str(error))
        return None
    sides_ui(plan)
    for note in plan.notes:
        st.warning(note, icon=":material/info:")
    if request.a == request.b:
        st.info("A and B are the same model: every measure will show full agreement.")
    return request, plan


def problem_ui(message: str) -> None:
    with st.container(key="compare-problem"):
        st.error(f"**These two cannot be compared:** {message}", icon=":material/block:")


def _side_text(side: Side) -> str:
    info = side.info
    layer = next(lay for lay in info.layers if lay.name == side.panel.layer)
    method = servers.method_name(info.methods[side.panel.method_index])
    return (
        f"**{side.label}** · input {info.input_width}x{info.input_height} · "
        f"{info.num_classes} classes · map: {layer.name} ({layer.height}x{layer.width}), {method}"
    )


def sides_ui(plan: ComparePlan) -> None:
    st.caption(f"A: {_side_text(plan.a)}  \nB: {_side_text(plan.b)}")


# --------------------------------------------------------------------------- run


def stop_run() -> None:
    state = st.session_state
    run: CompareRun | None = state.pop(RUN, None)
    if run is not None:
        run.stop()
    state[STOPPED] = True


def run_again() -> None:
    st.session_state["compare_again"] = True


def run_ui(
    config: DashboardConfig,
    folder: Path,
    choice: ServerChoice,
    source: Input | None,
    chosen: tuple[CompareRequest, ComparePlan] | None,
) -> None:
    """The Compare button; while running, progress and Stop; after a failure, why."""
    state = st.session_state
    st.subheader("3 · Run")
    if state.pop(STOPPED, False):
        st.info("The comparison was stopped.", icon=":material/stop_circle:")
    if source is None:
        st.caption("A comparison runs on an uploaded file or a sample clip.")
    ready = source is not None and source.usable and chosen is not None
    clicked = st.button(
        "Compare",
        type="primary",
        disabled=not ready or running(),
        key="compare_start",
        icon=":material/compare:",
    )
    again = state.pop("compare_again", False)
    if (clicked or again) and ready and not running():
        assert source is not None and chosen is not None
        start(config, folder, choice, source, *chosen)
    if running():
        progress_ui(config)
    elif FAILED in state:
        failure_ui(state[FAILED].failure)


def start(
    config: DashboardConfig,
    folder: Path,
    choice: ServerChoice,
    source: Input,
    request: CompareRequest,
    plan: ComparePlan,
) -> None:
    """Start the comparison in the background; the progress fragment follows it."""
    assert source.path is not None and source.summary is not None
    discard()
    connection = config.connection()
    source_path = source.path

    def make_servers(on_retry):
        return tuple(
            servers.job_server(choice.url, ref, config.retry_s, connection, on_retry, config.wire)
            for ref in (request.a, request.b)
        )

    def finish(out: CompareOutput) -> None:
        out.extras["strip"] = media.extract_frames_later(
            source_path, out.output, out.folder / "frames", out.frames
        )

    run = CompareRun(
        make_servers,
        request,
        plan,
        source.path,
        new_subfolder(folder, "compare-"),
        source.summary.is_image,
        max_frames=config.limits.max_frames,
        finish=finish,
    )
    st.session_state[RUN] = run.start()
    when_session_ends(st.session_state, run.cancel.set)


@st.fragment(run_every=PROGRESS_REFRESH_S)
def progress_ui(config: DashboardConfig) -> None:
    """The running comparison's progress, a notice while the server does not answer, Stop."""
    state = st.session_state
    run: CompareRun | None = state.get(RUN)
    if run is None:
        st.rerun()
        return
    snapshot = run.snapshot()
    if snapshot.finished:
        state.pop(RUN, None)
        if run.result is not None:
            state[RESULT] = run.result
        elif run.failure is not None:
            state[FAILED] = run
        else:
            shutil.rmtree(run.folder, ignore_errors=True)
            state[STOPPED] = True
        st.rerun()
    fraction, text = snapshot.progress_bar()
    st.progress(fraction, text=f"Both models · {text}")
    if snapshot.outage is not None:
        st.warning(
            "**The server is not answering.** The page keeps retrying until "
            f"{snapshot.outage.until_clock}. "
            f"({snapshot.outage.problem})",
            icon=":material/cloud_off:",
        )
    st.button("Stop", on_click=stop_run, key="compare_stop", icon=":material/stop:")


def failure_ui(failure: Failure) -> None:
    of = f" of {failure.total}" if failure.total else ""
    with st.container(key="compare-failed"):
        st.error(
            f"**The comparison failed:** {failure.message} "
            f"({failure.frames_done}{of} frames were done).",
            icon=":material/error:",
        )
        st.button("Try again", key="compare_retry", type="primary", on_click=run_again)


# --------------------------------------------------------------------------- result


def _frames(run: CompareOutput) -> list[FrameComparison]:
    if "frames" not in run.extras:
        run.extras["frames"] = read_comparisons(run.predictions)
    return run.extras["frames"]  # type: ignore[return-value]


def _side_maps(run: CompareOutput, side: int) -> np.ndarray:
    """One side's raw maps of its shown layer and method: (frames, h, w)."""
    key = f"maps{side}"
    if key not in run.extras:
        panel = (run.plan.a, run.plan.b)[side].panel
        with np.load(run.maps[side]) as data:
            run.extras[key] = data[panel.layer][:, panel.method_index]
    return run.extras[key]  # type: ignore[return-value]


def summary_ui(run: CompareOutput) -> None:
    """The summary figures: agreement rate, mean and worst of each measure."""
    s = run.summary
    rate = "n/a" if s.agreement_rate is None else f"{s.agreement_rate:.0%}"
    with st.container(key="compare-summary", horizontal=True):
        st.metric("Top-1 agreement", rate, help="Frames whose top classes are the same name.")
        st.metric(
            "Map correlation",
            f"{s.map_correlation.mean:.3f}",
            f"worst {s.map_correlation.worst:.3f} (frame {s.map_correlation.worst_frame})",
            delta_color="off",
            help="Pearson correlation of the two raw maps, mean over the frames.",
        )
        st.metric(
            "Hottest-20% IoU",
            f"{s.hot_iou.mean:.3f}",
            f"worst {s.hot_iou.worst:.3f} (frame {s.hot_iou.worst_frame})",
            delta_color="off",
            help="Overlap of the hottest fifth of each map, mean over the frames.",
        )
        st.metric(
            "Map distance",
            f"{s.map_distance.mean:.3f}",
            f"worst {s.map_distance.worst:.3f} (frame {s.map_distance.worst_frame})",
            delta_color="off",
            help="Earth mover's distance between the maps, in frame sides (0: the same).",
        )
        st.metric("Frames that differ", f"{s.differing_frames} of {s.frames}")
    for note in s.notes:
        st.caption(note)


def inspect(key: str, frame: int) -> None:
    st.session_state[key] = frame


def result_ui(run: CompareOutput) -> None:
    """The side-by-side result, the summary, the agreement over time, the worst frames, the
    inspector and the downloads."""
    st.subheader("4 · Comparison")
    st.caption(
        f"A: {run.request.a} | B: {run.request.b} · {run.frames} frame(s) in "
        f"{run.seconds:.1f} s ({run.fps:.1f} frames/s)"
    )
    summary_ui(run)
    with st.container(key="compare-media"):
        if run.is_image:
            st.image(str(run.output))
        else:
            st.video(str(run.output))
    frames = _frames(run)
    key = f"compare-inspect:{run.folder.name}"
    index = min(max(int(st.session_state.get(key, 0)), 0), len(frames) - 1)
    if len(frames) > 1:
        with st.container(key="agreement-timeline"):
            st.markdown("**Agreement over the clip** (red: the top classes differ)")
            st.altair_chart(compare_charts.agreement_chart(frames, frames[index].time))
        worst_ui(run, frames, key)
    strip: Future[media.FrameStrip] = run.extras["strip"]  # type: ignore[assignment]
    if strip.done():
        inspector_ui(run, frames, key)
    else:
        inspector_pending_ui(strip)
    downloads_ui(run)


def worst_ui(run: CompareOutput, frames: list[FrameComparison], key: str) -> None:
    """The worst frames (largest map distance first), each a button into the inspector."""
    by_frame = {f.frame: f for f in frames}
    with st.container(key="worst-frames"):
        st.markdown("**Worst frames** (largest map distance first; click to inspect)")
        columns = st.columns(2)
        for rank, frame in enumerate(run.summary.worst_frames):
            if frame not in by_frame:
                continue
            columns[rank % 2].button(
                compare_charts.worst_frame_label(by_frame[frame]),
                key=f"worst-{frame}",
                on_click=inspect,
                args=(key, frame),
                width="stretch",
            )


@st.fragment(run_every=INSPECTOR_POLL_S)
def inspector_pending_ui(strip: Future[media.FrameStrip]) -> None:
    if strip.done():
        st.rerun()
    st.caption("Preparing the frame inspector...")


def inspector_ui(run: CompareOutput, frames: list[FrameComparison], key: str) -> None:
    """A frame: the original, A | B, both raw maps, both top fives and the measures."""
    try:
        strip = run.extras["strip"].result()  # type: ignore[attr-defined]
    except Exception as error:
        st.caption(f"The frame inspector is not available: {error}")
        return
    with st.container(key="compare-inspector"):
        st.markdown("**Frame inspector**")
        if len(frames) > 1:
            index = st.slider("Frame", 0, strip.frames - 1, key=key, help="Every frame")
        else:
            index = 0
        index = strip.clamp(index)
        f = frames[min(index, len(frames) - 1)]
        agree = {True: "same top class", False: "other top classes", None: "no shared class"}
        st.caption(
            f"Frame {f.frame} · {f.time:.2f} s · {agree[f.top1_agree]} · correlation "
            f"{f.agreement.correlation:.3f} · IoU {f.agreement.hot_iou:.3f} · distance "
            f"{f.agreement.distance:.3f}"
        )
        original, pair = st.columns([1, 2])
        original.image(
            str(strip.original(index)), caption=f"Original · frame {index}", width="stretch"
        )
        pair.image(str(strip.result(index)), caption="A | B", width="stretch")
        cells = st.columns(4)
        for side, (plan_side, prediction) in enumerate(((run.plan.a, f.a), (run.plan.b, f.b))):
            name = "AB"[side]
            raw = _side_maps(run, side)
            if index < len(raw):
                cells[2 * side].image(
                    media.map_picture(raw[index], run.request.colormap),
                    caption=f"{name}: {plan_side.label} · {plan_side.panel.layer} · "
                    f"max {raw[index].max():.3g}",
                    width="stretch",
                )
            with cells[2 * side + 1]:
                st.altair_chart(charts.top5_chart(charts.frame_top5(prediction)))
                st.caption(f"{name} explained: **{prediction.get('explained_name', '?')}**")


def downloads_ui(run: CompareOutput) -> None:
    """Download buttons: the side-by-side result, the per-frame JSONL, the summary JSON."""
    video, lines, summary = st.columns(3)
    kind, mime = ("Image", "image/png") if run.is_image else ("Video (MP4)", "video/mp4")
    video.download_button(
        kind, run.output.read_bytes, run.output.name, mime, key="dl_compare_video",
        on_click="ignore",
    )  # fmt: skip
    lines.download_button(
        "Comparison (JSONL)",
        run.predictions.read_bytes,
        "compare.jsonl",
        "application/jsonl",
        key="dl_compare_jsonl",
        on_click="ignore",
    )
    summary.download_button(
        "Summary (JSON)",
        run.summary_path.read_bytes,
        "compare.json",
        "application/json",
        key="dl_compare_summary",
        on_click="ignore",
    )


# --------------------------------------------------------------------------- page


def compare_ui(
    config: DashboardConfig,
    folder: Path,
    choice: ServerChoice,
    status: ServerStatus,
    source: Input | None,
) -> None:
    """The compare mode below the input: models, run, and the result."""
    chosen = models_ui(config, choice, status)
    run_ui(config, folder, choice, source, chosen)
    result = st.session_state.get(RESULT)
    shown = result is not None and source is not None and source.path == result.source
    if shown and not running():
        result_ui(result)
