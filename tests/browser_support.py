"""Debian's Chromium for the real-browser tests (driven by Playwright), and what a page's
video element says when played."""

from __future__ import annotations

import shutil

import pytest

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


def chromium() -> str:
    """The Chromium on PATH, or skip the test (a failure under CI, see `skip_policy`)."""
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("Chromium is not on PATH (bash scripts/system-deps.sh installs it)")
    return found


def video_state(page, selector: str) -> dict | None:
    """Play the video element `selector` for 0.7 s, muted: its state, or None if absent."""
    return page.evaluate(
        """async (selector) => {
            const v = document.querySelector(selector);
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
        }""",
        selector,
    )
