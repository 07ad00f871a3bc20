"""Fixtures of the dashboard tests: a real Triton serving the test models, page settings.

`model_repository` and `triton` mirror the integration tests' session fixtures (same models,
same helpers) so the dashboard tests also run on their own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from served_models import export_test_models
from triton_server import running_triton

SAMPLE_SECONDS = 2  # sample clips of 30 frames keep the runs short


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory, tiny_keras_file) -> Path:
    return export_test_models(tmp_path_factory.mktemp("model_repository"), tiny_keras_file)


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    """A real Triton with the models `tiny` and `efficientnet-lite0`."""
    with running_triton(model_repository, log_dir=tmp_path_factory.mktemp("triton-logs")) as server:
        yield server


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
