"""A real Triton serving real exported Grad-CAM models, shared by the integration tests.

The repository holds `tiny` (a small CNN, two layers, every method: fast and exact checks) and
`efficientnet-lite0` (the offline default with its real ImageNet weights, every method).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from served_models import export_test_models
from triton_server import running_triton


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory, tiny_keras_file) -> Path:
    return export_test_models(tmp_path_factory.mktemp("model_repository"), tiny_keras_file)


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    """The shared server; tests that stop or kill a server start their own."""
    with running_triton(model_repository, log_dir=tmp_path_factory.mktemp("triton-logs")) as server:
        yield server
