"""The sidebar's server panel: the operator's servers, their state, their models and load."""

from __future__ import annotations

import time

import streamlit as st

from gradcam_dashboard import (
    charts,
    compare_mode,
    metrics,
    servers,
)
from gradcam_dashboard.config import DashboardConfig, ServerChoice
from gradcam_dashboard.runner import FramesRun, Snapshot
from gradcam_dashboard.servers import ServerStatus

LOAD_REFRESH_S = 5
STATUS_REFRESH_S = 1
LOAD_HISTORY = 60
STATUS_TTL_S = 4
METRICS_TIMEOUT_S = 1.5


@st.cache_data(ttl=STATUS_TTL_S, show_spinner=False, max_entries=32)
def server_status(url: str, attempt: int, _config: DashboardConfig) -> ServerStatus:
    """The server's status, re-read at most every few seconds (or at once on a new attempt).

    Only addresses the configuration allows reach this function.
    """
    return servers.probe_server(url, _config.connection())


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
        until = snapshot.outage.until_clock
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
    run: FramesRun | None = state.get("active_run") or state.get(compare_mode.RUN)
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
