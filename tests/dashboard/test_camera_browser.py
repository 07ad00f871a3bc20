"""The Camera mode in a real Chromium whose fake camera plays a clip of scikit-image photos.

Each frame of the clip carries its number as a bar code (`camera_clip`); the overlay the page
shows keeps it, so the page itself tells which camera frame an overlay came from, and the
latency from capture to overlay is read there: the test also shows the camera's own stream
in the page and reads both numbers at the same instant. WebRTC runs on 127.0.0.1 only: no
STUN server, the dashboard offers 127.0.0.1 alone, and Chromium may use loopback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import psutil
import pytest
from browser_support import CHROMIUM_ARGS, chromium
from camera_clip import BAR_MEANS_JS, code_from_means, photo_frames, read_code, write_y4m
from test_browser import (
    TIMEOUT_MS,
    choose,
    healthy,
    running_dashboard,
    screenshot,
    wait_idle,
)
from triton_server import running_triton

from gradcam_client.remote.server import GradcamServer

pytestmark = [pytest.mark.browser, pytest.mark.integration]

MODEL = "efficientnet-lite0"
FPS = 15
PER_PHOTO = 45  # 3 s of each photo, so the clip loops every 6 s
PHOTOS = ("chelsea", "coffee")
SIZE = (480, 360)
CLIP_FRAMES = PER_PHOTO * len(PHOTOS)

CAPTURE_JS = """
(() => {
    window.__pcs = [];
    const Original = window.RTCPeerConnection;
    if (Original) {
        window.RTCPeerConnection = function (...args) {
            const pc = new Original(...args);
            window.__pcs.push(pc);
            return pc;
        };
        window.RTCPeerConnection.prototype = Original.prototype;
        window.RTCPeerConnection.generateCertificate = Original.generateCertificate;
    }
    const media = navigator.mediaDevices;
    if (media && media.getUserMedia) {
        const getUserMedia = media.getUserMedia.bind(media);
        media.getUserMedia = async (constraints) => {
            const stream = await getUserMedia(constraints);
            const video = document.createElement('video');
            video.id = 'camera-itself';
            video.muted = true; video.autoplay = true; video.playsInline = true;
            video.style = 'position:fixed;left:0;top:0;width:48px;height:36px;opacity:0.01';
            video.srcObject = stream;
            document.body.appendChild(video);
            video.play().catch(() => {});
            return stream;
        };
    }
})();
"""

SAMPLE_JS = f"""async () => {{
    const read = {BAR_MEANS_JS};
    const shown = document.querySelector('video:not(#camera-itself)');
    const camera = document.getElementById('camera-itself');
    if (!shown || !camera) return null;
    return {{shown: read(shown), camera: read(camera)}};
}}"""

PAIR_JS = """async () => {
    for (const pc of window.__pcs || []) {
        const stats = await pc.getStats();
        for (const report of stats.values()) {
            if (report.type !== 'candidate-pair' || report.state !== 'succeeded' ||
                !report.nominated) continue;
            const local = stats.get(report.localCandidateId);
            const remote = stats.get(report.remoteCandidateId);
            return {local: local.address || local.ip, remote: remote.address || remote.ip,
                    protocol: local.protocol};
        }
    }
    return null;
}"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[str], list[np.ndarray]]:
    """The fake camera's Y4M clip, which photo each frame shows, and the frames."""
    frames = photo_frames(PHOTOS, PER_PHOTO, SIZE)
    path = write_y4m(tmp_path_factory.mktemp("camera") / "clip.y4m", [f for _, f in frames], FPS)
    return path, [name for name, _ in frames], [image for _, image in frames]


@pytest.fixture(scope="module")
def clip_classes(triton, clip) -> dict[int, set[str]]:
    """The served model's top three classes of every frame of the clip, asked directly."""
    _, _, frames = clip
    server = GradcamServer(triton.urls.grpc, MODEL)
    try:
        info = server.model_info()
        thumbnails = np.stack(
            [
                cv2.resize(f, (info.input_width, info.input_height), interpolation=cv2.INTER_AREA)
                for f in frames
            ]
        )
        result = server.infer(thumbnails, np.full(len(frames), -1, np.int32))
    finally:
        server.close()
    top3 = np.argsort(result.probabilities, axis=1)[:, ::-1][:, :3]
    return {i: {info.class_names[c] for c in row} for i, row in enumerate(top3)}


@pytest.fixture(scope="module")
def own_triton(model_repository, tmp_path_factory):
    """A server of the tiny model that a test may kill."""
    folder = tmp_path_factory.mktemp("own-triton")
    shutil.copytree(model_repository / "tiny", folder / "repository" / "tiny")
    with running_triton(folder / "repository", log_dir=folder) as server:
        yield server


@pytest.fixture(scope="module")
def playwright():
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance, executable


@contextlib.contextmanager
def camera_browser(playwright, clip_path: Path, *extra: str):
    """A Chromium whose camera plays `clip_path`."""
    instance, executable = playwright
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip_path}",
        "--allow-loopback-in-peer-connection",
        *extra,
    ]
    browser = instance.chromium.launch(executable_path=executable, headless=True, args=args)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def browser(playwright, clip):
    with camera_browser(playwright, clip[0], "--use-fake-ui-for-media-stream") as browser:
        yield browser


@pytest.fixture(scope="module")
def camera_dashboard(triton, tmp_path_factory) -> Iterator[tuple[str, Path, int]]:
    """The dashboard (URL, session folders, pid): one camera at a time, media on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("camera-dashboard")
    env = {
        "GRADCAM_URL": triton.urls.grpc,
        "GRADCAM_METRICS_URL": triton.urls.metrics,
        "GRADCAM_DASHBOARD_DIR": str(folder / "sessions"),
        "GRADCAM_MAX_CAMERAS": "1",
        "GRADCAM_CAMERA_ADDRESSES": "127.0.0.1",
        "GRADCAM_CAMERA_ICE_SERVERS": "",
    }
    with running_dashboard(env, folder / "dashboard.log") as url:
        port = int(url.rsplit(":", 1)[1])
        yield url, folder / "sessions", page_server_pid(port)


def page_server_pid(port: int) -> int:
    """The process of the Streamlit server on `port`."""
    for process in psutil.process_iter(["cmdline"]):
        if f"--server.port={port}" in (process.info["cmdline"] or []):
            return process.pid
    raise AssertionError(f"no Streamlit server on port {port}")


def open_camera_page(browser, url: str, model: str = MODEL):
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    context.add_init_script(CAPTURE_JS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_text("1 · Input").wait_for()
    page.get_by_text("Camera", exact=True).click()
    page.get_by_text("3 · Camera").wait_for()
    wait_idle(page)
    page.wait_for_function(
        "() => document.querySelectorAll('input[aria-label=\"Model\"]').length === 1"
    )
    choose(page, "Model", model)
    return context, page


def component(page):
    """The streamlit-webrtc component's frame."""
    page.locator('iframe[title*="webrtc"]').wait_for()
    return page.frame_locator('iframe[title*="webrtc"]')


def component_frame(page):
    for frame in page.frames:
        if "streamlit_webrtc" in frame.url:
            return frame
    raise AssertionError(f"no camera component among {[f.url for f in page.frames]}")


def start_camera(page) -> None:
    component(page).get_by_role("button", name="Start camera").click()


def stop_camera(page) -> None:
    component(page).get_by_role("button", name="Stop").click()


def metric(page, name: str) -> str:
    stats = page.locator(".st-key-camera-stats")
    found = stats.locator('[data-testid="stMetric"]').filter(has_text=name)
    return found.locator('[data-testid="stMetricValue"]').inner_text()


def wait_explained(page, at_least: int) -> None:
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(Exception):
            if int(metric(page, "Frames explained")) >= at_least:
                return
        assert time.monotonic() < deadline, f"fewer than {at_least} frames explained in 90 s"
        page.wait_for_timeout(300)


def own_addresses() -> set[str]:
    """The IP addresses of this machine."""
    return {
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family.name in ("AF_INET", "AF_INET6")
    }


def udp_sockets(pid: int) -> int:
    return len(psutil.Process(pid).net_connections("udp"))


def test_the_camera_is_explained_live_on_loopback_and_its_files_are_offered(
    browser, camera_dashboard, clip, clip_classes
):
    url, _, pid = camera_dashboard
    context, page = open_camera_page(browser, url)
    try:
        start_camera(page)
        page.locator(".st-key-camera-stats").wait_for()
        wait_explained(page, 15)
        frame = component_frame(page)
        samples = []
        for _ in range(40):
            sample = frame.evaluate(SAMPLE_JS)
            if sample and sample["shown"] and sample["camera"]:
                samples.append(sample)
            page.wait_for_timeout(150)
        assert len(samples) >= 30, f"only {len(samples)} readable samples"
        # the overlay changes in place
        grids = [np.array(s["shown"]["grid"], np.float64) for s in samples]
        changes = [float(np.abs(a - b).mean()) for a, b in itertools.pairwise(grids)]
        # (several times over the 6 s sampled, a rate a loaded machine still keeps)
        assert sum(change > 1.0 for change in changes) >= 6, changes
        # latency from capture to overlay, read from the page: both numbers at one instant
        lags = []
        for s in samples:
            shown = code_from_means(s["shown"]["means"])
            captured = code_from_means(s["camera"]["means"])
            assert shown < CLIP_FRAMES and captured < CLIP_FRAMES, (shown, captured)
            lags.append((captured - shown) % CLIP_FRAMES)
        latency_ms = np.array(lags) * 1000 / FPS
        p50, p95 = np.percentile(latency_ms, [50, 95])
        print(f"capture to overlay: p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(lags)} samples")
        assert p95 < 3000, f"the overlay lags the camera by {p95:.0f} ms (p95)"
        # the page shows the class, the latency and the dropped frames
        status = page.locator(".st-key-camera-status").inner_text()
        assert re.search(r"latency \d+ ms", status), status
        assert re.fullmatch(r"\d+", metric(page, "Dropped"))
        assert re.fullmatch(r"\d+ ms", metric(page, "Latency p95"))
        # the media reach the dashboard on 127.0.0.1 only (Chromium may send from another of
        # this machine's own addresses: the kernel delivers that over loopback too)
        pair = frame.evaluate(PAIR_JS)
        assert pair is not None and pair["remote"] == "127.0.0.1", pair
        assert pair["local"] in own_addresses(), pair
        for connection in psutil.Process(pid).net_connections("udp"):
            assert connection.laddr.ip in ("127.0.0.1", "0.0.0.0", "::"), connection
        screenshot(page, "20-camera")
        stop_camera(page)
        page.locator(".st-key-camera-ended").wait_for()
        wait_idle(page)
        ended = page.locator(".st-key-camera-ended").inner_text()
        assert re.search(r"Ended \(stopped\): \d+ frames explained of \d+ received", ended), ended
        with page.expect_download() as download:
            page.get_by_role("button", name="Predictions (JSONL)").click()
        lines = Path(download.value.path()).read_text().splitlines()
        with page.expect_download() as download:
            page.get_by_role("button", name="Recording (MP4)").click()
        with av.open(download.value.path()) as container:
            recorded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        screenshot(page, "21-camera-stopped")
    finally:
        context.close()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(recorded) >= 20
    # the predicted classes are the clip's: each explained frame, found by its bar code
    _, names, _ = clip
    seen = {name: 0 for name in PHOTOS}
    misses = []
    for record, picture in zip(records, recorded, strict=True):
        number = read_code(picture)
        assert number < CLIP_FRAMES, number
        seen[names[number]] += 1
        if record["class_name"] not in clip_classes[number]:
            misses.append((number, record["class_name"], clip_classes[number]))
    assert all(seen.values()), seen
    assert len(misses) <= len(records) // 10, misses


def test_two_cameras_over_the_cap_and_a_closed_tab_cleans_up(browser, camera_dashboard, clip):
    url, sessions, pid = camera_dashboard
    baseline = udp_sockets(pid)
    first, page = open_camera_page(browser, url)
    second = None
    try:
        start_camera(page)
        wait_explained(page, 5)
        assert udp_sockets(pid) > baseline
        second, other = open_camera_page(browser, url)
        refused = other.locator(".st-key-camera-refused")
        refused.wait_for()
        assert "already explains 1 camera(s)" in refused.inner_text()
        screenshot(other, "22-camera-refused")
        # started anyway: the camera connects, but no run is made for it and the line stays
        start_camera(other)
        other.get_by_text("Waiting for the camera...").or_(refused).first.wait_for()
        other.wait_for_timeout(3000)
        assert "already explains 1 camera(s)" in refused.inner_text()
        assert other.locator(".st-key-camera-stats").count() == 0
        stop_camera(other)
        # the first tab closes mid-run: the dashboard ends its run and keeps its files
        before = set(sessions.glob("*/camera-*"))
        first.close()
        first = None
        closed_at = time.monotonic()
        while udp_sockets(pid) > baseline:
            assert time.monotonic() < closed_at + 40, "the closed tab's camera is still connected"
            time.sleep(0.5)
        print(f"the closed tab's connection was gone after {time.monotonic() - closed_at:.1f} s")
        kept = [folder for folder in before if (folder / "predictions.jsonl").is_file()]
        assert kept, before
        with av.open(str(kept[0] / "camera.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) >= 5
        # its slot is free again: the waiting visitor starts
        second.close()
        second, other = open_camera_page(browser, url)
        assert other.locator(".st-key-camera-refused").count() == 0
        start_camera(other)
        wait_explained(other, 3)
        stop_camera(other)
        other.locator(".st-key-camera-ended").wait_for()
    finally:
        for context in (first, second):
            if context is not None:
                context.close()


def test_camera_permission_denied_is_told_on_the_page(playwright, camera_dashboard, clip):
    url, _, _ = camera_dashboard
    with camera_browser(playwright, clip[0], "--deny-permission-prompts") as denying:
        context, page = open_camera_page(denying, url)
        try:
            start_camera(page)
            told = component(page).get_by_text(re.compile("NotAllowedError|denied", re.I))
            told.first.wait_for(timeout=30_000)
            screenshot(page, "23-camera-denied")
        finally:
            context.close()


def test_a_server_lost_mid_run_is_told_and_the_recording_kept(browser, own_triton, clip, tmp_path):
    folder = tmp_path / "sessions"
    env = {
        "GRADCAM_URL": own_triton.urls.grpc,
        "GRADCAM_METRICS_URL": "none",
        "GRADCAM_DASHBOARD_DIR": str(folder),
        "GRADCAM_CAMERA_ADDRESSES": "127.0.0.1",
        "GRADCAM_RETRY_S": "4",
    }
    with running_dashboard(env, tmp_path / "dashboard.log") as url:
        assert healthy(url)
        context, page = open_camera_page(browser, url, model="tiny")
        try:
            start_camera(page)
            wait_explained(page, 5)
            own_triton.kill()
            status = page.locator(".st-key-camera-status")
            status.get_by_text("the server is not answering").wait_for(timeout=10_000)
            screenshot(page, "24-camera-server-not-answering")
            status.get_by_text("The camera run stopped").wait_for(timeout=30_000)
            assert "no answer for 4 s" in status.inner_text()
            screenshot(page, "25-camera-server-lost")
            stop_camera(page)
            ended = page.locator(".st-key-camera-ended")
            ended.wait_for()
            wait_idle(page)
            assert "The camera run stopped" in ended.inner_text()
            page.get_by_role("button", name="Recording (MP4)").wait_for()
            assert page.get_by_role("button", name="Predictions (JSONL)").is_visible()
        finally:
            context.close()
            own_triton.start()
            own_triton.wait_ready(120)
