"""The page's Live mode: pick one of the operator's live sources, Start, watch the overlaid
frames update in place with the last minute's top classes, latency and skipped frames, Stop,
and download the recording."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from gradcam_client.live import LiveEvent, LiveJob, LiveSettings, LiveStats
from gradcam_client.live_output import segment_path
from gradcam_dashboard import charts, servers
from gradcam_dashboard.config import (
    ENV_LIVE_SOURCES,
    DashboardConfig,
    LiveSourceChoice,
    ServerChoice,
    visitor_source_problem,
)
from gradcam_dashboard.jobs import RunRequest
from gradcam_dashboard.live_runner import RATE_WINDOW_S, BackgroundLive, LiveSlots, LiveView
from gradcam_dashboard.sessions import new_subfolder

FRAME_REFRESH_S = 0.5
CHART_REFRESH_S = 2.0
CHART_POINTS = 240
"""Frames drawn in the last minute's chart at most (evenly thinned)."""

OTHER = "\u2026 another address"
RECORDING = "live.mp4"
PREDICTIONS = "predictions.jsonl"
WARNING_EVENTS = ("lost", "gave-up", "server", "budget")


@st.cache_resource(show_spinner=False)
def live_slots(limit: int) -> LiveSlots:
    """The live runs of this dashboard (one object per server process)."""
    return LiveSlots(limit)


def segments(folder: Path) -> list[Path]:
    """The recording files of a live run, in order (``live.mp4``, ``live-2.mp4``, ...)."""
    found: list[Path] = []
    while (path := segment_path(folder / RECORDING, len(found))).is_file():
        found.append(path)
    return found


def current() -> BackgroundLive | None:
    return st.session_state.get("live_run")


def discard() -> None:
    """Stop this session's live run (if any) and remove its files once it has ended."""
    live: BackgroundLive | None = st.session_state.pop("live_run", None)
    if live is not None:
        live.discard()


# --------------------------------------------------------------------------- source


def source_ui(config: DashboardConfig) -> LiveSourceChoice | None:
    """The live source to open: one of the operator's (by name), or a typed stream address
    when the operator allows any; how to set sources up when there are none."""
    if not config.live_enabled:
        st.info(
            "No live sources are set up for this dashboard. The operator names the streams "
            "and cameras visitors may open when starting it: `gradcam-dashboard --live-source "
            "door=rtsp://camera/stream` (repeatable) or "
            f'`{ENV_LIVE_SOURCES}="door=rtsp://camera/stream lab=/dev/video0"`.',
            icon=":material/videocam_off:",
        )
        return None
    state = st.session_state
    names = [source.name for source in config.live_sources]
    options = [*names, OTHER] if config.allow_any_source else names
    if state.get("live_source") not in options:  # a value the page never offered
        state["live_source"] = options[0]
    name = st.selectbox(
        "Live source",
        options,
        key="live_source",
        help="The streams and cameras this dashboard is set up for.",
    )
    if name != OTHER:
        return config.live_choice(name)
    url = st.text_input(
        "Stream address", key="live_url", placeholder="rtsp://host:8554/stream"
    ).strip()
    if not url:
        return None
    problem = visitor_source_problem(url)
    if problem is not None:
        st.error(f"This address cannot be opened: {problem}.", icon=":material/block:")
        return None
    return config.live_choice(url)


# --------------------------------------------------------------------------- start and stop


def live_settings(config: DashboardConfig, source: LiveSourceChoice) -> LiveSettings:
    """A page's live run: within the upload limits (duration, frame size, frame rate) and the
    recording budget; a visitor's address through the source guard."""
    limits = config.limits
    return LiveSettings(
        duration=limits.max_seconds,
        max_size=limits.max_resolution,
        max_fps=limits.max_fps,
        max_bytes=int(config.live_recording_mb * 2**20),
        guard=config.source_guard() if source.visitor else None,
    )


def start_live(
    config: DashboardConfig,
    folder: Path,
    server: ServerChoice,
    source: LiveSourceChoice,
    request: RunRequest,
) -> bool:
    """Start a live run in the background (one per session); False when the dashboard
    already runs as many as it allows."""
    state = st.session_state
    slots = live_slots(config.max_live_jobs)
    if not slots.acquire():
        return False
    discard()
    run_folder = new_subfolder(folder, "live-")
    settings = request.job_settings()
    connection = config.connection()

    def make_job(on_frame, on_event, on_retry) -> LiveJob:
        client = servers.job_server(
            server.url, request.model, config.retry_s, connection, on_retry, config.wire
        )
        return LiveJob(
            client,
            source.url,
            output=run_folder / RECORDING,
            predictions=run_folder / PREDICTIONS,
            settings=settings,
            live=live_settings(config, source),
            on_frame=on_frame,
            on_event=on_event,
        )

    live = BackgroundLive(make_job, run_folder, slots, redact=source.redact, visitor=source.visitor)
    state["live_run"] = live.start()
    state["live_label"] = f"{source.name} · {request.model}"
    janitor = state.get("janitor")
    if janitor is not None:  # a session that ends (tab closed) stops its live run too
        weakref.finalize(janitor, _stop_if_running, weakref.ref(live))
    return True


def _stop_if_running(ref: weakref.ref[BackgroundLive]) -> None:
    """Stop a run when its session ends (a weak reference: ended runs are not kept)."""
    live = ref()
    if live is not None:
        live.stop("the session ended")


def stop_live() -> None:
    """The Stop button: ask the run to end; the page follows it until it has."""
    live = current()
    if live is not None:
        live.stop()


def live_ui(
    config: DashboardConfig,
    folder: Path,
    server: ServerChoice,
    source: LiveSourceChoice | None,
    request: RunRequest | None,
    touch: Callable[[], None],
) -> None:
    """Start and Stop, then the live panel (updated in place while the run goes on)."""
    st.subheader("3 · Live")
    live = current()
    running = live is not None and not live.view().finished
    ready = source is not None and request is not None
    clicked = st.button(
        "Start",
        type="primary",
        disabled=not ready or running,
        key="live_start",
        icon=":material/play_arrow:",
    )
    if clicked and ready and not running:
        assert source is not None and request is not None
        if start_live(config, folder, server, source, request):
            st.rerun()  # redraw Start as disabled
        st.warning(
            f"This dashboard already runs {config.max_live_jobs} live source(s), the most it "
            "allows at once; please try again in a while.",
            icon=":material/hourglass:",
        )
    live = current()
    if live is None:
        return
    if live.view().finished:
        panel(live)
    else:
        live_fragment(touch)
        chart_fragment()


# --------------------------------------------------------------------------- the live panel


@st.fragment(run_every=FRAME_REFRESH_S)
def live_fragment(touch: Callable[[], None]) -> None:
    """The running panel, redrawn on its own; the whole page follows once the run ended."""
    live = current()
    if live is None or live.view().finished:
        st.rerun()
        return
    touch()
    panel(live)


def panel(live: BackgroundLive) -> None:
    """Status, the newest overlaid frame, counters and the source's events."""
    view = live.view()
    label = st.session_state.get("live_label", "")
    status_ui(view, label)
    if not view.finished:
        st.button("Stop", on_click=stop_live, key="live_stop", icon=":material/stop:")
    picture, figures = st.columns([3, 2], gap="large")
    with picture, st.container(key="live-frame"):
        if view.frame is not None:
            record = view.frame.record
            caption = (
                f"frame {view.frame.index} · {record['time']:.1f} s · "
                f"{record['class_name']} {record['score']:.2f}"
            )
            picture_rgb = live.rgb(view.frame)
            st.image(picture_rgb, caption=caption, output_format="JPEG", width="stretch")
        elif not view.finished:
            st.caption("Waiting for the first frame...")
    with figures:
        stats_ui(view.stats, view.recent_fps())
        events_ui(view.events)
    if view.finished:
        chart_ui(view)
        recording_ui(live.folder)


def status_ui(view: LiveView, label: str) -> None:
    """One line: opening, live, stopping, how it ended, or why it failed."""
    if view.phase == "opening":
        st.info(f"Opening {label}...", icon=":material/hourglass_top:")
    elif view.phase == "running":
        st.success(f"Live: {label}", icon=":material/sensors:")
    elif view.phase == "stopping":
        st.info(f"Stopping {label}...", icon=":material/hourglass_bottom:")
    elif view.phase == "failed":
        with st.container(key="live-failed"):
            st.error(f"**The live run failed:** {view.error}", icon=":material/error:")
    elif view.result is not None:
        st.info(
            f"**Ended ({view.result.ended}):** {view.result.stats.summary()}",
            icon=":material/stop_circle:",
        )
    else:
        st.info("The live run was stopped before its source opened.", icon=":material/stop:")


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.0f} ms"


def stats_ui(stats: LiveStats | None, fps: float | None) -> None:
    """Frames explained and skipped, frames/s (recent), latency p50 and p95."""
    with st.container(key="live-stats"):
        left, right = st.columns(2)
        if stats is None:
            left.metric("Frames explained", "–")
            right.metric("Skipped", "–")
            return
        left.metric("Frames explained", f"{stats.processed}")
        right.metric(
            "Skipped",
            f"{stats.skipped}",
            help="Frames dropped unexplained to keep up with the source "
            f"({100 * stats.skipped_fraction:.0f} % of {stats.received} received).",
        )
        left.metric("Latency p50", _ms(stats.latency_p50), help="Arrival to composed frame.")
        right.metric("Latency p95", _ms(stats.latency_p95))
        left.metric(
            "Frames/s",
            "–" if fps is None else f"{fps:.1f}",
            help=f"Frames explained per second over the last {RATE_WINDOW_S:g} s.",
        )
        if stats.reconnects:
            right.metric("Reopened", f"{stats.reconnects}")


def events_ui(events: list[LiveEvent]) -> None:
    """The source's recent events, one line each (troubles as warnings)."""
    for event in events:
        if event.kind in ("stopped", "listening"):
            continue  # the status line says it; where the dashboard listens is the operator's
        if event.kind in WARNING_EVENTS:
            st.warning(event.message, icon=":material/warning:")
        else:
            st.caption(event.message)


@st.fragment(run_every=CHART_REFRESH_S)
def chart_fragment() -> None:
    """The last minute's chart, redrawn less often than the frame."""
    live = current()
    if live is not None:
        chart_ui(live.view())


def chart_ui(view: LiveView) -> None:
    """The top classes' probabilities over the last minute."""
    with st.container(key="live-chart"):
        st.markdown("**Top classes over the last minute**")
        records = charts.thinned(view.records, CHART_POINTS)
        if records:
            st.altair_chart(charts.timeline_chart(charts.timeline_data(records)))
        else:
            st.caption("No frames explained yet.")


def recording_ui(folder: Path) -> None:
    """After the run (also a failed one): the recording (one file per time the source was
    reopened) and the predictions, to watch and download."""
    recordings = [path for path in segments(folder) if path.stat().st_size]
    predictions = folder / PREDICTIONS
    if not recordings and not predictions.is_file():
        return
    video, files = st.columns([3, 2], gap="large", vertical_alignment="bottom")
    if recordings:
        video.video(str(recordings[0]))
    with files:
        for number, path in enumerate(recordings):
            st.download_button(
                f"Recording {number + 1} (MP4)" if len(recordings) > 1 else "Recording (MP4)",
                path.read_bytes,
                path.name,
                "video/mp4",
                key=f"live_dl_{number}",
                on_click="ignore",
            )
        if predictions.is_file() and predictions.stat().st_size:
            st.download_button(
                "Predictions (JSONL)",
                predictions.read_bytes,
                "predictions.jsonl",
                "application/jsonl",
                key="live_dl_predictions",
                on_click="ignore",
            )
