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


@pytest.fixture(scope="session")
def compare_triton(tmp_path_factory):
    """A Triton serving two versions of a tiny CNN, a model without maps and one with other
    class names (`versioned_models`)."""
    from triton_server import running_triton
    from versioned_models import export_compare_models

    repository = export_compare_models(tmp_path_factory.mktemp("compare") / "repository")
    with running_triton(repository, log_dir=tmp_path_factory.mktemp("compare-logs")) as server:
        yield server


@pytest.fixture
def compare_page(page_env, monkeypatch, compare_triton) -> Path:
    """Environment of a page pointed at the comparison's Triton."""
    monkeypatch.setenv("GRADCAM_URL", compare_triton.urls.grpc)
    monkeypatch.setenv("GRADCAM_METRICS_URL", compare_triton.urls.metrics)
    return page_env
