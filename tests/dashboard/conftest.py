"""Fixtures of the dashboard tests: page settings, pointed at the session's real Triton."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE_SECONDS = 2  # sample clips of 30 frames keep the runs short


@pytest.fixture
def page_env(monkeypatch, tmp_path) -> Path:
    """Environment of a page whose session folders live in a fresh temporary folder."""
    root = tmp_path / "dashboard"
    monkeypatch.setenv("GRADCAM_DASHBOARD_DIR", str(root))
    monkeypatch.setenv("GRADCAM_SAMPLE_SECONDS", str(SAMPLE_SECONDS))
    monkeypatch.delenv("GRADCAM_METRICS_URL", raising=False)
    monkeypatch.delenv("GRADCAM_MAX_UPLOAD_MB", raising=False)
    return root


@pytest.fixture
def served_page(page_env, monkeypatch, triton) -> Path:
    """Environment of a page pointed at the real Triton."""
    monkeypatch.setenv("GRADCAM_URL", triton.urls.grpc)
    monkeypatch.setenv("GRADCAM_METRICS_URL", triton.urls.metrics)
    return page_env
