"""Shared fixtures: tiny classifiers for fast tests, exported once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ALL_METHODS = ["gradcam", "gradcampp", "layercam", "hirescam", "xgradcam"]


def make_tiny_classifier(size: int = 32, classes: int = 5, seed: int = 0):
    """A small CNN ending in a softmax Dense, the shape of a typical Keras classifier."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="session")
def tiny_keras_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "tiny_cnn.keras"
    make_tiny_classifier().save(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
