"""What the serving graph needs from a classifier, whatever framework it comes from.

`GradCamModule` works on a network: a Keras model (`keras_network.KerasNetwork`) or an ONNX
graph (`onnx_network.OnnxNetwork`). A network knows its input size, its number of classes and
the layers a map can be taken from; once layers are selected, calling it on preprocessed
channels-last images returns those layers' tensors (as the network's graph consumes them, so
that gradients with respect to them are the model's) and the logits. `to_grid` turns such a
tensor, or its gradient, into the [batch, h, w, channels] grid the CAM methods take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import tensorflow as tf


@dataclass(frozen=True)
class ExplainableLayer:
    """A layer a map can be taken from: `kind` is "spatial" or "tokens"; `grid` is the map's
    (h, w), `channels` its depth, `op` the operator or layer type producing it, `prefix` the
    tokens before the patch tokens (a class token)."""

    name: str
    kind: str
    grid: tuple[int, int]
    channels: int
    op: str
    prefix: int = 0


class Network(Protocol):
    input_size: tuple[int, int]
    num_classes: int
    layers: tuple[str, ...]

    def explainable_layers(self) -> list[ExplainableLayer]: ...

    def select(self, layers: tuple[str, ...], methods: tuple[str, ...]) -> None: ...

    def layer_grid(self, name: str) -> tuple[int, int]: ...

    def __call__(self, images: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]: ...

    def to_grid(self, name: str, tensor: tf.Tensor) -> tf.Tensor: ...
