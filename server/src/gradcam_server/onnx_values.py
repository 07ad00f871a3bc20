"""What `OnnxGraph` and its operator modules share: the errors, a value with its storage
layout, the operator registry and small helpers for operands."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx
import tensorflow as tf
from onnx import helper

if TYPE_CHECKING:
    from gradcam_server.onnx_graph import OnnxGraph

NHWC_AXIS = (0, 3, 1, 2)
"""Storage axis of each ONNX (NCHW) axis of a channels-last value."""


class OnnxModelError(ValueError):
    """The ONNX model cannot be served as it is (one line, naming the problem)."""


class UnsupportedOperator(OnnxModelError):
    """An ONNX operator (or an attribute of one) that the interpreter does not implement."""


@dataclass
class Value:
    """A value of the graph: a constant (numpy) or a tensor, with its storage layout.

    `nhwc`: a 4-D NCHW value stored channels-last. `layout`: "NCHW"/"NHWC" for 4-D values
    whose axes are image axes. `known`: for an integer tensor computed from shapes, the
    entries known while tracing (None where they depend on the batch size).
    """

    data: tf.Tensor | np.ndarray
    nhwc: bool = False
    layout: str | None = None
    known: np.ndarray | None = None
    _view: tf.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.data, np.generic):
            self.data = np.asarray(self.data)


Handler = Callable[["OnnxGraph", onnx.NodeProto, list], list]
"""An operator: takes the graph, the node and its input values (None for an omitted optional
input) and returns its output values."""

OPERATORS: dict[str, Handler] = {}
"""The implemented ONNX operators by name (filled by `onnx_ops` and `onnx_nn_ops`)."""


def implements(*names: str) -> Callable[[Handler], Handler]:
    """Register the decorated handler for the ONNX operators `names`."""

    def register(handler: Handler) -> Handler:
        for name in names:
            if name in OPERATORS:
                raise RuntimeError(f"operator {name} is implemented twice")
            OPERATORS[name] = handler
        return handler

    return register


def attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes by name (strings decoded)."""
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def plain(value: tf.Tensor | np.ndarray, layout: str | None = None) -> Value:
    """A value stored as the ONNX graph defines it."""
    return Value(value, layout=layout)


def as_tensors(x, y) -> tuple[tf.Tensor, tf.Tensor]:
    """Both operands as tensors of one dtype (a numpy constant takes the tensor's dtype)."""
    x_is_np, y_is_np = isinstance(x, np.ndarray), isinstance(y, np.ndarray)
    if x_is_np and not y_is_np:
        y = tf.convert_to_tensor(y)
        return tf.constant(x, dtype=y.dtype), y
    if y_is_np and not x_is_np:
        x = tf.convert_to_tensor(x)
        return x, tf.constant(y, dtype=x.dtype)
    return tf.convert_to_tensor(x), tf.convert_to_tensor(y)


def shape_arg(dims: Sequence[int | tf.Tensor]) -> list[int] | tf.Tensor:
    """A shape for `tf.reshape`: a list when every dimension is static, else a tensor."""
    if all(isinstance(d, (int, np.integer)) for d in dims):
        return [int(d) for d in dims]
    return tf.stack([tf.cast(d, tf.int64) for d in dims])
