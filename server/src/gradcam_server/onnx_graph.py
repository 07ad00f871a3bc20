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

Values that do not depend on the image (initializers, shape arithmetic) are computed once while
the graph is traced, so the served graph holds only the image-dependent operations. Large
float initializers become variables (saved beside the graph, not inside it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import tensorflow as tf
from onnx import helper, numpy_helper

VARIABLE_SIZE = 4096
"""Float initializers with at least this many elements are saved as variables."""

MAX_PREFIX_TOKENS = 8
"""At most this many leading tokens (class, distillation, register tokens) before the patches."""

INFO_BATCH = 2
"""Batch size of the probing run that finds shapes (tensors whose first axis is not the batch,
such as attention heads folded into it, show another size there)."""

_NHWC_AXIS = (0, 3, 1, 2)
"""Storage axis of each ONNX (NCHW) axis of a channels-last value."""


class OnnxModelError(ValueError):
    """The ONNX model cannot be served as it is (one line, naming the problem)."""


class UnsupportedOperator(OnnxModelError):
    """An ONNX operator (or an attribute of one) that the interpreter does not implement."""


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


@dataclass
class _Value:
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


_Handler = Callable[["OnnxGraph", onnx.NodeProto, list], list]
_OPS: dict[str, _Handler] = {}


def _op(*names: str) -> Callable[[_Handler], _Handler]:
    def register(handler: _Handler) -> _Handler:
        for name in names:
            _OPS[name] = handler
        return handler

    return register


def supported_operators() -> list[str]:
    """The ONNX operators the interpreter implements, sorted."""
    return sorted(_OPS)


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


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
        self._np_dtype = self.dtype.as_numpy_dtype
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
                array = array.astype(self._np_dtype)
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
            if node.domain not in ("", "ai.onnx") or node.op_type not in _OPS:
                domain = f" of domain {node.domain!r}" if node.domain not in ("", "ai.onnx") else ""
                raise UnsupportedOperator(
                    f"unsupported operator {node.op_type}{domain} ({_node_label(node)}, opset "
                    f"{self.opset}); supported: see docs/own-models.md"
                )

    def producer(self, name: str) -> onnx.NodeProto | None:
        """The node computing tensor `name` (None for the input and initializers)."""
        return self._producer.get(name)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a small initializer, or None if `name` is not one."""
        return self._constants.get(name)

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
            start = _Value(images, nhwc=True, layout="NCHW")
        else:
            start = _Value(images, layout=self.input_layout)
        values: dict[str, _Value] = {self.input_name: start}
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

    def _inputs(self, node: onnx.NodeProto, values: dict[str, _Value]) -> list[_Value | None]:
        filters = node.op_type == "Conv" and node.input[1] in self._filters
        return [
            _Value(self._filters[name], layout="HWIO")
            if filters and i == 1
            else (self._lookup(values, name) if name else None)
            for i, name in enumerate(node.input)
        ]

    def _lookup(self, values: dict[str, _Value], name: str) -> _Value:
        if name in values:
            return values[name]
        if name in self._constants:
            return _Value(self._constants[name])
        if name in self._variable_names:
            return _Value(self._variables[self._variable_names.index(name)])
        raise OnnxModelError(f"tensor {name!r} is used but never defined")

    def _keep(self, value: _Value, channels_last: bool) -> tuple[_Value, tf.Tensor]:
        """The tensor handed out for a kept value, and the value rebuilt on it (so that the
        rest of the graph depends on the very tensor handed out)."""
        if isinstance(value.data, np.ndarray):
            tensor = tf.constant(value.data)
            return replace(value, data=tensor, _view=None), tensor
        if channels_last and value.layout == "NCHW" and self._rank(value) == 4:
            if value.nhwc:
                return value, value.data
            tensor = tf.transpose(value.data, (0, 2, 3, 1))
            return _Value(tensor, nhwc=True, layout="NCHW"), tensor
        if value.nhwc:
            tensor = self.view(value)
            return _Value(tensor, layout=value.layout), tensor
        return value, value.data

    def _apply(self, node: onnx.NodeProto, inputs: list[_Value | None]) -> list[_Value]:
        handler = _OPS[node.op_type]
        constant = all(v is None or isinstance(v.data, np.ndarray) for v in inputs)
        try:
            if not constant:
                return handler(self, node, inputs)
            with tf.init_scope():  # computed once, eagerly, even while tracing
                outputs = handler(self, node, inputs)
            return [
                v if isinstance(v.data, np.ndarray) else _Value(v.data.numpy()) for v in outputs
            ]
        except (OnnxModelError, tf.errors.OpError, ValueError, TypeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            kind = UnsupportedOperator if isinstance(error, UnsupportedOperator) else OnnxModelError
            raise kind(f"{_node_label(node)} (opset {self.opset}): {message}") from error

    # -- value helpers -----------------------------------------------------------------------

    def shape(self, value: _Value) -> list[int | None]:
        """Static ONNX-view shape (None for dimensions unknown while tracing)."""
        data = value.data
        dims = list(data.shape) if isinstance(data, np.ndarray) else data.shape.as_list()
        if value.nhwc:
            dims = [dims[axis] for axis in _NHWC_AXIS]
        return dims

    def _rank(self, value: _Value) -> int:
        return len(self.shape(value))

    def view(self, value: _Value) -> tf.Tensor | np.ndarray:
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

    def channels_last(self, value: _Value) -> tf.Tensor | np.ndarray | None:
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

    def const(self, value: _Value | None, what: str) -> np.ndarray:
        """The value as a numpy array; it must be known while tracing."""
        if value is None:
            raise OnnxModelError(f"{what} is missing")
        if isinstance(value.data, np.ndarray):
            return value.data
        raise UnsupportedOperator(f"{what} must be a constant here, not computed from the image")

    def float_const(self, array: np.ndarray) -> np.ndarray:
        return array.astype(self._np_dtype) if array.dtype.kind == "f" else array

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
        return np.random.default_rng(0).uniform(0, 255, shape).astype(self._np_dtype)

    def _probe(self, size: tuple[int, int], token_grid: tuple[int, int] | None) -> list[TensorInfo]:
        values: dict[str, _Value] = {
            self.input_name: _Value(
                tf.constant(self.example_images(size)), layout=self.input_layout
            )
        }
        rows: list[TensorInfo] = []
        grids: list[tuple[int, int]] = []
        for node in self._nodes:
            outputs = self._apply(node, self._inputs(node, values))
            for name, value in zip(node.output, outputs, strict=False):
                if not name:
                    continue
                values[name] = value
                if isinstance(value.data, np.ndarray):
                    continue  # does not depend on the image
                info = self._describe(name, node.op_type, value, grids, token_grid, len(rows))
                if info.kind == "spatial" and info.layout == "NCHW":
                    grids.append(info.grid)
                rows.append(info)
        return rows

    def _describe(
        self,
        name: str,
        op: str,
        value: _Value,
        grids: list[tuple[int, int]],
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
            found = token_layout(dims[1], grids, token_grid)
            if found:
                grid, prefix = found
                return replace(info, kind="tokens", grid=grid, channels=dims[2], prefix=prefix)
        return info


def token_layout(
    count: int, grids: Sequence[tuple[int, int]], token_grid: tuple[int, int] | None = None
) -> tuple[tuple[int, int], int] | None:
    """The patch grid of a sequence of `count` tokens and how many tokens come before it.

    `token_grid` decides if given; else the grid of the latest patch-embedding (spatial)
    output it fits, else the largest square leaving at most MAX_PREFIX_TOKENS in front.
    """
    candidates = [token_grid] if token_grid else [*reversed(grids)]
    for h, w in candidates:
        prefix = count - h * w
        if 0 <= prefix <= (count - 4 if token_grid else MAX_PREFIX_TOKENS) and h > 1 and w > 1:
            return (h, w), prefix
    if token_grid:
        return None
    for prefix in range(MAX_PREFIX_TOKENS + 1):
        side = math.isqrt(count - prefix) if count > prefix else 0
        if side > 1 and side * side == count - prefix:
            return (side, side), prefix
    return None


# ----------------------------------------------------------------------------------------------
# Operators. Each handler takes the graph, the node and its input values (None for an omitted
# optional input) and returns its output values.
# ----------------------------------------------------------------------------------------------


def _plain(value: tf.Tensor | np.ndarray, layout: str | None = None) -> _Value:
    return _Value(value, layout=layout)


def _image_layout(g: OnnxGraph, inputs: Sequence[_Value | None], rank: int) -> str | None:
    """The layout an element-wise result inherits from a 4-D input."""
    if rank != 4:
        return None
    for value in inputs:
        if value is not None and value.layout and g._rank(value) == 4:
            return value.layout
    return None


_UNARY: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "Relu": tf.nn.relu,
    "Sigmoid": tf.sigmoid,
    "Tanh": tf.tanh,
    "Exp": tf.exp,
    "Log": tf.math.log,
    "Sqrt": tf.sqrt,
    "Neg": tf.negative,
    "Abs": tf.abs,
    "Reciprocal": tf.math.reciprocal,
    "Erf": tf.math.erf,
    "Floor": tf.floor,
    "Ceil": tf.math.ceil,
    "Round": tf.round,
    "Sign": tf.sign,
    "Sin": tf.sin,
    "Cos": tf.cos,
    "Softplus": tf.nn.softplus,
    "Softsign": tf.nn.softsign,
    "Not": tf.logical_not,
    "Mish": lambda x: x * tf.tanh(tf.nn.softplus(x)),
    "Identity": tf.identity,
    "Dropout": tf.identity,
}


@_op(*_UNARY)
def _unary(g: OnnxGraph, node, inputs):
    (x, *_) = inputs
    data = x.data
    if isinstance(data, np.ndarray) and node.op_type in ("Identity", "Dropout"):
        return [x]
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise UnsupportedOperator("Dropout's mask output is not supported")
    return [replace(x, data=_UNARY[node.op_type](data), known=x.known, _view=None)]


def _elementwise(g: OnnxGraph, x: _Value, fn: Callable[[tf.Tensor], tf.Tensor]) -> list[_Value]:
    return [replace(x, data=fn(tf.convert_to_tensor(x.data)), known=None, _view=None)]


@_op("LeakyRelu")
def _leaky_relu(g, node, inputs):
    alpha = _attributes(node).get("alpha", 0.01)
    return _elementwise(g, inputs[0], lambda x: tf.nn.leaky_relu(x, alpha))


@_op("Elu")
def _elu(g, node, inputs):
    alpha = _attributes(node).get("alpha", 1.0)
    return _elementwise(g, inputs[0], lambda x: tf.where(x > 0, x, alpha * (tf.exp(x) - 1)))


@_op("Selu")
def _selu(g, node, inputs):
    attrs = _attributes(node)
    alpha, gamma = (
        attrs.get("alpha", 1.67326319217681884765625),
        attrs.get("gamma", 1.05070102214813232421875),
    )
    return _elementwise(g, inputs[0], lambda x: gamma * tf.where(x > 0, x, alpha * (tf.exp(x) - 1)))


@_op("HardSigmoid")
def _hard_sigmoid(g, node, inputs):
    attrs = _attributes(node)
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return _elementwise(g, inputs[0], lambda x: tf.clip_by_value(alpha * x + beta, 0.0, 1.0))


@_op("HardSwish")
def _hard_swish(g, node, inputs):
    return _elementwise(g, inputs[0], lambda x: x * tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0))


@_op("Gelu")
def _gelu(g, node, inputs):
    approximate = _attributes(node).get("approximate", "none")
    if approximate == "tanh":
        return _elementwise(g, inputs[0], lambda x: tf.nn.gelu(x, approximate=True))
    return _elementwise(g, inputs[0], lambda x: 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0))))


@_op("Clip")
def _clip(g, node, inputs):
    x = inputs[0]
    dtype = tf.convert_to_tensor(x.data).dtype
    if g.opset < 11:
        attrs = _attributes(node)
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low = inputs[1] if len(inputs) > 1 else None
        high = inputs[2] if len(inputs) > 2 else None
        low = None if low is None else g.view(low)
        high = None if high is None else g.view(high)

    def clip(t: tf.Tensor) -> tf.Tensor:
        if low is not None:
            t = tf.maximum(t, tf.cast(low, dtype))
        if high is not None:
            t = tf.minimum(t, tf.cast(high, dtype))
        return t

    return _elementwise(g, x, clip)


@_op("Cast")
def _cast(g, node, inputs):
    (x,) = inputs
    to = helper.tensor_dtype_to_np_dtype(_attributes(node)["to"])
    if to.kind == "f":
        to = np.dtype(g._np_dtype)
    if isinstance(x.data, np.ndarray):
        return [_Value(x.data.astype(to))]
    return [replace(x, data=tf.cast(x.data, tf.as_dtype(to)), _view=None)]


def _int_divide(x, y):
    if tf.convert_to_tensor(x).dtype.is_integer:
        return tf.truncatediv(x, y)
    return tf.math.divide(x, y)


_BINARY: dict[str, Callable] = {
    "Add": tf.add,
    "Sub": tf.subtract,
    "Mul": tf.multiply,
    "Div": _int_divide,
    "Pow": tf.pow,
    "Max": tf.maximum,
    "Min": tf.minimum,
    "Sum": tf.add,
    "Equal": tf.equal,
    "Less": tf.less,
    "LessOrEqual": tf.less_equal,
    "Greater": tf.greater,
    "GreaterOrEqual": tf.greater_equal,
    "And": tf.logical_and,
    "Or": tf.logical_or,
    "Xor": tf.math.logical_xor,
    "PRelu": lambda x, slope: tf.where(x >= 0, x, x * slope),
}


def _as_tensors(x, y) -> tuple[tf.Tensor, tf.Tensor]:
    """Both operands as tensors of one dtype (a numpy constant takes the tensor's dtype)."""
    x_is_np, y_is_np = isinstance(x, np.ndarray), isinstance(y, np.ndarray)
    if x_is_np and not y_is_np:
        y = tf.convert_to_tensor(y)
        return tf.constant(x, dtype=y.dtype), y
    if y_is_np and not x_is_np:
        x = tf.convert_to_tensor(x)
        return x, tf.constant(y, dtype=x.dtype)
    return tf.convert_to_tensor(x), tf.convert_to_tensor(y)


def binary(g: OnnxGraph, fn: Callable, a: _Value, b: _Value) -> _Value:
    """An element-wise operation with broadcasting, on channels-last storage when possible."""
    rank = max(g._rank(a), g._rank(b))
    if (a.nhwc or b.nhwc) and rank == 4:
        x, y = g.channels_last(a), g.channels_last(b)
        if x is not None and y is not None:
            return _Value(fn(*_as_tensors(x, y)), nhwc=True, layout="NCHW")
    x, y = g.view(a), g.view(b)
    return _plain(fn(*_as_tensors(x, y)), _image_layout(g, (a, b), rank))


@_op(*_BINARY, "Mean")
def _binary(g: OnnxGraph, node, inputs):
    if node.op_type == "Mean":
        total = inputs[0]
        for other in inputs[1:]:
            total = binary(g, tf.add, total, other)
        return [_elementwise(g, total, lambda t: t / len(inputs))[0]]
    fn = _BINARY[node.op_type]
    result = inputs[0]
    for other in inputs[1:]:
        result = binary(g, fn, result, other)
    return [result]


@_op("Mod")
def _mod(g, node, inputs):
    fmod = _attributes(node).get("fmod", 0)
    fn = tf.truncatemod if fmod else tf.math.floormod
    return [binary(g, fn, inputs[0], inputs[1])]


@_op("Where")
def _where(g, node, inputs):
    condition, x, y = inputs
    rank = max(g._rank(v) for v in inputs)
    if rank == 4 and any(v.nhwc for v in inputs):
        parts = [g.channels_last(v) for v in inputs]
        if all(p is not None for p in parts):
            a, b = _as_tensors(parts[1], parts[2])
            return [_Value(tf.where(parts[0], a, b), nhwc=True, layout="NCHW")]
    a, b = _as_tensors(g.view(x), g.view(y))
    return [_plain(tf.where(g.view(condition), a, b), _image_layout(g, inputs, rank))]


# -- convolution and pooling (channels-last storage) ---------------------------------------------


def _padding(
    g: OnnxGraph, node, spatial: Sequence[int | None], kernel: Sequence[int], strides, dilations
) -> list[tuple[int, int]] | str:
    """Explicit (begin, end) pads per spatial axis, or "SAME"/"VALID" for TensorFlow."""
    attrs = _attributes(node)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return "VALID"
    if auto_pad == "SAME_UPPER":
        return "SAME"
    if auto_pad == "SAME_LOWER":
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            if size is None:
                raise UnsupportedOperator("auto_pad SAME_LOWER needs a static input size")
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total - total // 2, total // 2))
        return pads
    flat = list(attrs.get("pads", [0] * (2 * len(kernel))))
    half = len(flat) // 2
    return [(flat[i], flat[i + half]) for i in range(half)]


def _named_padding(
    pads: list[tuple[int, int]], spatial, kernel, strides, dilations
) -> list[tuple[int, int]] | str:
    """TensorFlow's "VALID" or "SAME" when explicit pads equal them, else the pads."""
    if not any(any(p) for p in pads):
        return "VALID"
    same = []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        if size is None:
            return pads
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        same.append((total // 2, total - total // 2))
    return "SAME" if [tuple(p) for p in pads] == same else pads


def _conv_filter(g: OnnxGraph, weight: _Value) -> tf.Tensor | np.ndarray:
    """TensorFlow's (kh, kw, C/group, M) filter for ONNX (M, C/group, kh, kw) weights."""
    if weight.layout == "HWIO":  # transposed once, when the graph was loaded
        return weight.data
    data = g.view(weight)
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data.transpose(2, 3, 1, 0))
    return tf.transpose(data, (2, 3, 1, 0))


@_op("Conv")
def _conv(g: OnnxGraph, node, inputs):
    x, weight, *rest = inputs
    bias = rest[0] if rest else None
    if g._rank(x) != 4:
        raise UnsupportedOperator(f"Conv on a {g._rank(x)}-D input (only 2-D images)")
    attrs = _attributes(node)
    filters = _conv_filter(g, weight)
    *kernel, per_group, out_channels = (int(d) for d in filters.shape)
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    group = int(attrs.get("group", 1))
    data = g.channels_last(x)
    spatial = g.shape(x)[2:]
    padding = _padding(g, node, spatial, kernel, strides, dilations)
    if isinstance(padding, list):
        padding = _named_padding(padding, spatial, kernel, strides, dilations)
    data, filters = _as_tensors(data, filters)
    depthwise = group > 1 and per_group == 1 and strides[0] == strides[1]
    if depthwise and not (max(dilations) > 1 and max(strides) > 1):
        if isinstance(padding, list):  # grappler mishandles explicit depthwise paddings
            data, padding = _pad_nhwc(data, padding, 0.0), "VALID"
        filters = tf.reshape(filters, [*kernel, group, out_channels // group])
        y = tf.nn.depthwise_conv2d(data, filters, [1, *strides, 1], padding, dilations=dilations)
    else:
        if isinstance(padding, list):
            padding = [[0, 0], *[list(p) for p in padding], [0, 0]]
        y = tf.nn.conv2d(data, filters, strides, padding, dilations=dilations)
    if bias is not None:
        y = tf.nn.bias_add(y, tf.cast(g.view(bias), y.dtype))
    return [_Value(y, nhwc=True, layout="NCHW")]


def _pool_pads(
    g: OnnxGraph, node, spatial, kernel, strides, dilations
) -> tuple[list[tuple[int, int]], list[int]] | str:
    """Explicit pads and the extra end padding ceil_mode adds, or a TF padding name."""
    padding = _padding(g, node, spatial, kernel, strides, dilations)
    if isinstance(padding, str):
        return padding
    extra = [0] * len(kernel)
    if _attributes(node).get("ceil_mode", 0):
        for i, (size, k, s, d, (begin, end)) in enumerate(
            zip(spatial, kernel, strides, dilations, padding, strict=True)
        ):
            if size is None:
                raise UnsupportedOperator("ceil_mode needs a static input size")
            span = size + begin + end - ((k - 1) * d + 1)
            count = math.ceil(span / s) + 1
            if (count - 1) * s >= size + begin:
                count -= 1
            extra[i] = max((count - 1) * s + (k - 1) * d + 1 - (size + begin + end), 0)
    return padding, extra


def _pad_nhwc(data, pads, value) -> tf.Tensor:
    paddings = [[0, 0], *[list(p) for p in pads], [0, 0]]
    if not any(any(p) for p in paddings):
        return data
    return tf.pad(data, paddings, constant_values=value)


@_op("MaxPool", "AveragePool")
def _pool(g: OnnxGraph, node, inputs):
    x = inputs[0]
    if g._rank(x) != 4:
        raise UnsupportedOperator(f"{node.op_type} on a {g._rank(x)}-D input (only 2-D images)")
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedOperator("MaxPool's Indices output is not supported")
    attrs = _attributes(node)
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    if max(dilations) > 1:
        raise UnsupportedOperator(f"{node.op_type} with dilations {dilations}")
    data = tf.convert_to_tensor(g.channels_last(x))
    pads = _pool_pads(g, node, g.shape(x)[2:], kernel, strides, dilations)
    window = [1, *kernel, 1]
    step = [1, *strides, 1]
    if node.op_type == "MaxPool":
        if isinstance(pads, str):
            y = tf.nn.max_pool2d(data, window, step, pads)
        else:
            explicit, extra = pads
            full = [(b, e + x_) for (b, e), x_ in zip(explicit, extra, strict=True)]
            y = tf.nn.max_pool2d(_pad_nhwc(data, full, data.dtype.min), window, step, "VALID")
        return [_Value(y, nhwc=True, layout="NCHW")]
    if isinstance(pads, str):  # TensorFlow's SAME average excludes the padding, as ONNX's
        if pads == "SAME" and attrs.get("count_include_pad", 0):
            raise UnsupportedOperator("AveragePool SAME_UPPER with count_include_pad")
        y = tf.nn.avg_pool2d(data, window, step, pads)
        return [_Value(y, nhwc=True, layout="NCHW")]
    explicit, extra = pads
    full = [(b, e + x_) for (b, e), x_ in zip(explicit, extra, strict=True)]
    total = tf.nn.avg_pool2d(_pad_nhwc(data, full, 0.0), window, step, "VALID")
    if not any(any(p) for p in full):
        return [_Value(total, nhwc=True, layout="NCHW")]
    # The divisor counts the window's cells inside the input (and inside the explicit pads
    # when count_include_pad), never the extra cells ceil_mode adds.
    ones = tf.ones_like(data[:1, :, :, :1])
    if attrs.get("count_include_pad", 0):
        ones = _pad_nhwc(ones, explicit, 1.0)
        extra_only = [(0, x_) for x_ in extra]
        mask = _pad_nhwc(ones, extra_only, 0.0)
    else:
        mask = _pad_nhwc(ones, full, 0.0)
    counts = tf.nn.avg_pool2d(mask, window, step, "VALID")
    return [_Value(total / counts, nhwc=True, layout="NCHW")]


@_op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(g: OnnxGraph, node, inputs):
    (x,) = inputs
    reduce = tf.reduce_mean if node.op_type == "GlobalAveragePool" else tf.reduce_max
    if x.nhwc:
        return [_Value(reduce(x.data, axis=(1, 2), keepdims=True), nhwc=True, layout="NCHW")]
    rank = g._rank(x)
    y = reduce(g.view(x), axis=list(range(2, rank)), keepdims=True)
    return [_plain(y, "NCHW" if rank == 4 else None)]


# -- normalisation -----------------------------------------------------------------------------


def _per_channel(g: OnnxGraph, x: _Value, vector) -> tf.Tensor | np.ndarray:
    """A (C,) vector shaped to broadcast over the channel axis of `x` as stored."""
    if x.nhwc:
        return vector
    rank = g._rank(x)
    shape = [-1] + [1] * (rank - 2)
    return vector.reshape(shape) if isinstance(vector, np.ndarray) else tf.reshape(vector, shape)


def _stored(g: OnnxGraph, x: _Value) -> tf.Tensor:
    return tf.convert_to_tensor(x.data if x.nhwc else g.view(x))


@_op("BatchNormalization")
def _batch_norm(g: OnnxGraph, node, inputs):
    x, scale, bias, mean, var = inputs[:5]
    if len(node.output) > 1 and any(node.output[1:]):
        raise UnsupportedOperator("BatchNormalization in training mode")
    epsilon = _attributes(node).get("epsilon", 1e-5)
    data = _stored(g, x)
    scale, bias, mean, var = (tf.cast(g.view(v), data.dtype) for v in (scale, bias, mean, var))
    factor = scale / tf.sqrt(var + epsilon)
    shift = bias - mean * factor
    y = data * _per_channel(g, x, factor) + _per_channel(g, x, shift)
    return [_Value(y, nhwc=x.nhwc, layout="NCHW" if g._rank(x) == 4 else None)]


def _normalise(data: tf.Tensor, axes: list[int], epsilon: float) -> tf.Tensor:
    mean = tf.reduce_mean(data, axis=axes, keepdims=True)
    centred = data - mean
    variance = tf.reduce_mean(tf.square(centred), axis=axes, keepdims=True)
    return centred * tf.math.rsqrt(variance + epsilon)


@_op("InstanceNormalization")
def _instance_norm(g: OnnxGraph, node, inputs):
    x, scale, bias = inputs
    epsilon = _attributes(node).get("epsilon", 1e-5)
    data = _stored(g, x)
    rank = g._rank(x)
    axes = [1, 2] if x.nhwc else list(range(2, rank))
    scale, bias = (tf.cast(g.view(v), data.dtype) for v in (scale, bias))
    y = _normalise(data, axes, epsilon) * _per_channel(g, x, scale) + _per_channel(g, x, bias)
    return [_Value(y, nhwc=x.nhwc, layout="NCHW" if rank == 4 else None)]


@_op("GroupNormalization")
def _group_norm(g: OnnxGraph, node, inputs):
    x, scale, bias = inputs
    attrs = _attributes(node)
    epsilon, groups = attrs.get("epsilon", 1e-5), int(attrs["num_groups"])
    dims = g.shape(x)
    channels = dims[1]
    if channels is None or None in dims[2:]:
        raise UnsupportedOperator("GroupNormalization needs static channel and spatial sizes")
    data = _stored(g, x)
    scale, bias = (tf.cast(g.view(v), data.dtype) for v in (scale, bias))
    if scale.shape[0] == groups and groups != channels:  # opset 18: one scale per group
        scale = tf.repeat(scale, channels // groups)
        bias = tf.repeat(bias, channels // groups)
    if x.nhwc:
        n, h, w = -1, dims[2], dims[3]
        grouped = tf.reshape(data, [n, h, w, groups, channels // groups])
        normal = tf.reshape(_normalise(grouped, [1, 2, 4], epsilon), [n, h, w, channels])
    else:
        grouped = tf.reshape(data, [-1, groups, channels // groups, *dims[2:]])
        axes = list(range(2, len(dims) + 1))
        normal = tf.reshape(_normalise(grouped, axes, epsilon), [-1, channels, *dims[2:]])
    y = normal * _per_channel(g, x, scale) + _per_channel(g, x, bias)
    return [_Value(y, nhwc=x.nhwc, layout="NCHW" if len(dims) == 4 else None)]


@_op("LayerNormalization")
def _layer_norm(g: OnnxGraph, node, inputs):
    x, scale, *rest = inputs
    if len(node.output) > 1 and any(node.output[1:]):
        raise UnsupportedOperator("LayerNormalization's mean and inverse deviation outputs")
    attrs = _attributes(node)
    epsilon = attrs.get("epsilon", 1e-5)
    rank = g._rank(x)
    axis = int(attrs.get("axis", -1)) % rank
    data = tf.convert_to_tensor(g.view(x))
    y = _normalise(data, list(range(axis, rank)), epsilon) * tf.cast(g.view(scale), data.dtype)
    if rest and rest[0] is not None:
        y = y + tf.cast(g.view(rest[0]), data.dtype)
    return [_plain(y, x.layout if rank == 4 and not x.nhwc else None)]


@_op("Softmax", "LogSoftmax")
def _softmax(g: OnnxGraph, node, inputs):
    x = inputs[0]
    data = tf.convert_to_tensor(g.view(x))
    rank = g._rank(x)
    default = -1 if g.opset >= 13 else 1
    axis = int(_attributes(node).get("axis", default)) % rank
    fn = tf.nn.softmax if node.op_type == "Softmax" else tf.nn.log_softmax
    if g.opset >= 13 or axis == rank - 1:
        return [_plain(fn(data, axis=axis))]
    dims = g.dynamic_dims(data)  # before opset 13: over all axes from `axis` on, flattened
    flat = tf.reshape(data, _shape_arg([*dims[:axis], -1]))
    return [_plain(tf.reshape(fn(flat, axis=-1), tf.shape(data)))]


# -- linear algebra ----------------------------------------------------------------------------


def _shape_arg(dims: Sequence[int | tf.Tensor]) -> list[int] | tf.Tensor:
    if all(isinstance(d, (int, np.integer)) for d in dims):
        return [int(d) for d in dims]
    return tf.stack([tf.cast(d, tf.int64) for d in dims])


@_op("MatMul")
def _matmul(g: OnnxGraph, node, inputs):
    a, b = (g.view(v) for v in inputs)
    a, b = _as_tensors(a, b)
    rank_a, rank_b = len(a.shape), len(b.shape)
    if rank_a == 1:
        a = a[None]
    if rank_b == 1:
        b = b[:, None]
    if len(a.shape) > 2 and len(b.shape) == 2:  # one large product rather than a batch
        dims = g.dynamic_dims(a)
        flat = tf.reshape(a, [-1, dims[-1]])
        y = tf.reshape(tf.matmul(flat, b), _shape_arg([*dims[:-1], int(b.shape[1])]))
    else:
        y = tf.matmul(a, b)
    if rank_b == 1:
        y = y[..., 0]
    if rank_a == 1:
        y = y[..., 0, :] if rank_b != 1 else y[..., 0]
    return [_plain(y)]


@_op("Gemm")
def _gemm(g: OnnxGraph, node, inputs):
    a, b = _as_tensors(g.view(inputs[0]), g.view(inputs[1]))
    attrs = _attributes(node)
    y = tf.matmul(
        a, b, transpose_a=bool(attrs.get("transA", 0)), transpose_b=bool(attrs.get("transB", 0))
    )
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = alpha * y
    if len(inputs) > 2 and inputs[2] is not None:
        c = tf.cast(g.view(inputs[2]), y.dtype)
        y = y + (beta * c if beta != 1.0 else c)
    return [_plain(y)]


@_op("Einsum")
def _einsum(g: OnnxGraph, node, inputs):
    equation = _attributes(node)["equation"].replace(" ", "")
    tensors = [tf.convert_to_tensor(g.view(v)) for v in inputs]
    return [_plain(tf.einsum(equation, *tensors))]


# -- shapes ------------------------------------------------------------------------------------


def _known(value: _Value) -> np.ndarray | None:
    """Entries of a shape-like integer value known while tracing (object array)."""
    if isinstance(value.data, np.ndarray):
        return value.data.astype(object) if value.data.ndim <= 1 else None
    return value.known


def _from_known(known: np.ndarray, tensor_fn: Callable[[], tf.Tensor]) -> _Value:
    known = np.asarray(known, dtype=object)
    if all(k is not None for k in known.reshape(-1)):
        return _Value(np.array(known.tolist(), dtype=np.int64).reshape(known.shape))
    return _Value(tensor_fn(), known=known)


@_op("Shape")
def _shape_op(g: OnnxGraph, node, inputs):
    (x,) = inputs
    dims = g.shape(x)
    attrs = _attributes(node)
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    picked = dims[slice(start, end)]
    known = np.array(picked, dtype=object)
    shape = _from_known(known, lambda: tf.shape(g.view(x), out_type=tf.int64)[start:end])
    if len(picked) == len(dims):
        shape.layout = x.layout  # a Reshape to this shape restores the layout
    return [shape]


@_op("Size")
def _size(g: OnnxGraph, node, inputs):
    dims = g.shape(inputs[0])
    if None in dims:
        return [_plain(tf.size(g.view(inputs[0]), out_type=tf.int64))]
    return [_Value(np.array(math.prod(dims), dtype=np.int64))]


def _axes(g: OnnxGraph, node, inputs, position: int, name: str = "axes") -> list[int] | None:
    attrs = _attributes(node)
    if name in attrs:
        return [int(a) for a in attrs[name]]
    if len(inputs) > position and inputs[position] is not None:
        return [int(a) for a in g.const(inputs[position], name).reshape(-1)]
    return None


def _reshape_to(g: OnnxGraph, x: _Value, target: list[int | tf.Tensor]) -> _Value:
    """Reshape an ONNX view, using channels-last storage directly when the orders agree."""
    if x.nhwc:
        _, c, h, w = g.shape(x)
        if c is not None and h is not None and w is not None and (h * w == 1 or c == 1):
            return _plain(tf.reshape(x.data, _shape_arg(target)))
    data = g.view(x)
    if isinstance(data, np.ndarray) and all(isinstance(d, (int, np.integer)) for d in target):
        return _Value(data.reshape([int(d) for d in target]))
    return _plain(tf.reshape(data, _shape_arg(target)))


@_op("Reshape")
def _reshape(g: OnnxGraph, node, inputs):
    x, shape = inputs
    allow_zero = _attributes(node).get("allowzero", 0)
    dims = g.shape(x)
    known = _known(shape)
    if known is None:  # computed entirely at run time
        target = tf.convert_to_tensor(shape.data)
        if not allow_zero:
            current = tf.shape(g.view(x), out_type=target.dtype)[: target.shape[0]]
            target = tf.where(target == 0, current, target)
        return [_plain(tf.reshape(g.view(x), target))]
    target: list[int | tf.Tensor] = []
    for i, entry in enumerate(known.tolist()):
        if entry is None:
            entry = tf.convert_to_tensor(shape.data)[i]
        elif entry == 0 and not allow_zero:
            entry = dims[i] if dims[i] is not None else tf.shape(g.view(x), out_type=tf.int64)[i]
        target.append(entry)
    result = _reshape_to(g, x, target)
    if len(target) == 4 and shape.layout:
        result.layout = shape.layout
    elif len(target) == 4:
        last_kept = target[-1] == dims[-1] and isinstance(target[-1], int)
        same = len(dims) == 4 and list(target) == dims
        if same:
            result.layout = x.layout
        elif last_kept and x.layout != "NCHW" and len(dims) == 3:
            result.layout = "NHWC"  # (B, h*w, C) tokens to a (B, h, w, C) grid
    return [result]


@_op("Flatten")
def _flatten(g: OnnxGraph, node, inputs):
    (x,) = inputs
    axis = int(_attributes(node).get("axis", 1))
    axis = axis + g._rank(x) if axis < 0 else axis  # may equal the rank: (N..., 1)
    static = g.shape(x)
    if None not in static[axis:]:
        inner = math.prod(static[axis:])
        outer = math.prod(static[:axis]) if None not in static[:axis] else -1
        return [_reshape_to(g, x, [outer, inner])]
    dims = g.dynamic_dims(g.view(x))
    return [_reshape_to(g, x, [math.prod(dims[:axis]) if axis else 1, -1])]


def _permute_layout(layout: str | None, perm: Sequence[int]) -> str | None:
    if layout is None:
        return None
    order = "".join(layout[p] for p in perm)
    return order if order in ("NCHW", "NHWC") else None


@_op("Transpose")
def _transpose(g: OnnxGraph, node, inputs):
    (x,) = inputs
    rank = g._rank(x)
    perm = list(_attributes(node).get("perm", range(rank - 1, -1, -1)))
    layout = _permute_layout(x.layout, perm) if rank == 4 else None
    if isinstance(x.data, np.ndarray):
        return [_Value(np.transpose(x.data, perm))]
    storage_perm = [_NHWC_AXIS[p] for p in perm] if x.nhwc else perm
    if storage_perm == list(range(rank)):
        return [_plain(x.data, layout)]
    if rank == 4 and [storage_perm[a] for a in (0, 2, 3, 1)] == [0, 1, 2, 3]:
        # The result's channels-last form is the stored data itself.
        return [_Value(x.data, nhwc=True, layout=layout if layout == "NCHW" else None)]
    return [_plain(tf.transpose(x.data, storage_perm), layout)]


@_op("Squeeze", "Unsqueeze")
def _squeeze(g: OnnxGraph, node, inputs):
    x = inputs[0]
    axes = _axes(g, node, inputs, 1)
    dims = g.shape(x)
    if node.op_type == "Squeeze":
        if axes is None:
            axes = [i for i, d in enumerate(dims) if d == 1]
        axes = sorted(a % len(dims) for a in axes)
        new = [d for i, d in enumerate(dims) if i not in axes]
    else:
        rank = len(dims) + len(axes)
        axes = sorted(a % rank for a in axes)
        rest = iter(dims)
        new = [1 if i in axes else next(rest) for i in range(rank)]
    known = _known(x)
    if known is not None and not isinstance(x.data, np.ndarray) and None not in new:
        return [_from_known(known.reshape(new), lambda: tf.reshape(x.data, new))]
    data = g.view(x)
    if isinstance(data, np.ndarray):
        return [_Value(data.reshape(new))]
    if node.op_type == "Squeeze":
        return [_plain(tf.squeeze(data, axis=axes))]
    for axis in axes:
        data = tf.expand_dims(data, axis)
    return [_plain(data)]


@_op("Concat")
def _concat(g: OnnxGraph, node, inputs):
    values = [v for v in inputs if v is not None]
    rank = g._rank(values[0])
    axis = int(_attributes(node)["axis"]) % rank
    knowns = [_known(v) for v in values]
    if rank == 1 and all(k is not None for k in knowns):
        known = np.concatenate(knowns)
        return [
            _from_known(
                known,
                lambda: tf.concat(
                    [tf.cast(tf.convert_to_tensor(v.data), tf.int64) for v in values], 0
                ),
            )
        ]
    if rank == 4 and all(v.nhwc for v in values):
        return [
            _Value(tf.concat([v.data for v in values], _NHWC_AXIS[axis]), nhwc=True, layout="NCHW")
        ]
    parts = [g.view(v) for v in values]
    dtype = next((p.dtype for p in parts if not isinstance(p, np.ndarray)), None)
    if dtype is None:
        return [_Value(np.concatenate(parts, axis))]
    parts = [tf.constant(p, dtype=dtype) if isinstance(p, np.ndarray) else p for p in parts]
    return [_plain(tf.concat(parts, axis), _image_layout(g, values, rank))]


@_op("Split")
def _split(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = _attributes(node)
    rank = g._rank(x)
    axis = int(attrs.get("axis", 0)) % rank
    if "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    elif len(inputs) > 1 and inputs[1] is not None:
        sizes = [int(s) for s in g.const(inputs[1], "split")]
    else:
        count = int(attrs.get("num_outputs", len(node.output)))
        total = g.shape(x)[axis]
        if total is None:
            raise UnsupportedOperator("Split of an axis of unknown size")
        chunk = math.ceil(total / count)
        sizes = [chunk] * (count - 1) + [total - chunk * (count - 1)]
    if x.nhwc:
        parts = tf.split(x.data, sizes, axis=_NHWC_AXIS[axis])
        return [_Value(p, nhwc=True, layout="NCHW") for p in parts]
    data = g.view(x)
    if isinstance(data, np.ndarray):
        return [_Value(p) for p in np.split(data, np.cumsum(sizes)[:-1], axis=axis)]
    return [_plain(p, x.layout if rank == 4 else None) for p in tf.split(data, sizes, axis=axis)]


@_op("Slice")
def _slice(g: OnnxGraph, node, inputs):
    x = inputs[0]
    rank = g._rank(x)
    if g.opset < 10:
        attrs = _attributes(node)
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(s) for s in g.const(inputs[1], "starts")]
        ends = [int(s) for s in g.const(inputs[2], "ends")]
        axes = _axes(g, node, inputs, 3) or list(range(len(starts)))
        steps = (
            [int(s) for s in g.const(inputs[4], "steps")]
            if len(inputs) > 4 and inputs[4] is not None
            else [1] * len(starts)
        )
    index: list[slice] = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        clamp = 2**62  # TensorFlow clamps out-of-range bounds like Python; keep them in int64
        index[axis % rank] = slice(
            max(min(start, clamp), -clamp), max(min(end, clamp), -clamp), step
        )
    known = _known(x)
    if rank == 1 and known is not None and not isinstance(x.data, np.ndarray):
        return [_from_known(known[index[0]], lambda: x.data[index[0]])]
    if x.nhwc:
        storage = [index[a] for a in (0, 2, 3, 1)]
        return [_Value(x.data[tuple(storage)], nhwc=True, layout="NCHW")]
    data = g.view(x)
    return [_Value(data[tuple(index)], layout=x.layout if rank == 4 else None)]


@_op("Gather")
def _gather(g: OnnxGraph, node, inputs):
    x, indices = inputs
    rank = g._rank(x)
    axis = int(_attributes(node).get("axis", 0)) % rank
    known = _known(x)
    if isinstance(indices.data, np.ndarray):
        size = g.shape(x)[axis]
        index = indices.data.astype(np.int64)
        if (index < 0).any():
            if size is None:
                raise UnsupportedOperator("negative Gather indices on an axis of unknown size")
            index = np.where(index < 0, index + size, index)
        if rank == 1 and known is not None and not isinstance(x.data, np.ndarray):
            return [_from_known(np.take(known, index), lambda: tf.gather(x.data, index))]
        data = g.view(x)
        if isinstance(data, np.ndarray):
            return [_Value(np.take(data, index, axis=axis))]
        return [_plain(tf.gather(data, index, axis=axis))]
    data = tf.convert_to_tensor(g.view(x))
    index = tf.convert_to_tensor(indices.data)
    index = tf.where(index < 0, index + tf.shape(data, out_type=index.dtype)[axis], index)
    return [_plain(tf.gather(data, index, axis=axis))]


@_op("Expand")
def _expand(g: OnnxGraph, node, inputs):
    x, shape = inputs
    data = tf.convert_to_tensor(g.view(x))
    target = tf.cast(tf.convert_to_tensor(shape.data), tf.int64)
    full = tf.broadcast_dynamic_shape(tf.shape(data, out_type=tf.int64), target)
    y = tf.broadcast_to(data, full)
    known = _known(shape)
    if known is not None:  # keep what is known of the result's shape
        dims = g.shape(x)
        rank = max(len(dims), len(known))
        dims = [1] * (rank - len(dims)) + dims
        wanted = [1] * (rank - len(known)) + list(known)
        static = []
        for d, w in zip(dims, wanted, strict=True):
            if d is not None and d != 1:
                static.append(d)
            else:
                static.append(w if d == 1 or (w is not None and w != 1) else None)
        y.set_shape(static)
    return [_plain(y)]


@_op("Tile")
def _tile(g: OnnxGraph, node, inputs):
    x, repeats = inputs
    return [_plain(tf.tile(g.view(x), tf.convert_to_tensor(repeats.data)))]


@_op("Constant")
def _constant(g: OnnxGraph, node, inputs):
    attrs = _attributes(node)
    if "value" in attrs:
        array = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs:
        array = np.array(attrs["value_float"], dtype=np.float32)
    elif "value_floats" in attrs:
        array = np.array(attrs["value_floats"], dtype=np.float32)
    elif "value_int" in attrs:
        array = np.array(attrs["value_int"], dtype=np.int64)
    elif "value_ints" in attrs:
        array = np.array(attrs["value_ints"], dtype=np.int64)
    else:
        raise UnsupportedOperator(f"Constant with attribute {sorted(attrs)}")
    return [_Value(g.float_const(array))]


@_op("ConstantOfShape")
def _constant_of_shape(g: OnnxGraph, node, inputs):
    attrs = _attributes(node)
    fill = (
        numpy_helper.to_array(attrs["value"]).reshape(-1)[0] if "value" in attrs else np.float32(0)
    )
    fill = g.float_const(np.array(fill))
    shape = inputs[0]
    if isinstance(shape.data, np.ndarray):
        return [_Value(np.full(shape.data.astype(np.int64), fill, dtype=fill.dtype))]
    return [_plain(tf.fill(shape.data, tf.constant(fill)))]


@_op("Range")
def _range(g: OnnxGraph, node, inputs):
    start, limit, delta = (g.view(v) for v in inputs)
    return [_plain(tf.range(start, limit, delta))]


_REDUCE: dict[str, Callable] = {
    "ReduceMean": tf.reduce_mean,
    "ReduceSum": tf.reduce_sum,
    "ReduceMax": tf.reduce_max,
    "ReduceMin": tf.reduce_min,
    "ReduceProd": tf.reduce_prod,
    "ReduceSumSquare": lambda x, axis, keepdims: tf.reduce_sum(tf.square(x), axis, keepdims),
    "ReduceL2": lambda x, axis, keepdims: tf.sqrt(tf.reduce_sum(tf.square(x), axis, keepdims)),
    "ReduceLogSumExp": tf.reduce_logsumexp,
}


@_op(*_REDUCE)
def _reduce(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = _attributes(node)
    keepdims = bool(attrs.get("keepdims", 1))
    rank = g._rank(x)
    axes = _axes(g, node, inputs, 1)
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = sorted(a % rank for a in axes)
    fn = _REDUCE[node.op_type]
    if x.nhwc:
        stored = [_NHWC_AXIS[a] for a in axes]
        remaining = [_NHWC_AXIS[a] for a in range(4) if a not in axes]
        if keepdims:
            return [_Value(fn(x.data, axis=stored, keepdims=True), nhwc=True, layout="NCHW")]
        if remaining == sorted(remaining):
            return [_plain(fn(x.data, axis=stored, keepdims=False))]
    layout = x.layout if keepdims and rank == 4 else None
    return [_plain(fn(g.view(x), axis=axes, keepdims=keepdims), layout)]


@_op("ArgMax", "ArgMin")
def _argmax(g: OnnxGraph, node, inputs):
    attrs = _attributes(node)
    if attrs.get("select_last_index", 0):
        raise UnsupportedOperator(f"{node.op_type} with select_last_index")
    data = g.view(inputs[0])
    axis = int(attrs.get("axis", 0))
    fn = tf.argmax if node.op_type == "ArgMax" else tf.argmin
    y = fn(data, axis=axis, output_type=tf.int64)
    if attrs.get("keepdims", 1):
        y = tf.expand_dims(y, axis)
    return [_plain(y)]


@_op("Pad")
def _pad(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = _attributes(node)
    mode = attrs.get("mode", "constant")
    rank = g._rank(x)
    if g.opset < 11:
        pads = list(attrs.get("pads", []))
        value = attrs.get("value", 0.0)
        axes = list(range(rank))
    else:
        pads = [int(p) for p in g.const(inputs[1], "pads")]
        value = (
            g.const(inputs[2], "constant_value").reshape(-1)[0]
            if len(inputs) > 2 and inputs[2] is not None
            else 0
        )
        axes = _axes(g, node, inputs, 3) or list(range(rank))
    half = len(pads) // 2
    per_axis = [[0, 0] for _ in range(rank)]
    for i, axis in enumerate(axes):
        per_axis[axis % rank] = [pads[i], pads[i + half]]
    crops = [slice(-min(b, 0) or None, min(e, 0) or None) for b, e in per_axis]
    per_axis = [[max(b, 0), max(e, 0)] for b, e in per_axis]
    if x.nhwc and mode == "constant":
        data = tf.convert_to_tensor(x.data)
        stored = [per_axis[a] for a in (0, 2, 3, 1)]
        y = tf.pad(data, stored, constant_values=tf.cast(value, data.dtype))
        return [_Value(y[tuple(crops[a] for a in (0, 2, 3, 1))], nhwc=True, layout="NCHW")]
    data = tf.convert_to_tensor(g.view(x))
    if mode == "constant":
        y = tf.pad(data, per_axis, constant_values=tf.cast(value, data.dtype))
    elif mode == "reflect":
        y = tf.pad(data, per_axis, mode="REFLECT")
    elif mode == "edge" and max(max(p) for p in per_axis) <= 1:
        y = tf.pad(data, per_axis, mode="SYMMETRIC")
    else:
        raise UnsupportedOperator(f"Pad mode {mode!r} with these pads")
    return [_plain(y[tuple(crops)], x.layout if rank == 4 else None)]


@_op("Resize", "Upsample")
def _resize(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = _attributes(node)
    mode = attrs.get("mode", "nearest")
    if g._rank(x) != 4:
        raise UnsupportedOperator(f"{node.op_type} of a {g._rank(x)}-D tensor")
    dims = g.shape(x)
    if None in dims[2:]:
        raise UnsupportedOperator(f"{node.op_type} needs a static spatial size")
    sizes = None
    if node.op_type == "Resize" and len(inputs) > 3 and inputs[3] is not None:
        sizes = [int(s) for s in g.const(inputs[3], "sizes")][-2:]
    else:
        position = 1 if node.op_type == "Upsample" or g.opset < 11 else 2
        scales = g.const(inputs[position], "scales") if len(inputs) > position else None
        if scales is None or scales.size == 0:
            raise UnsupportedOperator(f"{node.op_type} without scales or sizes")
        if abs(scales[0] - 1) > 0 or abs(scales[1] - 1) > 0:
            raise UnsupportedOperator(f"{node.op_type} of the batch or channel axis")
        sizes = [math.floor(d * s) for d, s in zip(dims[2:], scales[2:], strict=True)]
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    data = tf.convert_to_tensor(g.channels_last(x))
    if mode == "nearest":
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        integer = all(s % d == 0 for s, d in zip(sizes, dims[2:], strict=True))
        if not (integer and transform in ("asymmetric", "half_pixel") and nearest == "floor") and (
            not (integer and g.opset < 11) and not (integer and transform == "asymmetric")
        ):
            raise UnsupportedOperator(
                f"Resize nearest with {transform} and {nearest} (integer factors supported)"
            )
        factors = [s // d for s, d in zip(sizes, dims[2:], strict=True)]
        y = tf.repeat(tf.repeat(data, factors[0], axis=1), factors[1], axis=2)
    elif mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel"):
        y = tf.image.resize(data, sizes, method="bilinear", antialias=False)
    elif mode == "linear" and transform == "align_corners":
        y = tf.compat.v1.image.resize_bilinear(data, sizes, align_corners=True)
    else:
        raise UnsupportedOperator(f"Resize mode {mode!r} with {transform}")
    return [_Value(tf.cast(y, data.dtype), nhwc=True, layout="NCHW")]
