"""Shared fixtures: a tiny Keras classifier file for fast tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from served_models import make_tiny_classifier

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "tiny_cnn.keras"
    make_tiny_classifier().save(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
