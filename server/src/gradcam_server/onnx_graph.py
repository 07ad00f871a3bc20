"""ONNX image classifiers as TensorFlow ops, run inside the Grad-CAM serving graph.

`OnnxGraph` interprets an ONNX graph node by node with TensorFlow ops, so that the served
SavedModel differentiates the user's own model with one `tf.GradientTape`, exactly as it does a
Keras model, and can hand back any intermediate tensor (a layer to explain).

Why not a converter such as onnx2tf: it failed here on what user models commonly contain (a
per-channel `(x - mean) / std` in front of the network, depthwise convolutions, GroupNorm, a
ViT's position embedding), its newer releases need Python 3.12, and it downloads a calibration
file at every run (offline machines cannot). Interpreting the graph ourselves is a few hundred
lines of one-to-one operator mappings, runs every operator the way the ONNX specification
defines it (checked against onnxruntime), and keeps every tensor of the original graph
addressable by its ONNX name.

Layout: TensorFlow's CPU convolutions take NHWC only, ONNX's are NCHW. Each value carries its
storage layout: convolutions, pooling and normalisations keep their outputs channels-last, and
element-wise operations (activations, a residual Add, a per-channel constant) work on them
as they are; any other operator first materialises the ONNX (NCHW) view with one transpose.
A CNN thus runs at close to native speed with no transposes between its layers.

This module holds the graph (loading, running the nodes, tensor infos); the operators are in
`onnx_ops` (element-wise, shapes, tensors) and `onnx_nn_ops` (convolution, pooling,
normalisation, matrix products), which register them in `onnx_values.OPERATORS`.

Values that do not depend on the image (initializers, shape arithmetic) are computed once while
the graph is traced, so the served graph holds only the image-dependent operations. Large
float initializers become variables (saved beside the graph, not inside it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx
import tensorflow as tf
from onnx import numpy_helper

# The operator modules register their handlers in OPERATORS when imported.
from gradcam_server import onnx_nn_ops, onnx_ops  # noqa: F401
from gradcam_server.onnx_values import (
    NHWC_AXIS,
    OPERATORS,
    OnnxModelError,
    UnsupportedOperator,
    Value,
)

__all__ = [
    "OnnxGraph",
    "OnnxModelError",
    "TensorInfo",
    "UnsupportedOperator",
    "input_layout",
    "supported_operators",
    "token_layout",
]

VARIABLE_SIZE = 4096
"""Float initializers with at least this many elements are saved as variables."""

_CONSTANT_FOLDING = frozenset({"Constant", "Identity", "Cast"})
"""Operators `OnnxGraph.constant` evaluates on constant inputs."""

MAX_PREFIX_TOKENS = 8
"""At most this many leading tokens (class, distillation, register tokens) before the patches."""

INFO_BATCH = 2
"""Batch size of the probing run that finds shapes (tensors whose first axis is not the batch,
such as attention heads folded into it, show another size there)."""


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of the graph as the probing run saw it.

    `shape` leaves out the batch axis and is given as the ONNX graph defines it. `kind` is
    "spatial" (a 4-D image-like tensor), "tokens" (a sequence whose patch tokens form a
    `grid`, after `prefix` leading tokens such as a class token) or None. `grid` is (h, w) of
    the map, `channels` its depth, `layout` "NCHW" or "NHWC" for spatial tensors.
    """

    name: str
    shape: tuple[int, ...]
    op: str
    kind: str | None = None
    layout: str | None = None
    grid: tuple[int, int] | None = None
    channels: int | None = None
    prefix: int = 0
    order: int = 0


def supported_operators() -> list[str]:
    """The ONNX operators the interpreter implements, sorted."""
    return sorted(OPERATORS)


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None] | None:
    """The static dimensions of a graph input (None where symbolic), or None without a shape."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]


def input_layout(dims: Sequence[int | None]) -> str | None:
    """ "NCHW" or "NHWC" for an image input shape (1 or 3 channels), else None."""
    if len(dims) != 4:
        return None
    if dims[1] in (1, 3):
        return "NCHW"
    if dims[3] in (1, 3):
        return "NHWC"
    return None


def _node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name or node.output[0]!r}"


class OnnxGraph(tf.Module):
    """An ONNX classifier's graph as TensorFlow ops (see the module docstring).

    `run(images, keep)` returns the kept intermediate tensors and the logits: the output of
    the graph, or the input of its final Softmax.
    """

    def __init__(self, model: onnx.ModelProto, dtype: tf.DType = tf.float32) -> None:
        super().__init__(name="onnx_graph")
        self.dtype = tf.as_dtype(dtype)
        self.np_dtype = self.dtype.as_numpy_dtype
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        initializer_names = {t.name for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initializer_names]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs) or "none"
            raise OnnxModelError(
                f"the model has {len(inputs)} inputs ({names}); only models with one image "
                "input are supported"
            )
        self.input_name = inputs[0].name
        dims = _dims(inputs[0])
        layout = input_layout(dims or [])
        if layout is None:
            raise OnnxModelError(
                f"input {self.input_name!r} has shape {dims}: an image input is 4-D with 1 or "
                "3 channels (N, C, H, W or N, H, W, C)"
            )
        self.input_layout = layout
        self.input_channels = int(dims[1] if layout == "NCHW" else dims[3])
        height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
        self.input_size = (height, width) if height and width else None
        if not graph.output:
            raise OnnxModelError("the model has no output")
        self._nodes = list(graph.node)
        self._producer = {out: node for node in self._nodes for out in node.output if out}
        output = graph.output[0].name
        last = self._producer.get(output)
        self.ends_with_softmax = last is not None and last.op_type == "Softmax"
        self.output_name = last.input[0] if self.ends_with_softmax else output
        self._nodes = self._needed_nodes(self.output_name)
        self._check_operators()
        conv_weights = {n.input[1] for n in self._nodes if n.op_type == "Conv"}
        other_uses = {i for n in self._nodes if n.op_type != "Conv" for i in n.input}
        other_uses |= {i for n in self._nodes if n.op_type == "Conv" for i in n.input[::2]}
        self._constants: dict[str, np.ndarray] = {}
        self._filters: dict[str, np.ndarray | tf.Variable] = {}
        variables: dict[str, tf.Variable] = {}
        for tensor in graph.initializer:
            array = numpy_helper.to_array(tensor)
            if array.dtype.kind == "f":
                array = array.astype(self.np_dtype)
            big = array.dtype.kind == "f" and array.size >= VARIABLE_SIZE
            if tensor.name in conv_weights and array.ndim == 4:
                # TensorFlow's (kh, kw, C/group, M) once, rather than a transpose per call.
                hwio = np.ascontiguousarray(array.transpose(2, 3, 1, 0))
                self._filters[tensor.name] = tf.Variable(hwio, trainable=False) if big else hwio
                if tensor.name not in other_uses:
                    continue
            if big:
                variables[tensor.name] = tf.Variable(array, trainable=False)
            else:
                self._constants[tensor.name] = array
        self._variable_names = tuple(variables)
        # Tracked, so that they are saved with the SavedModel.
        self._variables = [*variables.values()]
        self._filter_variables = [f for f in self._filters.values() if isinstance(f, tf.Variable)]
        self._infos: dict[str, list[TensorInfo]] = {}

    # -- structure ---------------------------------------------------------------------------

    def _needed_nodes(self, output: str) -> list[onnx.NodeProto]:
        """The nodes the output depends on, in the graph's (topological) order."""
        needed: set[int] = set()
        index = {id(node): i for i, node in enumerate(self._nodes)}
        pending = [output]
        while pending:
            node = self._producer.get(pending.pop())
            if node is None or index[id(node)] in needed:
                continue
            needed.add(index[id(node)])
            pending.extend(i for i in node.input if i)
        nodes = [node for i, node in enumerate(self._nodes) if i in needed]
        computed = {out for node in nodes for out in node.output}
        seen: set[str] = set()
        for node in nodes:  # the specification requires topological order: check it
            late = [i for i in node.input if i in computed and i not in seen]
            if late:
                raise OnnxModelError(
                    f"{_node_label(node)} uses {late[0]!r} before it is computed (the graph "
                    "is not in topological order)"
                )
            seen.update(node.output)
        return nodes

    def _check_operators(self) -> None:
        for node in self._nodes:
            if node.domain not in ("", "ai.onnx") or node.op_type not in OPERATORS:
                domain = f" of domain {node.domain!r}" if node.domain not in ("", "ai.onnx") else ""
                raise UnsupportedOperator(
                    f"unsupported operator {node.op_type}{domain} ({_node_label(node)}, opset "
                    f"{self.opset}); supported: see docs/own-models.md"
                )

    def producer(self, name: str) -> onnx.NodeProto | None:
        """The node computing tensor `name` (None for the input and initializers)."""
        return self._producer.get(name)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of tensor `name` if it does not depend on the image and is small: an
        initializer, a Constant node's output (PyTorch's ReLU6 takes its Clip bounds from
        those) or what nodes compute from such constants alone (an Identity or Cast of one).
        None otherwise."""
        if name in self._constants:
            return self._constants[name]
        node = self._producer.get(name)
        if node is None or node.op_type not in _CONSTANT_FOLDING:
            return None
        inputs = [self.constant(i) if i else None for i in node.input]
        if any(value is None for value, i in zip(inputs, node.input, strict=True) if i):
            return None
        values = [None if value is None else Value(value) for value in inputs]
        outputs = self._apply(node, values)
        return outputs[list(node.output).index(name)].data

    @property
    def node_outputs(self) -> list[str]:
        """Every tensor computed by the needed nodes, in topological order."""
        return [out for node in self._nodes for out in node.output if out]

    # -- running -----------------------------------------------------------------------------

    @tf.autograph.experimental.do_not_convert  # plain Python over the nodes, traced as is
    def run(
        self,
        images: tf.Tensor,
        keep: Sequence[str] = (),
        *,
        channels_last: bool = False,
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The kept tensors and the logits for a batch of images.

        Images are in the model's own layout, or channels-last (N, H, W, C) when
        `channels_last` is set; then kept image-like (NCHW) tensors are returned channels-last
        too. Every other kept tensor is returned as the ONNX graph defines it. The kept tensors
        are the ones the rest of the graph consumes, so gradients with respect to them are
        the gradients of the model.
        """
        env = self._execute(images, keep, channels_last)
        return {name: env[name] for name in keep}, env[self.output_name]

    def _execute(
        self, images: tf.Tensor, keep: Iterable[str], channels_last: bool
    ) -> dict[str, tf.Tensor]:
        keep = set(keep)
        unknown = keep - set(self.node_outputs)
        if unknown:
            raise OnnxModelError(f"no tensor {sorted(unknown)[0]!r} in the graph")
        images = tf.cast(images, self.dtype)
        if channels_last and self.input_layout == "NCHW":
            start = Value(images, nhwc=True, layout="NCHW")
        else:
            start = Value(images, layout=self.input_layout)
        values: dict[str, Value] = {self.input_name: start}
        kept: dict[str, tf.Tensor] = {}
        for node in self._nodes:
            outputs = self._apply(node, self._inputs(node, values))
            for name, value in zip(node.output, outputs, strict=False):
                if not name:
                    continue
                if name in keep or name == self.output_name:
                    layers_last = channels_last and name != self.output_name
                    value, kept[name] = self._keep(value, layers_last)
                values[name] = value
        return kept

    def _inputs(self, node: onnx.NodeProto, values: dict[str, Value]) -> list[Value | None]:
        filters = node.op_type == "Conv" and node.input[1] in self._filters
        return [
            Value(self._filters[name], layout="HWIO")
            if filters and i == 1
            else (self._lookup(values, name) if name else None)
            for i, name in enumerate(node.input)
        ]

    def _lookup(self, values: dict[str, Value], name: str) -> Value:
        if name in values:
            return values[name]
        if name in self._constants:
            return Value(self._constants[name])
        if name in self._variable_names:
            return Value(self._variables[self._variable_names.index(name)])
        raise OnnxModelError(f"tensor {name!r} is used but never defined")

    def _keep(self, value: Value, channels_last: bool) -> tuple[Value, tf.Tensor]:
        """The tensor handed out for a kept value, and the value rebuilt on it (so that the
        rest of the graph depends on the very tensor handed out)."""
        if isinstance(value.data, np.ndarray):
            tensor = tf.constant(value.data)
            return replace(value, data=tensor, _view=None), tensor
        if channels_last and value.layout == "NCHW" and self.rank(value) == 4:
            if value.nhwc:
                return value, value.data
            tensor = tf.transpose(value.data, (0, 2, 3, 1))
            return Value(tensor, nhwc=True, layout="NCHW"), tensor
        if value.nhwc:
            tensor = self.view(value)
            return Value(tensor, layout=value.layout), tensor
        return value, value.data

    def _apply(self, node: onnx.NodeProto, inputs: list[Value | None]) -> list[Value]:
        handler = OPERATORS[node.op_type]
        constant = all(v is None or isinstance(v.data, np.ndarray) for v in inputs)
        try:
            if not constant:
                return handler(self, node, inputs)
            with tf.init_scope():  # computed once, eagerly, even while tracing
                outputs = handler(self, node, inputs)
            return [v if isinstance(v.data, np.ndarray) else Value(v.data.numpy()) for v in outputs]
        except (OnnxModelError, tf.errors.OpError, ValueError, TypeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            kind = UnsupportedOperator if isinstance(error, UnsupportedOperator) else OnnxModelError
            raise kind(f"{_node_label(node)} (opset {self.opset}): {message}") from error

    # -- value helpers -----------------------------------------------------------------------

    def shape(self, value: Value) -> list[int | None]:
        """Static ONNX-view shape (None for dimensions unknown while tracing)."""
        data = value.data
        dims = list(data.shape) if isinstance(data, np.ndarray) else data.shape.as_list()
        if value.nhwc:
            dims = [dims[axis] for axis in NHWC_AXIS]
        return dims

    def rank(self, value: Value) -> int:
        """Rank of the ONNX view."""
        return len(self.shape(value))

    def view(self, value: Value) -> tf.Tensor | np.ndarray:
        """The value as the ONNX graph defines it (NCHW for a channels-last one)."""
        if not value.nhwc:
            return value.data
        if value._view is None:
            _, c, h, w = self.shape(value)
            if c is not None and h is not None and w is not None and (c == 1 or h * w == 1):
                value._view = tf.reshape(value.data, [-1, c, h, w])  # same element order
            else:
                value._view = tf.transpose(value.data, (0, 3, 1, 2))
        return value._view

    def channels_last(self, value: Value) -> tf.Tensor | np.ndarray | None:
        """A value of rank <= 4 in channels-last storage (broadcastable against 4-D channels-
        last values), or None when its rank is higher."""
        if value.nhwc:
            return value.data
        dims = self.shape(value)
        if len(dims) > 4:
            return None
        if not dims:
            return value.data
        data = value.data
        if len(dims) < 4:
            if None in dims:
                return None
            new_shape = [1] * (4 - len(dims)) + dims
            data = (
                data.reshape(new_shape)
                if isinstance(data, np.ndarray)
                else tf.reshape(data, new_shape)
            )
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data.transpose(0, 2, 3, 1))
        return tf.transpose(data, (0, 2, 3, 1))

    def const(self, value: Value | None, what: str) -> np.ndarray:
        """The value as a numpy array; it must be known while tracing."""
        if value is None:
            raise OnnxModelError(f"{what} is missing")
        if isinstance(value.data, np.ndarray):
            return value.data
        raise UnsupportedOperator(f"{what} must be a constant here, not computed from the image")

    def float_const(self, array: np.ndarray) -> np.ndarray:
        """A constant array, float ones in the graph's dtype."""
        return array.astype(self.np_dtype) if array.dtype.kind == "f" else array

    def dynamic_dims(self, x: tf.Tensor | np.ndarray) -> list[int | tf.Tensor]:
        """Each dimension as an int when static, else as a scalar tensor."""
        if isinstance(x, np.ndarray):
            return list(x.shape)
        static = x.shape.as_list()
        if None not in static:
            return static
        dynamic = tf.shape(x, out_type=tf.int64)
        return [d if d is not None else dynamic[i] for i, d in enumerate(static)]

    # -- probing -----------------------------------------------------------------------------

    def tensor_infos(
        self, input_size: tuple[int, int] | None = None, token_grid: tuple[int, int] | None = None
    ) -> list[TensorInfo]:
        """Every tensor computed from the image, in topological order, with its shape, the
        operator producing it and its kind (see `TensorInfo`), from one eager run."""
        size = input_size or self.input_size
        if size is None:
            raise OnnxModelError("the model's input size is dynamic; give the input size")
        key = f"{size}:{token_grid}"  # a string: tf.Module saves only string-keyed mappings
        if key not in self._infos:
            self._infos[key] = self._probe(size, token_grid)
        return self._infos[key]

    def example_images(self, input_size: tuple[int, int], batch: int = INFO_BATCH) -> np.ndarray:
        """Random images in the model's layout (values 0..255)."""
        height, width = input_size
        shape = (
            (batch, self.input_channels, height, width)
            if self.input_layout == "NCHW"
            else (batch, height, width, self.input_channels)
        )
        return np.random.default_rng(0).uniform(0, 255, shape).astype(self.np_dtype)

    def _probe(self, size: tuple[int, int], token_grid: tuple[int, int] | None) -> list[TensorInfo]:
        values: dict[str, Value] = {
            self.input_name: Value(tf.constant(self.example_images(size)), layout=self.input_layout)
        }
        rows: list[TensorInfo] = []
        embeddings: list[tuple[tuple[int, int], int]] = []
        for node in self._nodes:
            outputs = self._apply(node, self._inputs(node, values))
            for name, value in zip(node.output, outputs, strict=False):
                if not name:
                    continue
                values[name] = value
                if isinstance(value.data, np.ndarray):
                    continue  # does not depend on the image
                info = self._describe(name, node.op_type, value, embeddings, token_grid, len(rows))
                if info.kind == "spatial" and node.op_type == "Conv":
                    embeddings.append((info.grid, info.channels))
                rows.append(info)
        return rows

    def _describe(
        self,
        name: str,
        op: str,
        value: Value,
        embeddings: list[tuple[tuple[int, int], int]],
        token_grid: tuple[int, int] | None,
        order: int,
    ) -> TensorInfo:
        dims = [int(d) for d in self.shape(value)]
        info = TensorInfo(name=name, shape=tuple(dims[1:]), op=op, order=order)
        if not dims or dims[0] != INFO_BATCH:
            return info
        if len(dims) == 4 and value.layout in ("NCHW", "NHWC"):
            _, c, h, w = dims if value.layout == "NCHW" else (dims[0], dims[3], *dims[1:3])
            if h > 1 and w > 1:
                return replace(info, kind="spatial", layout=value.layout, grid=(h, w), channels=c)
        if len(dims) == 3:
            found = token_layout(dims[1], dims[2], embeddings, token_grid)
            if found:
                grid, prefix = found
                return replace(info, kind="tokens", grid=grid, channels=dims[2], prefix=prefix)
        return info


def token_layout(
    count: int,
    width: int,
    embeddings: Sequence[tuple[tuple[int, int], int]],
    token_grid: tuple[int, int] | None = None,
) -> tuple[tuple[int, int], int] | None:
    """The patch grid of a sequence of `count` tokens of `width` channels and how many tokens
    come before it, or None if it is not a sequence of patch tokens.

    `embeddings` are the (grid, channels) of the convolutions so far, latest last: a patch
    embedding's grid and width. `token_grid` decides if given. Otherwise the sequence must
    hold a convolution's grid of tokens, at most MAX_PREFIX_TOKENS after a few leading ones,
    each as wide as that convolution's output (so that a CNN's reshapes, such as the
    (N, groups, C/groups*H*W) inside GroupNorm, are not taken for tokens). Only a model with no
    convolution at all (a linear patch embedding) falls back to the largest square grid.
    """
    if token_grid:
        h, w = token_grid
        prefix = count - h * w
        return (token_grid, prefix) if 0 <= prefix <= count - 4 and h > 1 and w > 1 else None
    for (h, w), channels in reversed(embeddings):
        prefix = count - h * w
        if 0 <= prefix <= MAX_PREFIX_TOKENS and h > 1 and w > 1 and channels == width:
            return (h, w), prefix
    if embeddings:
        return None
    for prefix in range(MAX_PREFIX_TOKENS + 1):
        side = math.isqrt(count - prefix) if count > prefix else 0
        if side > 1 and side * side == count - prefix:
            return (side, side), prefix
    return None
