"""The page's Camera mode: the visitor's own camera over WebRTC, each frame explained by the
server and the overlay sent back to the page as it is made; after Stop, the recording and the
predictions to download.

streamlit-webrtc carries the frames: its callbacks run on its own thread and only hand the
newest frame to the session's `CameraRun` (see `camera`) and return its newest overlay, so the
video never waits for the server. `CameraSlots` bounds the cameras of one dashboard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from gradcam_dashboard import servers
from gradcam_dashboard.background import Phase
from gradcam_dashboard.camera import CameraRun, CameraView
from gradcam_dashboard.config import DashboardConfig, ServerChoice
from gradcam_dashboard.jobs import RunRequest
from gradcam_dashboard.live_runner import LiveSlots
from gradcam_dashboard.sessions import new_subfolder, when_session_ends
from gradcam_dashboard.webrtc_network import restrict_host_addresses, rtc_configuration

STATUS_REFRESH_S = 0.5
FINISH_WAIT_S = 10.0
"""How long the page waits for a stopped run to close its files before offering them."""

CAMERA_CONSTRAINTS = {
    "video": {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"max": 30}},
    "audio": False,
}
"""What the page asks of the camera: VGA is plenty for a 224x224 model, and cheap to send."""


@st.cache_resource(show_spinner=False)
def camera_slots(limit: int) -> LiveSlots:
    """The cameras of this dashboard (one object per server process)."""
    return LiveSlots(limit)


@st.cache_resource(show_spinner=False)
def host_addresses(addresses: tuple[str, ...]) -> tuple[str, ...]:
    """Offer only the operator's addresses for WebRTC media (once per server process)."""
    restrict_host_addresses(addresses)
    return addresses


def notice_picture(image: np.ndarray, text: str) -> np.ndarray:
    """The camera's frame dimmed, with one line of text across it."""
    picture = (image.astype(np.uint16) * 2 // 5).astype(np.uint8)
    height, width = picture.shape[:2]
    scale = max(0.4, width / 1100)
    thickness = max(1, round(scale * 2))
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = (max(4, (width - w) // 2), (height + h) // 2)
    cv2.putText(
        picture,
        text,
        origin,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return picture


class CameraFeed:
    """Between streamlit-webrtc's callbacks (its own thread) and one session's camera runs.

    The page calls `prepare` on every script run with what a new run should be (the current
    server and settings); the camera's first frame after a start begins that run.
    """

    def __init__(self, slots: LiveSlots) -> None:
        self.slots = slots
        self._lock = threading.Lock()
        self._make_run: Callable[[Callable[[], None]], CameraRun] | None = None
        self._run: CameraRun | None = None  # the current run, or the last one
        self._live = False  # the camera is connected and its run going on
        self._refused = False
        self._sent: tuple[int, av.VideoFrame] | None = None

    # -- the page's side

    def prepare(self, make_run: Callable[[Callable[[], None]], CameraRun] | None) -> None:
        """How to make the next run (given the callback that frees its slot); None: none."""
        with self._lock:
            self._make_run = make_run

    @property
    def run(self) -> CameraRun | None:
        with self._lock:
            return self._run

    @property
    def connected(self) -> bool:
        """A camera is connected (its run going on, or refused)."""
        with self._lock:
            return self._live

    @property
    def refused(self) -> bool:
        """The last start found every camera slot of the dashboard taken."""
        with self._lock:
            return self._refused

    def stop(self, reason: str = "stopped") -> None:
        """End the current run (its files are kept)."""
        with self._lock:
            run, self._live = self._run, False
        if run is not None:
            run.stop(reason)

    # -- streamlit-webrtc's side

    async def on_frames(self, frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        """The queued camera frames: the newest goes to the run; the newest overlay back."""
        arrived = time.monotonic()
        newest = frames[-1]
        run = self._current_run()
        image = newest.to_ndarray(format="rgb24")
        if run is None:
            text = (
                "every camera of this dashboard is taken"
                if self.refused
                else "not explained: see the page"
            )
            return [av.VideoFrame.from_ndarray(notice_picture(image, text), format="rgb24")]
        run.offer(image, arrived, superseded=len(frames) - 1)
        return [self._picture(run, image)]

    def on_ended(self) -> None:
        """The camera's track ended (Stop, or the connection was lost)."""
        self.stop("stopped")

    def _current_run(self) -> CameraRun | None:
        """The run of the connected camera, started on its first frame (None: refused, or
        no settings)."""
        with self._lock:
            if self._live and self._run is not None:
                return self._run if not self._run.view().finished else None
            if self._live or self._make_run is None:
                return None
            self._live = True
            if not self.slots.acquire():
                self._refused = True
                return None
            self._refused = False
            self._run = self._make_run(self.slots.release).start()
            self._sent = None
            return self._run

    def _picture(self, run: CameraRun, image: np.ndarray) -> av.VideoFrame:
        """What the page shows: the newest overlay; the camera itself, dimmed, before the
        first one or after the run failed."""
        view = run.view()
        if view.phase == Phase.FAILED:
            return av.VideoFrame.from_ndarray(
                notice_picture(image, "not explained: see the page"), format="rgb24"
            )
        newest = run.overlay()
        if newest is None:
            return av.VideoFrame.from_ndarray(notice_picture(image, "starting..."), format="rgb24")
        index, overlay = newest
        with self._lock:
            if self._sent is None or self._sent[0] != index:
                self._sent = (index, av.VideoFrame.from_ndarray(overlay, format="rgb24"))
            return self._sent[1]


def feed(config: DashboardConfig) -> CameraFeed:
    """This session's camera feed (stopped when the session ends)."""
    state = st.session_state
    current: CameraFeed | None = state.get("camera_feed")
    if current is None:
        current = state["camera_feed"] = CameraFeed(camera_slots(config.max_cameras))
        when_session_ends(state, current.stop, "the session ended")
    return current


def discard() -> None:
    """Stop this session's camera run (leaving the Camera mode)."""
    current: CameraFeed | None = st.session_state.get("camera_feed")
    if current is not None:
        current.stop()


def run_factory(
    config: DashboardConfig, folder: Path, server: ServerChoice, request: RunRequest
) -> Callable[[Callable[[], None]], CameraRun]:
    """How a camera run is made with the page's current server and settings."""
    connection = config.connection()
    settings = request.job_settings()
    limits = config.limits

    def make(on_end: Callable[[], None]) -> CameraRun:
        return CameraRun(
            lambda on_retry: servers.job_server(
                server.url, request.model, config.retry_s, connection, on_retry, config.wire
            ),
            settings,
            new_subfolder(folder, "camera-"),
            max_size=limits.max_resolution,
            max_bytes=int(config.live_recording_mb * 2**20),
            duration=limits.max_seconds,
            on_end=on_end,
        )

    return make


# --------------------------------------------------------------------------- the page


def camera_ui(
    config: DashboardConfig,
    folder: Path,
    server: ServerChoice,
    request: RunRequest | None,
    touch: Callable[[], None],
) -> None:
    """The camera and its overlay, the figures while it runs, the downloads after Stop."""
    st.subheader("3 · Camera")
    host_addresses(config.camera_addresses)
    session_feed = feed(config)
    session_feed.prepare(
        run_factory(config, folder, server, request) if request is not None else None
    )
    slots = camera_slots(config.max_cameras)
    if request is None and not session_feed.connected:
        st.caption("The camera can start once the server answers and the settings are chosen.")
        ended_ui_of(session_feed)
        return
    st.caption(
        "Start camera asks your browser for the camera (refused, it says NotAllowedError: "
        "allow this page to use the camera in the address bar, then start again). Its frames "
        "go to this dashboard and come back with the heat map; frames that arrive while the "
        "server is busy are skipped."
    )
    context = webrtc_streamer(
        key="camera",
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=rtc_configuration(config.camera_ice_servers),
        media_stream_constraints=CAMERA_CONSTRAINTS,
        queued_video_frames_callback=session_feed.on_frames,
        on_video_ended=session_feed.on_ended,
        async_processing=True,
        sendback_audio=False,
        video_html_attrs={"autoPlay": True, "muted": True, "style": {"width": "100%"}},
        translations={"start": "Start camera", "stop": "Stop"},
    )
    if context.state.playing:
        status_fragment(config.max_cameras, touch)
        return
    if not ended_ui_of(session_feed) and slots.running >= slots.limit:
        cap_warning(config.max_cameras)


def ended_ui_of(session_feed: CameraFeed) -> bool:
    """The last run's end and files, once it has closed them; whether there was one."""
    run = session_feed.run
    if run is None:
        return False
    session_feed.stop()
    run.wait(FINISH_WAIT_S)
    ended_ui(run)
    return True


def cap_warning(limit: int) -> None:
    """Every camera slot of the dashboard is taken."""
    with st.container(key="camera-refused"):
        st.warning(
            f"This dashboard already explains {limit} camera(s), the most it "
            "allows at once; please try again in a while.",
            icon=":material/hourglass:",
        )


@st.fragment(run_every=STATUS_REFRESH_S)
def status_fragment(limit: int, touch: Callable[[], None]) -> None:
    """While the camera runs: one status line and the figures."""
    session_feed: CameraFeed | None = st.session_state.get("camera_feed")
    if session_feed is None:
        return
    touch()
    if session_feed.refused:
        cap_warning(limit)
        return
    run = session_feed.run
    if run is None:
        st.info("Waiting for the camera...", icon=":material/hourglass_top:")
        return
    view = run.view()
    status_ui(view)
    stats_ui(view)


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.0f} ms"


def status_ui(view: CameraView) -> None:
    """One line: starting, what the camera shows, the server not answering, or the end."""
    with st.container(key="camera-status"):
        if view.phase == Phase.FAILED:
            st.error(
                f"**The camera run stopped:** {view.error}. Stop the camera for what was "
                "recorded so far.",
                icon=":material/error:",
            )
        elif view.outage is not None:
            st.warning(f"**Not explained:** {view.outage}", icon=":material/cloud_off:")
        elif view.phase == Phase.ENDED:
            st.info(f"**Ended:** {view.ended}.", icon=":material/stop_circle:")
        elif view.class_name is None:
            st.info("Starting: the first frame is on its way to the server...")
        else:
            st.success(
                f"**{view.class_name}** {view.score:.2f} · latency {_ms(view.latency_last)}",
                icon=":material/videocam:",
            )


def stats_ui(view: CameraView) -> None:
    """Frames explained and dropped, latency p50 and p95."""
    with st.container(key="camera-stats"):
        columns = st.columns(4)
        columns[0].metric("Frames explained", f"{view.explained}")
        columns[1].metric(
            "Dropped",
            f"{view.dropped}",
            help=f"Frames that arrived while the server was busy, of {view.received} received.",
        )
        columns[2].metric("Latency p50", _ms(view.latency_p50), help="Arrival to overlay.")
        columns[3].metric("Latency p95", _ms(view.latency_p95))


def ended_ui(run: CameraRun) -> None:
    """After Stop: how it went, the recording and the predictions."""
    view = run.view()
    summary = (
        f"{view.explained} frames explained of {view.received} received, {view.dropped} dropped"
        + (
            f"; latency p50 {_ms(view.latency_p50)}, p95 {_ms(view.latency_p95)}"
            if view.latency_p50 is not None
            else ""
        )
    )
    with st.container(key="camera-ended"):
        if view.phase == Phase.FAILED:
            st.error(
                f"**The camera run stopped:** {view.error} ({summary}).", icon=":material/error:"
            )
        else:
            st.info(f"**Ended ({view.ended}):** {summary}.", icon=":material/stop_circle:")
        recording, predictions = run.recording, run.predictions
        has_video = recording.is_file() and recording.stat().st_size > 0
        has_lines = predictions.is_file() and predictions.stat().st_size > 0
        if not (has_video or has_lines):
            return
        video, files = st.columns([3, 2], gap="large", vertical_alignment="bottom")
        if has_video:
            video.video(str(recording))
            files.download_button(
                "Recording (MP4)",
                recording.read_bytes,
                recording.name,
                "video/mp4",
                key="camera_dl_video",
                on_click="ignore",
            )
        if has_lines:
            files.download_button(
                "Predictions (JSONL)",
                predictions.read_bytes,
                predictions.name,
                "application/jsonl",
                key="camera_dl_predictions",
                on_click="ignore",
            )
