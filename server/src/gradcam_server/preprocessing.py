"""In-graph preprocessing of RGB frames (float32, 0..255) for the supported weight families."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

Preprocess = Callable[[tf.Tensor], tf.Tensor]

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def lite(x: tf.Tensor) -> tf.Tensor:
    """(x - 127) / 128: EfficientNet-Lite weights."""
    return (x - 127.0) / 128.0


def caffe(x: tf.Tensor) -> tf.Tensor:
    """RGB to BGR, minus the ImageNet mean per channel: Keras VGG16/VGG19/ResNet50."""
    return x[..., ::-1] - tf.constant(_CAFFE_BGR_MEAN, dtype=x.dtype)


def tf_mode(x: tf.Tensor) -> tf.Tensor:
    """Scale to [-1, 1]: Keras MobileNet, Inception, Xception."""
    return x / 127.5 - 1.0


def torch_mode(x: tf.Tensor) -> tf.Tensor:
    """Scale to [0, 1], then the ImageNet mean and standard deviation: Keras DenseNet."""
    mean = tf.constant(_TORCH_MEAN, dtype=x.dtype)
    std = tf.constant(_TORCH_STD, dtype=x.dtype)
    return (x / 255.0 - mean) / std


def unit(x: tf.Tensor) -> tf.Tensor:
    """Scale to [0, 1]."""
    return x / 255.0


def identity(x: tf.Tensor) -> tf.Tensor:
    """Raw 0..255 values: the model preprocesses by itself."""
    return x


PREPROCESSING: dict[str, Preprocess] = {
    "lite": lite,
    "caffe": caffe,
    "tf": tf_mode,
    "torch": torch_mode,
    "unit": unit,
    "none": identity,
}


def get_preprocessing(name: str) -> Preprocess:
    try:
        return PREPROCESSING[name]
    except KeyError:
        raise ValueError(
            f"unknown preprocessing {name!r}; choose from {sorted(PREPROCESSING)}"
        ) from None
