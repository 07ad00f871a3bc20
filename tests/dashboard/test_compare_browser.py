"""The compare mode in a real Chromium: `gradcam-dashboard` serving the page, a real Triton
serving two versions of a tiny CNN behind it. Screenshots go to ``test-artifacts/dashboard/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import video_state
from media import write_clip
from test_browser import (
    ARTIFACTS,
    browser,  # noqa: F401 (a fixture)
    choose,
    new_page,
    running_dashboard,
    screenshot,
    upload,
    wait_idle,
)
from versioned_models import NO_MAPS, VERSIONED

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(scope="module")
def compare_url(compare_triton, tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("compare-dashboard")
    env = {
        "GRADCAM_URL": compare_triton.urls.grpc,
        "GRADCAM_METRICS_URL": compare_triton.urls.metrics,
        "GRADCAM_DASHBOARD_DIR": str(folder / "sessions"),
    }
    with running_dashboard(env, folder / "dashboard.log") as url:
        yield url


def test_two_versions_side_by_side_with_agreement_worst_frames_and_inspector(
    browser,  # noqa: F811
    compare_url,
    tmp_path,
):
    clip = write_clip(tmp_path / "cat.mp4", size=(160, 120), n_frames=24, fps=12)
    context, page = new_page(browser, compare_url)
    try:
        page.get_by_text("Compare two models").click()
        wait_idle(page)
        upload(page, clip)
        page.get_by_text("160x120 video").wait_for()
        wait_idle(page)
        # a model without maps is refused in one line, and nothing can be run
        choose(page, "Model A", f"{NO_MAPS}:1")
        problem = page.locator(".st-key-compare-problem")
        problem.get_by_text("computes no maps").wait_for()
        assert page.get_by_role("button", name="Compare", exact=True).is_disabled()
        choose(page, "Model A", f"{VERSIONED}:1")
        assert page.locator(".st-key-compare-problem").count() == 0
        page.get_by_role("button", name="Compare", exact=True).click()
        page.get_by_text("4 · Comparison").wait_for()
        page.locator(".st-key-compare-media video").wait_for()
        page.locator(".st-key-compare-inspector").wait_for()
        wait_idle(page)
        state = video_state(page, ".st-key-compare-media video")
        assert state is not None and state["error"] is None, state
        assert state["readyState"] >= 2 and state["advanced"], state
        assert state["duration"] == pytest.approx(2.0, abs=0.15)
        assert state["width"] >= 2 * 160 and state["height"] >= 120, state  # A | B
        timeline = page.locator('.st-key-agreement-timeline [data-testid="stVegaLiteChart"]')
        assert timeline.bounding_box()["height"] > 100
        assert page.locator('.st-key-compare-summary [data-testid="stMetric"]').count() == 5
        worst = page.locator(".st-key-worst-frames button")
        assert worst.count() == 10
        label = worst.nth(2).inner_text()
        frame = int(label.split("·")[0].split()[1])
        worst.nth(2).click()
        wait_idle(page)
        inspector = page.locator(".st-key-compare-inspector")
        inspector.get_by_text(f"Original · frame {frame}", exact=True).wait_for()
        assert inspector.locator("img").count() >= 4  # original, A | B, both maps
        assert inspector.locator('[data-testid="stVegaLiteChart"]').count() == 2  # top fives
        for name in ("Video (MP4)", "Comparison (JSONL)", "Summary (JSON)"):
            assert page.get_by_role("button", name=name).is_visible()
        assert page.locator('[data-testid="stException"]').count() == 0
        shot = screenshot(page, "compare-01-result")
        assert Path(shot).stat().st_size > 50_000
        inspector.screenshot(path=str(ARTIFACTS / "compare-02-inspector.png"))
    finally:
        context.close()
