"""The page's Live mode: pick one of the operator's live sources, Start, watch the overlaid
frames update in place with the last minute's top classes, latency and skipped frames, Stop,
and download the recording. Where the operator allows several streams per session, Add puts
more sources beside the first and Remove ends any of them while the others go on."""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from gradcam_client.live.job import LiveEvent, LiveSettings, LiveStats
from gradcam_client.live.output import segment_path
from gradcam_client.live.streams import LiveStreams
from gradcam_dashboard import charts, servers
from gradcam_dashboard.background import Phase
from gradcam_dashboard.config import (
    ENV_LIVE_SOURCES,
    DashboardConfig,
    LiveSourceChoice,
    ServerChoice,
    visitor_source_problem,
)
from gradcam_dashboard.jobs import RunRequest
from gradcam_dashboard.live_runner import (
    PREDICTIONS,
    RATE_WINDOW_S,
    RECORDING,
    LiveSession,
    LiveSlots,
    LiveView,
)
from gradcam_dashboard.sessions import new_subfolder, when_session_ends

FRAME_REFRESH_S = 0.5
CHART_REFRESH_S = 2.0
CHART_POINTS = 240
"""Frames drawn in the last minute's chart at most (evenly thinned)."""

OTHER = "\u2026 another address"
WARNING_EVENTS = ("lost", "gave-up", "server", "budget")


@st.cache_resource(show_spinner=False)
def live_slots(limit: int) -> LiveSlots:
    """The live streams of this dashboard (one object per server process)."""
    return LiveSlots(limit)


def segments(folder: Path) -> list[Path]:
    """The recording files of a live stream, in order (``live.mp4``, ``live-2.mp4``, ...)."""
    found: list[Path] = []
    while (path := segment_path(folder / RECORDING, len(found))).is_file():
        found.append(path)
    return found


def current() -> LiveSession | None:
    return st.session_state.get("live_run")


def discard() -> None:
    """Stop this session's live streams (if any) and remove their files once they ended."""
    session: LiveSession | None = st.session_state.pop("live_run", None)
    if session is not None:
        session.discard()


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


def live_settings(config: DashboardConfig) -> LiveSettings:
    """The page's live streams: within the upload limits (duration, frame size, frame rate)
    and the recording budget (a visitor's address also goes through the source guard, stream
    by stream: `LiveSession`)."""
    limits = config.limits
    return LiveSettings(
        duration=limits.max_seconds,
        max_size=limits.max_resolution,
        max_fps=limits.max_fps,
        max_bytes=int(config.live_recording_mb * 2**20),
    )


def start_live(
    config: DashboardConfig,
    folder: Path,
    server: ServerChoice,
    source: LiveSourceChoice,
    request: RunRequest,
) -> str | None:
    """Start this session's live streams in the background, `source` the first; None, or why
    not (the dashboard already runs as many streams as it allows)."""
    state = st.session_state
    settings = request.job_settings()
    connection = config.connection()

    def make_streams(on_frame, on_event, on_end, on_retry) -> LiveStreams:
        client = servers.job_server(
            server.url, request.model, config.retry_s, connection, on_retry, config.wire
        )
        return LiveStreams(
            client,
            settings,
            live_settings(config),
            on_frame=on_frame,
            on_event=on_event,
            on_end=on_end,
        )

    session = LiveSession(
        make_streams,
        new_subfolder(folder, "live-"),
        live_slots(config.max_live_jobs),
        capacity=config.live_streams_per_session,
        guard=config.source_guard(),
    )
    problem = session.add(source)
    if problem is not None:
        session.discard()
        return problem
    discard()  # the previous streams and their files
    state["live_run"] = session
    state["live_model"] = request.model
    when_session_ends(state, _stop_if_running, weakref.ref(session))
    return None


def _stop_if_running(ref: weakref.ref[LiveSession]) -> None:
    """Stop the streams when their browser session ends (a weak reference: ended sessions
    are not kept)."""
    session = ref()
    if session is not None:
        session.stop("the session ended")


def stop_live() -> None:
    """The Stop button: ask every stream to end; the page follows them until they have."""
    session = current()
    if session is not None:
        session.stop()


def remove_stream(key: str) -> None:
    """A stream's Remove button: it ends, the others go on."""
    session = current()
    if session is not None:
        session.remove(key)


def forget_stream(key: str) -> None:
    """An ended stream's Close button: its panel and files go."""
    session = current()
    if session is not None:
        session.forget(key)


def refusal(problem: str) -> None:
    """Why a stream did not start, as a warning."""
    st.warning(f"{problem[:1].upper()}{problem[1:]}.", icon=":material/hourglass:")


def live_ui(
    config: DashboardConfig,
    folder: Path,
    server: ServerChoice,
    source: LiveSourceChoice | None,
    request: RunRequest | None,
    touch: Callable[[], None],
) -> None:
    """Start, Add and Stop, then a panel per stream (updated in place while it runs)."""
    st.subheader("3 · Live")
    session = current()
    running = session is not None and not session.finished
    ready = source is not None and request is not None
    several = config.live_streams_per_session > 1
    with st.container(horizontal=True):
        start = st.button(
            "Start",
            type="primary",
            disabled=not ready or running,
            key="live_start",
            icon=":material/play_arrow:",
        )
        add = several and running and add_button(config, session, source)
        if running:
            st.button("Stop", on_click=stop_live, key="live_stop", icon=":material/stop:")
    if start and ready and not running:
        assert source is not None and request is not None
        problem = start_live(config, folder, server, source, request)
        if problem is None:
            st.rerun()  # redraw Start as disabled
        refusal(problem)
    if add and session is not None and source is not None:
        problem = session.add(source)
        if problem is None:
            st.rerun()  # the new stream's panel
        refusal(problem)
    session = current()
    if session is None:
        return
    if several and not session.finished:
        st.caption(
            f"{len(session.running())} of {config.live_streams_per_session} streams running. "
            "They share one server connection and the model and looks they started with; "
            "pick another source above to add it."
        )
    panels_ui(session, config.live_streams_per_session, touch)


def add_button(
    config: DashboardConfig, session: LiveSession | None, source: LiveSourceChoice | None
) -> bool:
    """The Add button for the source picked above; whether it was clicked."""
    running = [] if session is None else session.running()
    full = len(running) >= config.live_streams_per_session
    taken = source is not None and source.name in running
    return st.button(
        "Add a stream" if source is None else f"Add {source.name}",
        disabled=source is None or full or taken,
        key="live_add",
        icon=":material/add:",
        help=f"Remove a stream first: this page runs {config.live_streams_per_session} at most."
        if full
        else "Running already."
        if taken
        else "Explain this source too, beside the others.",
    )


# --------------------------------------------------------------------------- the panels


def panels_ui(session: LiveSession, capacity: int, touch: Callable[[], None]) -> None:
    """A panel per stream: one wide panel when a session runs one stream, else side by side
    (a running stream's panel redraws on its own; an ended one is drawn once)."""
    views = session.views()
    columns = min(capacity, 3)
    for row in range(0, len(views), columns):
        places = st.columns(columns, gap="medium") if columns > 1 else [st.container()]
        for place, view in zip(places, views[row : row + columns], strict=False):
            with place:
                if view.finished:
                    panel(session, view, several=capacity > 1)
                else:
                    stream_fragment(view.key, capacity > 1, touch)
                    chart_fragment(view.key)


@st.fragment(run_every=FRAME_REFRESH_S)
def stream_fragment(key: str, several: bool, touch: Callable[[], None]) -> None:
    """A running stream's panel, redrawn on its own; the whole page follows once it ended."""
    session = current()
    view = None if session is None else session.view(key)
    if session is None or view is None or view.finished:
        st.rerun()
        return
    touch()
    panel(session, view, several)


def panel(session: LiveSession, view: LiveView, several: bool) -> None:
    """Status, the newest overlaid frame, counters and the source's events; Remove (several
    streams) while it runs, and after it ended the chart and its files."""
    label = f"{view.name} · {st.session_state.get('live_model', '')}"
    status_ui(view, label)
    if several and not view.finished:
        st.button(
            "Remove",
            on_click=remove_stream,
            args=(view.key,),
            key=f"live_remove_{view.key}",
            icon=":material/close:",
            help="End this stream; the others go on.",
        )
    if several:
        picture = figures = st.container()
    else:
        picture, figures = st.columns([3, 2], gap="large")
    with picture, st.container(key=f"live-frame-{view.key}"):
        if view.frame is not None:
            record = view.frame.record
            caption = (
                f"frame {view.frame.index} · {record['time']:.1f} s · "
                f"{record['class_name']} {record['score']:.2f}"
            )
            picture_rgb = session.rgb(view.key, view.frame)
            st.image(picture_rgb, caption=caption, output_format="JPEG", width="stretch")
        elif not view.finished:
            st.caption("Waiting for the first frame...")
    with figures:
        stats_ui(view.key, view.stats, view.recent_fps())
        events_ui(view.events)
    if view.finished:
        chart_ui(view)
        recording_ui(view, several)
        if several:
            st.button(
                "Close",
                on_click=forget_stream,
                args=(view.key,),
                key=f"live_forget_{view.key}",
                icon=":material/delete:",
                help="Remove this stream's panel and files.",
            )


def status_ui(view: LiveView, label: str) -> None:
    """One line: opening, live, stopping, how it ended, or why it failed."""
    if view.phase == Phase.STARTING:
        st.info(f"Opening {label}...", icon=":material/hourglass_top:")
    elif view.phase == Phase.RUNNING:
        st.success(f"Live: {label}", icon=":material/sensors:")
    elif view.phase == Phase.STOPPING:
        st.info(f"Stopping {label}...", icon=":material/hourglass_bottom:")
    elif view.phase == Phase.FAILED:
        with st.container(key=f"live-failed-{view.key}"):
            st.error(f"**The live stream failed:** {view.error}", icon=":material/error:")
    elif view.result is not None:
        st.info(
            f"**Ended ({view.result.ended}):** {view.result.stats.summary()}",
            icon=":material/stop_circle:",
        )
    else:
        st.info(f"{view.name} was stopped before it opened.", icon=":material/stop:")


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.0f} ms"


def stats_ui(key: str, stats: LiveStats | None, fps: float | None) -> None:
    """Frames explained and skipped, frames/s (recent), latency p50 and p95."""
    with st.container(key=f"live-stats-{key}"):
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
def chart_fragment(key: str) -> None:
    """A stream's last minute, redrawn less often than its frame."""
    session = current()
    view = None if session is None else session.view(key)
    if view is not None:
        chart_ui(view)


def chart_ui(view: LiveView) -> None:
    """The top classes' probabilities over the last minute."""
    with st.container(key=f"live-chart-{view.key}"):
        st.markdown("**Top classes over the last minute**")
        records = charts.thinned(view.records, CHART_POINTS)
        if records:
            st.altair_chart(charts.timeline_chart(charts.timeline_data(records)))
        else:
            st.caption("No frames explained yet.")


def recording_ui(view: LiveView, several: bool) -> None:
    """After a stream ended (also a failed one): its recording (one file per time the source
    was reopened) and its predictions, to watch and download."""
    recordings = [path for path in segments(view.folder) if path.stat().st_size]
    predictions = view.folder / PREDICTIONS
    if not recordings and not predictions.is_file():
        return
    if several:
        video = files = st.container()
    else:
        video, files = st.columns([3, 2], gap="large", vertical_alignment="bottom")
    if recordings:
        video.video(str(recordings[0]))
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", view.name).strip("_.")[:40] or "live"
    with files:
        for number, path in enumerate(recordings):
            st.download_button(
                f"Recording {number + 1} (MP4)" if len(recordings) > 1 else "Recording (MP4)",
                path.read_bytes,
                f"{stem}-{path.name}",
                "video/mp4",
                key=f"live_dl_{view.key}_{number}",
                on_click="ignore",
            )
        if predictions.is_file() and predictions.stat().st_size:
            st.download_button(
                "Predictions (JSONL)",
                predictions.read_bytes,
                f"{stem}-{PREDICTIONS}",
                "application/jsonl",
                key=f"live_dl_{view.key}_predictions",
                on_click="ignore",
            )
