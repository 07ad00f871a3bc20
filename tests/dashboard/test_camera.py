"""The camera's run (`CameraRun`) with a stand-in server, its bridge to streamlit-webrtc
(`CameraFeed`), and the operator's camera settings (config, launcher, ICE)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aioice.ice
import av
import numpy as np
import pytest

from gradcam_client.errors import ServerError
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_client.remote.server import BatchResult, RequestCancelled, RetryNotice
from gradcam_dashboard import launch
from gradcam_dashboard.camera import CameraRun, fit_within
from gradcam_dashboard.camera_view import CameraFeed, notice_picture
from gradcam_dashboard.config import DashboardConfig
from gradcam_dashboard.live_runner import LiveSlots
from gradcam_dashboard.webrtc_network import (
    parse_addresses,
    parse_ice_servers,
    restrict_host_addresses,
    rtc_configuration,
)

INFO = ModelInfo("m", 8, 8, ("cat", "cup", "dog"), (LayerInfo("l", 2, 2),), ("gradcam",), 8)


class StandInServer:
    """Answers each frame with the class of its mean brightness, after `delay` seconds,
    or fails as told; `gate` (when set) holds every answer until it opens."""

    def __init__(self, delay: float = 0.0, fails: Exception | None = None) -> None:
        self.delay, self.fails = delay, fails
        self.gate: threading.Event | None = None
        self.calls = 0
        self.closed = False
        self.on_retry = None

    def model_info(self) -> ModelInfo:
        return INFO

    def infer(self, frames, targets, cancel=None) -> BatchResult:
        self.calls += 1
        if self.gate is not None:
            while not self.gate.wait(0.05):
                if cancel is not None and cancel.is_set():
                    raise RequestCancelled("cancelled")
        if self.fails is not None:
            if self.on_retry is not None:
                self.on_retry(RetryNotice("inference", "m: UNAVAILABLE", False, 0.0))
            raise self.fails
        time.sleep(self.delay)
        n = len(frames)
        probabilities = np.full((n, 3), 0.1, np.float32)
        best = (frames.reshape(n, -1).mean(axis=1) // 100).astype(int).clip(0, 2)
        probabilities[np.arange(n), best] = 0.8
        maps = np.ones((n, 1, 2, 2), np.float32)
        return BatchResult(probabilities, best.astype(np.int32), {"l": maps})

    def close(self) -> None:
        self.closed = True


def make_run(tmp_path, server: StandInServer, **kwargs) -> CameraRun:
    def make_server(on_retry):
        server.on_retry = on_retry
        return server

    return CameraRun(make_server, JobSettings(), tmp_path / "camera-1", **kwargs)


def image(value: int, size=(64, 48)) -> np.ndarray:
    return np.full((size[1], size[0], 3), value, np.uint8)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_frames_are_explained_recorded_and_logged(tmp_path):
    server = StandInServer()
    run = make_run(tmp_path, server).start()
    for count, value in enumerate((20, 150, 250), start=1):
        run.offer(image(value))
        wait_until(lambda count=count: run.view().explained == count)
        time.sleep(0.02)  # frames a little apart, as a camera sends them
    view = run.view()
    assert view.class_name == "dog" and view.phase == "running"
    assert view.latency_p50 is not None and view.latency_p95 >= view.latency_p50
    index, overlay = run.overlay()
    assert index == 2 and overlay.shape == (48, 64, 3)
    run.stop()
    assert run.wait(10)
    view = run.view()
    assert view.phase == "ended" and view.ended == "stopped"
    assert (view.received, view.explained, view.dropped) == (3, 3, 0)
    lines = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    assert [line["class_name"] for line in lines] == ["cat", "cup", "dog"]
    assert all(line["latency_ms"] >= 0 for line in lines)
    with av.open(str(run.recording)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert server.closed


def test_frames_arriving_while_the_server_is_busy_are_dropped_newest_first(tmp_path):
    server = StandInServer()
    server.gate = threading.Event()
    run = make_run(tmp_path, server).start()
    run.offer(image(20))
    wait_until(lambda: server.calls == 1)  # the server holds the first frame
    for value in (100, 110, 120, 250):
        run.offer(image(value))
    run.offer(image(250), superseded=2)  # two more came in the same batch, never offered
    server.gate.set()
    wait_until(lambda: run.view().explained == 2)
    view = run.view()
    assert view.class_name == "dog"  # the newest frame won
    assert (view.received, view.dropped) == (8, 6)
    run.stop()
    run.wait(10)
    assert run.view().received == run.view().explained + run.view().dropped


def test_a_camera_that_stops_sending_ends_its_run_and_keeps_its_files(tmp_path):
    ended = threading.Event()
    run = make_run(tmp_path, StandInServer(), idle_s=0.3, on_end=ended.set).start()
    run.offer(image(20))
    assert ended.wait(10)
    view = run.view()
    assert view.phase == "ended" and view.ended == "the camera stopped sending frames"
    assert run.recording.stat().st_size > 0 and run.predictions.read_text().count("\n") == 1


def test_a_server_that_stays_away_fails_the_run_in_one_line(tmp_path):
    server = StandInServer(fails=ServerError("inference: no answer for 4 s (m: UNAVAILABLE)"))
    run = make_run(tmp_path, server).start()
    run.offer(image(20))
    assert run.wait(10)
    view = run.view()
    assert view.phase == "failed" and view.error == "inference: no answer for 4 s (m: UNAVAILABLE)"
    assert view.outage is None  # the notice is over once the run has ended


def test_the_outage_is_shown_while_the_server_is_retried_and_stop_cancels_it(tmp_path):
    server = StandInServer()
    server.gate = threading.Event()
    run = make_run(tmp_path, server).start()
    run.offer(image(20))
    wait_until(lambda: server.calls == 1)
    server.on_retry(RetryNotice("inference", "m: UNAVAILABLE", False, 0.0))
    assert "the server is not answering (m: UNAVAILABLE)" in run.view().outage
    run.stop()
    assert run.wait(5)  # the request being retried was cancelled
    assert run.view().phase == "ended" and run.view().error is None


def test_the_recording_budget_ends_the_run(tmp_path):
    run = make_run(tmp_path, StandInServer(), max_bytes=1).start()
    run.offer(image(20))
    assert run.wait(10)
    assert run.view().ended.startswith("the recording reached its budget")


def test_large_frames_are_scaled_to_fit_and_resolution_changes_are_recorded(tmp_path):
    assert fit_within(image(1, (1920, 1080)), (1280, 720)).shape == (720, 1280, 3)
    assert fit_within(image(1, (1080, 1920)), (1280, 720)).shape == (1280, 720, 3)
    assert fit_within(image(1, (640, 480)), (1280, 720)).shape == (480, 640, 3)
    run = make_run(tmp_path, StandInServer(), max_size=(64, 48)).start()
    run.offer(image(20, (128, 96)))
    wait_until(lambda: run.view().explained == 1)
    time.sleep(0.02)
    run.offer(image(20, (33, 25)))  # smaller and odd: recorded at the first size
    wait_until(lambda: run.view().explained == 2)
    run.stop()
    run.wait(10)
    with av.open(str(run.recording)) as container:
        sizes = {(f.width, f.height) for f in container.decode(video=0)}
    assert sizes == {(64, 48)}


def test_settings_that_need_the_whole_video_fail_the_run(tmp_path):
    run = CameraRun(lambda _: StandInServer(), JobSettings(target="video"), tmp_path / "c")
    run.start().wait(10)
    assert run.view().phase == "failed" and "no end" in run.view().error


# --------------------------------------------------------------------------- the feed


def camera_frame(value: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(image(value), format="rgb24")


def test_the_feed_starts_a_run_on_the_first_frame_and_sends_the_overlay_back(tmp_path):
    slots = LiveSlots(1)
    feed = CameraFeed(slots)
    server = StandInServer()
    feed.prepare(lambda on_end: make_run(tmp_path, server, on_end=on_end))
    first = asyncio.run(feed.on_frames([camera_frame(20)]))
    assert len(first) == 1 and slots.running == 1
    wait_until(lambda: feed.run.view().explained == 1)
    server.gate = threading.Event()  # no newer overlay until the check is done
    (back,) = asyncio.run(feed.on_frames([camera_frame(30), camera_frame(250)]))
    assert feed.run.view().received == 3
    _, overlay = feed.run.overlay()
    assert np.array_equal(back.to_ndarray(format="rgb24"), overlay)
    server.gate.set()
    feed.on_ended()
    assert feed.run.wait(10)
    wait_until(lambda: slots.running == 0)


def test_the_feed_refuses_a_camera_over_the_dashboard_cap(tmp_path):
    slots = LiveSlots(1)
    assert slots.acquire()  # another visitor's camera
    feed = CameraFeed(slots)
    feed.prepare(lambda on_end: make_run(tmp_path, StandInServer(), on_end=on_end))
    (back,) = asyncio.run(feed.on_frames([camera_frame(200)]))
    assert feed.refused and feed.run is None
    assert back.to_ndarray(format="rgb24").mean() < 200 * 0.5  # dimmed, with a notice
    feed.on_ended()
    slots.release()
    asyncio.run(feed.on_frames([camera_frame(200)]))  # a new start finds the slot free
    assert not feed.refused and feed.run is not None
    feed.stop()
    feed.run.wait(10)


def test_notice_picture_dims_and_writes():
    picture = notice_picture(image(200, (320, 240)), "every camera is taken")
    assert picture.shape == (240, 320, 3) and picture.max() == 255 and picture.min() == 80


# --------------------------------------------------------------------------- settings


def test_camera_settings_from_the_environment():
    config = DashboardConfig.from_env({})
    assert config.camera and config.max_cameras == 2
    assert config.camera_ice_servers == () and config.camera_addresses == ()
    turn = '[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]'
    config = DashboardConfig.from_env(
        {
            "GRADCAM_CAMERA": "0",
            "GRADCAM_MAX_CAMERAS": "5",
            "GRADCAM_CAMERA_ICE_SERVERS": turn,
            "GRADCAM_CAMERA_ADDRESSES": "127.0.0.1, ::1",
        }
    )
    assert not config.camera and config.max_cameras == 5
    assert rtc_configuration(config.camera_ice_servers) == {"iceServers": json.loads(turn)}
    assert config.camera_addresses == ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stun:x", "not JSON"),
        ('{"urls": "stun:x"}', "a JSON list"),
        ('[{"url": "stun:x"}]', "with 'urls'"),
        ('[{"urls": "http://x"}]', "start with stun:"),
        ('[{"urls": "turn:x:3478"}]', "needs 'username' and 'credential'"),
    ],
)
def test_bad_ice_servers_get_one_line(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_ice_servers(text)
    with pytest.raises(ValueError, match="GRADCAM_CAMERA_ICE_SERVERS"):
        DashboardConfig.from_env({"GRADCAM_CAMERA_ICE_SERVERS": text})


def test_addresses_must_be_ip_addresses():
    assert parse_addresses(" 10.0.0.5;192.168.1.2 ") == ("10.0.0.5", "192.168.1.2")
    with pytest.raises(ValueError, match=r"'camera\.local' is not an IP address"):
        parse_addresses("camera.local")


def test_the_launcher_passes_the_camera_options(capsys):
    args = launch.build_parser().parse_args(
        ["--no-camera", "--max-cameras", "3", "--camera-address", "10.0.0.5"]
    )
    env = launch.build_environment(args, base={})
    config = DashboardConfig.from_env(env)
    assert not config.camera and config.max_cameras == 3
    assert config.camera_addresses == ("10.0.0.5",)
    with pytest.raises(SystemExit):
        launch.main(["--max-cameras", "0"])
    assert "--max-cameras" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["--camera-ice-servers", "[1]"])
    assert "GRADCAM_CAMERA_ICE_SERVERS: an ICE server is an object" in capsys.readouterr().err


def test_host_addresses_are_narrowed_in_aioice_and_restored():
    try:
        restrict_host_addresses(("127.0.0.1", "::1"))
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    finally:
        restrict_host_addresses(())
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
