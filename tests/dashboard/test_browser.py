"""The dashboard in a real Chromium: `gradcam-dashboard` serving the page, a real Triton behind.

Screenshots go to ``test-artifacts/dashboard/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from browser_support import CHROMIUM_ARGS, chromium, video_state
from media import write_clip, write_text_file
from triton_server import free_port, running_triton

from gradcam_client.live.sample_stream import SampleStream
from gradcam_client.media.samples import pan_zoom_frames

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
UPLOAD_LIMIT_MB = 0.25  # small, so that an oversized upload is cheap to make
TIMEOUT_MS = 120_000


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_dashboard(env: dict[str, str], log: Path) -> Iterator[str]:
    """`gradcam-dashboard` on a free port; yields its URL, stops its process group after."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gradcam-dashboard")),
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the dashboard exited: {log.read_text()[-2000:]}"
            if healthy(url):
                break
            assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="module")
def dashboard_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-dashboard")


DOWN_URL = f"127.0.0.1:{free_port()}"  # offered by the operator, but nothing listens there


@pytest.fixture(scope="module")
def dashboard_url(triton, dashboard_folder) -> Iterator[str]:
    folder = dashboard_folder
    env = {
        "GRADCAM_URL": f"{triton.urls.grpc} {DOWN_URL}",
        "GRADCAM_METRICS_URL": triton.urls.metrics,
        "GRADCAM_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
        "GRADCAM_DASHBOARD_DIR": str(folder / "sessions"),
        "GRADCAM_SAMPLE_SECONDS": "2",
    }
    with running_dashboard(env, folder / "dashboard.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two short clips of different photos and sizes, a fake video and an oversized image."""
    folder = tmp_path_factory.mktemp("uploads")
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    big = folder / "big-photo.png"
    cv2.imwrite(str(big), noise)
    assert big.stat().st_size > UPLOAD_LIMIT_MB * 1024 * 1024
    return {
        "cat": write_clip(folder / "cat.mp4", size=(160, 120), n_frames=12, fps=12),
        "coffee": write_clip(
            folder / "coffee.mp4", size=(192, 128), n_frames=10, fps=10, photo_name="coffee"
        ),
        "long": write_clip(folder / "long.mp4", size=(96, 64), n_frames=480, fps=24),
        "fake": write_text_file(folder / "holiday.mp4"),
        "big": big,
    }


def write_avi(path: Path, n_frames: int = 795, size: tuple[int, int] = (768, 576)) -> Path:
    """An MPEG-4 Part 2 AVI (what browsers cannot play) panning over three photos, 25 fps."""
    photos = ("chelsea", "coffee", "astronaut")
    per_photo = -(-n_frames // len(photos))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 25)
        written = 0
        for name in photos:
            for image in pan_zoom_frames(min(per_photo, n_frames - written), size, name):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = written
                written += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def long_avi(tmp_path_factory) -> Path:
    return write_avi(tmp_path_factory.mktemp("avi") / "street.avi")


def new_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_text("1 · Input").wait_for()
    return context, page


def upload(page, path: Path) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by its label."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(300)
    wait_idle(page)


def wait_idle(page) -> None:
    """Until the page's script run has finished (Streamlit's running indicator is gone)."""
    page.wait_for_timeout(200)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS
    )


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its own container, so the window grows."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        "() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 0"
    )
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height + 40)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def result_video_state(page) -> dict | None:
    return video_state(page, ".st-key-result-media video")


def run_and_wait(page) -> None:
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("4 · Result").wait_for()
    page.locator(".st-key-result-media video").wait_for()
    page.locator(".st-key-inspector").wait_for()
    wait_idle(page)


def test_upload_run_play_chart_and_inspect(browser, dashboard_url, clips):
    context, page = new_page(browser, dashboard_url)
    try:
        page.get_by_text("Live and ready: 2 Grad-CAM model(s)").wait_for()
        upload(page, clips["cat"])
        page.get_by_text("160x120 video").wait_for()
        wait_idle(page)
        screenshot(page, "01-uploaded")
        run_and_wait(page)
        state = result_video_state(page)
        assert state is not None and state["error"] is None, state
        assert state["readyState"] >= 2 and state["advanced"], state
        assert state["duration"] == pytest.approx(1.0, abs=0.15)
        assert (state["width"], state["height"]) == (160, 120)
        timeline = page.locator('.st-key-timeline [data-testid="stVegaLiteChart"]')
        timeline.wait_for()
        assert timeline.bounding_box()["height"] > 100
        inspector = page.locator(".st-key-inspector")
        assert inspector.locator("img").count() >= 3  # original, result, raw map(s)
        assert inspector.locator('[data-testid="stVegaLiteChart"]').count() == 1  # top five
        page.get_by_text("Original · frame 0 · 0.00 s").wait_for()
        thumb = inspector.get_by_role("slider")
        thumb.focus()
        for _ in range(6):
            thumb.press("ArrowRight")
        page.get_by_text("Original · frame 6 · 0.50 s").wait_for()
        wait_idle(page)
        assert page.get_by_role("button", name="Video (MP4)").is_visible()
        assert page.get_by_role("button", name="Predictions (JSONL)").is_visible()
        assert page.get_by_role("button", name="Raw maps (NPZ)").is_visible()
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "02-result")
        inspector.screenshot(path=str(ARTIFACTS / "03-inspector.png"))
    finally:
        context.close()


def test_unusable_uploads_get_a_clear_message(browser, dashboard_url, clips):
    context, page = new_page(browser, dashboard_url)
    try:
        upload(page, clips["fake"])
        message = page.locator('[data-testid="stAlertContentError"]').filter(
            has_text="holiday.mp4 cannot be used"
        )
        message.wait_for()
        assert "not" in message.inner_text().lower()
        assert page.get_by_role("button", name="Run", exact=True).is_disabled()
        screenshot(page, "04-not-a-video")
        upload(page, clips["big"])
        page.get_by_text("the largest file this page accepts is 256.0 KB").wait_for()
        assert page.get_by_role("button", name="Run", exact=True).is_disabled()
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "05-too-large")
    finally:
        context.close()


def test_a_server_that_is_down_shows_a_message_and_a_retry_button(browser, dashboard_url):
    context, page = new_page(browser, dashboard_url)
    try:
        assert page.get_by_role("textbox").count() == 0  # no free-form address
        choose(page, "Triton server", DOWN_URL)
        page.get_by_text("cannot be reached").wait_for()
        page.get_by_text(f"Down: {DOWN_URL}").wait_for()
        retry = page.get_by_role("button", name="Retry")
        assert retry.is_visible()
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "06-server-down")
        retry.click()
        wait_idle(page)
        page.get_by_text("cannot be reached").wait_for()
    finally:
        context.close()


def test_two_sessions_at_once_get_their_own_results(browser, dashboard_url, clips):
    (one, page_one), (two, page_two) = (new_page(browser, dashboard_url) for _ in range(2))
    try:
        upload(page_one, clips["cat"])
        upload(page_two, clips["coffee"])
        page_one.get_by_text("160x120 video").wait_for()
        page_two.get_by_text("192x128 video").wait_for()
        wait_idle(page_two)
        page_two.get_by_text("Side by side (original | overlay)").click()
        choose(page_two, "Model", "tiny")
        wait_idle(page_one)
        # both start before either finishes
        page_one.get_by_role("button", name="Run", exact=True).click()
        page_two.get_by_role("button", name="Run", exact=True).click()
        for page in (page_one, page_two):
            page.get_by_text("4 · Result").wait_for()
            page.locator(".st-key-result-media video").wait_for()
            wait_idle(page)
        first, second = result_video_state(page_one), result_video_state(page_two)
        assert (first["width"], first["height"]) == (160, 120), first
        assert (second["width"], second["height"]) == (2 * 192, 128), second  # side by side
        assert first["duration"] == pytest.approx(1.0, abs=0.15)
        assert second["duration"] == pytest.approx(1.0, abs=0.15)
        assert page_one.get_by_text("efficientnet-lite0 · overlay").is_visible()
        assert page_two.get_by_text("tiny · side by side").is_visible()
        screenshot(page_one, "07-session-one")
        screenshot(page_two, "08-session-two")
    finally:
        one.close()
        two.close()


def test_stop_ends_a_run_and_drops_its_files(browser, dashboard_url, dashboard_folder, clips):
    context, page = new_page(browser, dashboard_url)
    try:
        upload(page, clips["long"])
        page.get_by_text("96x64 video").wait_for()
        wait_idle(page)
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("The run was stopped.").wait_for()
        wait_idle(page)
        assert page.get_by_text("4 · Result").count() == 0
        # the stopped run's thread ends at its next progress update and removes its files
        deadline = time.monotonic() + 20
        while unfinished := [
            run
            for run in (dashboard_folder / "sessions").glob("session-*/run-*")
            if not (run / "result.mp4").exists()
        ]:
            assert time.monotonic() < deadline, unfinished
            time.sleep(0.2)
        screenshot(page, "09-stopped")
    finally:
        context.close()


# --------------------------------------------------------------------------- a second page:
# uploads up to 200 MB, and a second server of its own (only `tiny`) to kill and restart


@pytest.fixture(scope="module")
def own_triton(model_repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own-triton")
    shutil.copytree(model_repository / "tiny", folder / "repository" / "tiny")
    with running_triton(folder / "repository", log_dir=folder) as server:
        yield server


@pytest.fixture(scope="module")
def roomy_url(triton, own_triton, dashboard_folder) -> Iterator[str]:
    env = {
        "GRADCAM_URL": f"{triton.urls.grpc} {own_triton.urls.grpc}",
        "GRADCAM_METRICS_URL": f"{triton.urls.metrics} {own_triton.urls.metrics}",
        "GRADCAM_MAX_UPLOAD_MB": "200",
        "GRADCAM_DASHBOARD_DIR": str(dashboard_folder / "roomy-sessions"),
        "GRADCAM_SAMPLE_SECONDS": "2",
        "GRADCAM_RETRY_S": "8",
    }
    with running_dashboard(env, dashboard_folder / "roomy-dashboard.log") as url:
        yield url


def requests_per_s(page) -> float | None:
    """The Load panel's Requests/s figure, or None while it shows none."""
    metric = page.locator('[data-testid="stSidebar"] [data-testid="stMetric"]').filter(
        has_text="Requests/s"
    )
    if metric.count() == 0:
        return None
    text = metric.first.locator('[data-testid="stMetricValue"]').inner_text()
    return float(text) if re.fullmatch(r"[0-9.]+", text.strip()) else None


def test_a_long_avi_plays_beside_its_result_with_live_load_and_every_frame(
    browser, roomy_url, long_avi
):
    """The 795-frame 768x576 MPEG-4 AVI: a playable original, progress, a Load panel that
    moves during the run, and every frame in the inspector. Times go to timings.txt."""
    context, page = new_page(browser, roomy_url)
    try:
        page.get_by_text("Live and ready: 2 Grad-CAM model(s)").wait_for()
        upload(page, long_avi)
        page.get_by_text("768x576 video").wait_for()
        wait_idle(page)
        choose(page, "Model", "efficientnet-lite0")
        clicked = time.monotonic()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text(re.compile(r"Frame \d+ of 795")).first.wait_for()
        first_update = time.monotonic() - clicked
        rates = []
        while page.locator(".st-key-result-media video").count() == 0:
            rates.append(requests_per_s(page))
            assert time.monotonic() - clicked < 600, "no result within 10 minutes"
            page.wait_for_timeout(1000)
        to_result = time.monotonic() - clicked
        page.locator(".st-key-inspector").wait_for()
        to_inspector = time.monotonic() - clicked
        caption = page.get_by_text(re.compile(r"795 frame\(s\) in [0-9.]+ s")).inner_text()
        frames_s = float(re.search(r"795 frame\(s\) in ([0-9.]+) s", caption).group(1))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "timings.txt").write_text(
            f"795-frame 768x576 MPEG-4 AVI, efficientnet-lite0, overlay: Run -> first progress "
            f"update {first_update:.1f} s, Run -> result {to_result:.1f} s (the frames took "
            f"{frames_s:.1f} s), Run -> frame inspector {to_inspector:.1f} s\n"
        )
        print(f"Run -> first progress {first_update:.1f} s, -> result {to_result:.1f} s")
        assert first_update < 10
        moving = [rate for rate in rates if rate]
        assert moving, f"the Load panel never moved during the run: {rates}"
        wait_idle(page)
        original = video_state(page, ".st-key-original-media video")
        assert original is not None and original["error"] is None, original
        assert original["advanced"] and original["duration"] == pytest.approx(31.8, abs=0.2)
        result = video_state(page, ".st-key-result-media video")
        assert result["advanced"] and (result["width"], result["height"]) == (768, 576)
        screenshot(page, "10-avi-result")
        inspector = page.locator(".st-key-inspector")
        thumb = inspector.get_by_role("slider")
        thumb.focus()
        thumb.press("End")
        page.get_by_text("Original · frame 794 · 31.76 s").wait_for()
        thumb.press("ArrowLeft")
        page.get_by_text("Original · frame 793 · 31.72 s").wait_for()
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        inspector.screenshot(path=str(ARTIFACTS / "11-avi-last-frames.png"))
    finally:
        context.close()


def test_the_whole_clip_pass_shows_progress_and_can_be_stopped(browser, roomy_url, long_avi):
    context, page = new_page(browser, roomy_url)
    try:
        upload(page, long_avi)
        page.get_by_text("768x576 video").wait_for()
        wait_idle(page)
        page.get_by_text("One class for the whole video").click()
        wait_idle(page)
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text(re.compile(r"Whole-clip pass: frame \d+ of 795")).first.wait_for()
        screenshot(page, "12-whole-clip-pass")
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("The run was stopped.").wait_for()
        wait_idle(page)
        assert page.get_by_text("4 · Result").count() == 0
        assert page.get_by_role("button", name="Stop").count() == 0
    finally:
        context.close()


def test_a_server_lost_mid_run_is_told_and_what_was_made_is_offered(
    browser, roomy_url, own_triton, tmp_path
):
    context, page = new_page(browser, roomy_url)
    try:
        choose(page, "Triton server", own_triton.urls.grpc)
        page.get_by_text("Live and ready: 1 Grad-CAM model(s)").wait_for()
        # 2400 frames: long enough (even for the tiny model) to be cut short
        upload(page, write_clip(tmp_path / "longer.mp4", size=(96, 64), n_frames=2400, fps=24))
        page.get_by_text("96x64 video").wait_for()
        wait_idle(page)
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text(re.compile(r"Frame [1-9]\d+ of 2400")).first.wait_for()
        own_triton.kill()
        killed = time.monotonic()
        page.get_by_text("The server is not answering.").wait_for()
        told = time.monotonic() - killed
        print(f"told after {told:.2f} s")
        assert told < 2.5, f"told after {told:.1f} s"  # 2 s, plus the browser's redraw
        page.get_by_text(re.compile("Not answering; retrying until")).wait_for()
        screenshot(page, "13-server-not-answering")
        page.get_by_text(re.compile(r"\d+ of 2400 frames were done")).wait_for(timeout=60_000)
        wait_idle(page)
        failed = page.locator(".st-key-run-failed")
        assert failed.locator("video").count() == 1  # the video so far
        assert page.get_by_role("button", name="Video so far (MP4)").is_visible()
        assert page.get_by_role("button", name="Predictions so far (JSONL)").is_visible()
        assert page.get_by_role("button", name="Try again").count() == 1
        assert page.get_by_role("button", name="Retry").count() == 0
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_text("Live and ready").count() == 0
        sidebar.get_by_text(f"Down: {own_triton.urls.grpc}").wait_for()
        screenshot(page, "14-run-failed")
        # the server comes back: the sidebar says so on its own, and Try again runs
        own_triton.start()
        own_triton.wait_ready(120)
        sidebar.get_by_text("Live and ready: 1 Grad-CAM model(s)").wait_for(timeout=30_000)
        page.get_by_role("button", name="Try again").click()
        page.locator(".st-key-result-media video").wait_for()
        wait_idle(page)
        assert page.locator(".st-key-run-failed").count() == 0
    finally:
        context.close()


# --------------------------------------------------------------------------- the Live mode:
# a third page whose operator offers one live source, a sample stream over UDP on 127.0.0.1


@pytest.fixture(scope="module")
def live_stream() -> Iterator[str]:
    url = f"udp://127.0.0.1:{free_port()}"
    with SampleStream(url, fps=10, size=(480, 270)):
        yield url


@pytest.fixture(scope="module")
def live_page_url(triton, dashboard_folder, live_stream) -> Iterator[str]:
    env = {
        "GRADCAM_URL": triton.urls.grpc,
        "GRADCAM_METRICS_URL": triton.urls.metrics,
        "GRADCAM_LIVE_SOURCES": f"sample-stream={live_stream}",
        "GRADCAM_DASHBOARD_DIR": str(dashboard_folder / "live-sessions"),
    }
    with running_dashboard(env, dashboard_folder / "live-dashboard.log") as url:
        yield url


def live_picture(page, stream: str = "s1") -> np.ndarray:
    """The pixels of a stream's live frame as the browser shows them (once it has loaded:
    a frame being swapped in has no height yet)."""
    selector = f".st-key-live-frame-{stream} img"
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalHeight > 0"
        " && i.getBoundingClientRect().height > 0.5 * i.getBoundingClientRect().width * "
        "i.naturalHeight / i.naturalWidth; }",
        arg=selector,
    )
    png = page.locator(selector).screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)


def test_the_live_mode_shows_frames_that_change_its_figures_and_stops(
    browser, live_page_url, live_stream
):
    context, page = new_page(browser, live_page_url)
    try:
        page.get_by_text("Live", exact=True).click()
        page.get_by_text("3 · Live").wait_for()
        wait_idle(page)
        page.wait_for_function(
            "() => document.querySelectorAll('input[aria-label=\"Model\"]').length === 1"
        )
        choose(page, "Model", "efficientnet-lite0")
        page.get_by_role("button", name="Start").click()
        page.get_by_text("Live: sample-stream · efficientnet-lite0").wait_for()
        page.locator(".st-key-live-frame-s1 img").wait_for()
        pictures = [live_picture(page)]
        for _ in range(3):
            page.wait_for_timeout(1500)
            pictures.append(live_picture(page))
        changes = [float(np.abs(a - b).mean()) for a, b in itertools.pairwise(pictures)]
        assert min(changes) > 1.0, f"the frame did not change in place: {changes}"
        stats = page.locator(".st-key-live-stats-s1")
        explained = stats.locator('[data-testid="stMetric"]').filter(has_text="Frames explained")
        assert int(explained.locator('[data-testid="stMetricValue"]').inner_text()) > 10
        p95 = stats.locator('[data-testid="stMetric"]').filter(has_text="Latency p95")
        assert re.fullmatch(r"\d+ ms", p95.locator('[data-testid="stMetricValue"]').inner_text())
        assert stats.get_by_text("Skipped").count() == 1
        page.locator('.st-key-live-chart-s1 [data-testid="stVegaLiteChart"]').wait_for()
        assert live_stream not in page.content()  # visitors see the source's name only
        screenshot(page, "15-live")
        page.get_by_role("button", name="Stop").click()
        page.get_by_text(re.compile(r"Ended \(stopped\):")).wait_for()
        wait_idle(page)
        still = live_picture(page)
        page.wait_for_timeout(1500)
        assert float(np.abs(live_picture(page) - still).mean()) == 0.0  # no more updates
        assert page.get_by_role("button", name="Recording (MP4)").is_visible()
        assert page.get_by_role("button", name="Start").is_enabled()
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "16-live-stopped")
    finally:
        context.close()


# a fourth page whose operator lets a visitor run two streams side by side


@pytest.fixture(scope="module")
def second_stream() -> Iterator[str]:
    url = f"udp://127.0.0.1:{free_port()}"
    with SampleStream(url, fps=10, size=(480, 270), photo="coffee"):
        yield url


@pytest.fixture(scope="module")
def two_streams_url(triton, dashboard_folder, live_stream, second_stream) -> Iterator[str]:
    env = {
        "GRADCAM_URL": triton.urls.grpc,
        "GRADCAM_METRICS_URL": triton.urls.metrics,
        "GRADCAM_LIVE_SOURCES": f"cat-cam={live_stream} coffee-cam={second_stream}",
        "GRADCAM_LIVE_STREAMS_PER_SESSION": "2",
        "GRADCAM_DASHBOARD_DIR": str(dashboard_folder / "two-streams-sessions"),
    }
    with running_dashboard(env, dashboard_folder / "two-streams-dashboard.log") as url:
        yield url


def test_two_streams_play_side_by_side_and_one_is_removed(browser, two_streams_url):
    context, page = new_page(browser, two_streams_url)
    try:
        page.get_by_text("Live", exact=True).click()
        page.get_by_text("3 · Live").wait_for()
        wait_idle(page)
        choose(page, "Model", "efficientnet-lite0")
        page.get_by_role("button", name="Start").click()
        page.locator(".st-key-live-frame-s1 img").wait_for()
        choose(page, "Live source", "coffee-cam")
        page.get_by_role("button", name="Add coffee-cam").click()
        page.locator(".st-key-live-frame-s2 img").wait_for()
        page.get_by_text("2 of 2 streams running").wait_for()
        assert page.get_by_role("button", name="Add coffee-cam").is_disabled()
        for stream in ("s1", "s2"):
            first = live_picture(page, stream)
            page.wait_for_timeout(1500)
            assert float(np.abs(live_picture(page, stream) - first).mean()) > 1.0
        captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
        assert any("cat" in caption for caption in captions), captions
        assert any("espresso" in caption for caption in captions), captions
        screenshot(page, "17-live-two-streams")
        # a redrawn panel may briefly hold its old button beside the new one
        page.locator(".st-key-live_remove_s2 button").first.click()
        page.get_by_text(re.compile(r"Ended \(removed\):")).wait_for()
        page.get_by_role("button", name="Recording (MP4)").first.wait_for()  # drawn just after
        first = live_picture(page, "s1")
        page.wait_for_timeout(1500)
        assert float(np.abs(live_picture(page, "s1") - first).mean()) > 1.0  # cat-cam goes on
        page.get_by_role("button", name="Stop").click()
        page.get_by_text(re.compile(r"Ended \(stopped\):")).wait_for()
        wait_idle(page)
        page.get_by_role("button", name="Recording (MP4)").nth(1).wait_for()
        assert page.get_by_role("button", name="Recording (MP4)").count() == 2
        assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "18-live-two-streams-stopped")
    finally:
        context.close()
