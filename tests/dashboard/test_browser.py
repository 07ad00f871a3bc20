"""The dashboard in a real Chromium: `gradcam-dashboard` serving the page, a real Triton behind.

Screenshots go to ``test-artifacts/dashboard/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import write_clip, write_text_file
from triton_server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
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


@pytest.fixture(scope="module")
def dashboard_url(triton, dashboard_folder) -> Iterator[str]:
    folder = dashboard_folder
    env = {
        "GRADCAM_URL": triton.urls.grpc,
        "GRADCAM_METRICS_URL": triton.urls.metrics,
        "GRADCAM_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
        "GRADCAM_DASHBOARD_DIR": str(folder / "sessions"),
        "GRADCAM_SAMPLE_SECONDS": "2",
    }
    with running_dashboard(env, folder / "dashboard.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (bash scripts/system-deps.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


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


def result_video_state(page) -> dict:
    return page.evaluate(
        """async () => {
            const v = document.querySelector('.st-key-result-media video');
            if (!v) return null;
            v.muted = true;
            if (v.readyState < 2) await new Promise(r => {
                v.addEventListener('loadeddata', r, {once: true});
                setTimeout(r, 15000);
            });
            try { await v.play(); } catch (e) {}
            const t0 = v.currentTime;
            await new Promise(r => setTimeout(r, 700));
            const state = {readyState: v.readyState, duration: v.duration,
                           width: v.videoWidth, height: v.videoHeight,
                           advanced: v.currentTime > t0, error: v.error && v.error.code};
            v.pause();
            return state;
        }"""
    )


def run_and_wait(page) -> None:
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("4 · Result").wait_for()
    page.locator(".st-key-result-media video").wait_for()
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
        address = page.get_by_role("textbox", name="Triton gRPC address")
        address.fill(f"localhost:{free_port()}")
        address.press("Enter")
        page.get_by_text("cannot be reached").wait_for()
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
