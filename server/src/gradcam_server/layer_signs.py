"""Whether a layer's output is non-negative by construction (as after a ReLU): Keras, ONNX.

Grad-CAM++ and XGrad-CAM assume non-negative activations: their channel weights divide by (or
multiply with) sums of activations, which a layer with signed outputs (a BatchNorm, a residual
Add, a linear convolution: MobileNet/EfficientNet block outputs) turns meaningless, with peaks
hundreds of times Grad-CAM's. The exporter refuses them on such layers.

The check is structural and conservative: a layer counts as non-negative only if its
activation guarantees it, or if it only pools, pads, reshapes, adds, multiplies or concatenates
layers that are non-negative themselves. Anything else (including the model input, which
preprocessing may centre around 0) counts as possibly negative.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import keras

if TYPE_CHECKING:
    import numpy as np
    import onnx

NONNEGATIVE_ACTIVATIONS = frozenset(
    {"relu", "relu6", "sigmoid", "hard_sigmoid", "softmax", "softplus", "exponential"}
)
_ORDER_PRESERVING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.UpSampling2D,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Identity,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Maximum,
    keras.layers.Concatenate,
)


def _activation_is_nonnegative(layer: keras.layers.Layer) -> bool | None:
    """True/False when the layer has a (non-linear) activation that decides; None otherwise."""
    if isinstance(layer, keras.layers.ReLU):
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        return slope == 0.0 and float(getattr(layer, "threshold", 0.0) or 0.0) >= 0.0
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return None
    return getattr(activation, "__name__", "") in NONNEGATIVE_ACTIVATIONS


def _parents(layer: keras.layers.Layer) -> list[keras.layers.Layer] | None:
    """The layers feeding `layer`; None if that is not one fixed set (a shared layer)."""
    try:
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        return [tensor._keras_history.operation for tensor in inputs]
    except (AttributeError, ValueError):
        return None


def is_nonnegative(layer: keras.layers.Layer) -> bool:
    """Whether every output value of `layer` is >= 0 whatever the input (see module doc)."""
    decided = _activation_is_nonnegative(layer)
    if decided is not None:
        return decided
    # A linear Activation passes its input on, like the pooling and reshaping layers.
    if not isinstance(layer, (keras.layers.Activation, *_ORDER_PRESERVING)):
        return False
    parents = _parents(layer)
    return bool(parents) and all(is_nonnegative(parent) for parent in parents)


class OnnxGraphLike(Protocol):
    def producer(self, name: str) -> onnx.NodeProto | None: ...

    def constant(self, name: str) -> np.ndarray | None: ...


ONNX_NONNEGATIVE_OPS = frozenset(
    {"Relu", "Sigmoid", "HardSigmoid", "Softmax", "Softplus", "Exp", "Abs", "Sqrt"}
)
_ONNX_ORDER_PRESERVING = frozenset(
    {
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Dropout",
        "Slice",
        "Gather",
        "Split",
        "Resize",
        "Upsample",
        "Expand",
        "Tile",
        "Add",
        "Mul",
        "Max",
        "Concat",
    }
)
_ONNX_DATA_INPUTS = {"Reshape": 1, "Slice": 1, "Gather": 1, "Split": 1, "Resize": 1}
"""Operators whose later inputs are shapes or indices, not data: only the first counts."""


def onnx_is_nonnegative(graph: OnnxGraphLike, name: str) -> bool:
    """Whether ONNX tensor `name` is >= 0 whatever the input, by the same rules as for Keras
    layers: a non-negative activation (Relu, Sigmoid, Clip with min >= 0, ...), or pooling,
    reshaping, adding, multiplying or concatenating non-negative tensors."""
    value = graph.constant(name)  # an initializer, or a Constant node's output
    if value is not None:
        return bool((value >= 0).all())
    node = graph.producer(name)
    if node is None:  # the image
        return False
    if node.op_type in ONNX_NONNEGATIVE_OPS:
        return True
    if node.op_type == "Clip":  # the minimum: an input (opset >= 11) or an attribute
        low = graph.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if low is None:
            low = next((a.f for a in node.attribute if a.name == "min"), None)
        return low is not None and float(low) >= 0
    if node.op_type not in _ONNX_ORDER_PRESERVING:
        return False
    inputs = [i for i in node.input[: _ONNX_DATA_INPUTS.get(node.op_type)] if i]
    return bool(inputs) and all(onnx_is_nonnegative(graph, i) for i in inputs)
