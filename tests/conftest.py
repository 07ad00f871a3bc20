"""Shared fixtures: a tiny Keras classifier file, and one real Triton for the whole session.

Also the skip policy (`skip_policy`): under CI or GRADCAM_NO_SKIPS=1 a skip fails the run
unless it is allowed there, with its reason.

The repository holds `tiny` (a small CNN, two layers, every method: fast and exact checks) and
`efficientnet-lite0` (the offline default with its real ImageNet weights, every method). Tests
that stop, kill or reconfigure a server start their own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# pylibsrtp (under the camera mode's aiortc) crashes the interpreter when it is first imported
# after TensorFlow, as happens when a test exports a model and then runs the dashboard page in
# the same process; imported first, both load.
import pylibsrtp  # noqa: F401
import pytest
import skip_policy
from served_models import export_test_models, make_tiny_classifier

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config: pytest.Config) -> None:
    skip_policy.pytest_configure(config)


@pytest.fixture(scope="session")
def tiny_keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "tiny_cnn.keras"
    make_tiny_classifier().save(path)
    return path


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory, tiny_keras_file) -> Path:
    return export_test_models(tmp_path_factory.mktemp("model_repository"), tiny_keras_file)


@pytest.fixture(scope="session")
def triton(model_repository, tmp_path_factory):
    """The shared server (started on first use, stopped at the end of the session)."""
    from triton_server import running_triton

    with running_triton(model_repository, log_dir=tmp_path_factory.mktemp("triton-logs")) as server:
        yield server


@pytest.fixture(scope="module")
def network_link():
    """A network namespace joined to this one by a veth pair shaped to 100 Mbit/s
    (`slow_link.SlowLink`). Needs root and iproute2: skipped without them (a failure under CI,
    see `skip_policy`)."""
    import slow_link as links

    problem = links.available()
    if problem:
        pytest.skip(f"slow link: {problem}")
    with links.SlowLink() as link:
        link.shape(links.RATE_MBIT)
        yield link


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
