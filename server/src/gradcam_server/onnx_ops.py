"""ONNX element-wise, shape and tensor operators for `OnnxGraph`.

Element-wise operators work on channels-last storage as it is; shape arithmetic known while
tracing stays numpy, so that the served graph holds only image-dependent operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from onnx import helper, numpy_helper

from gradcam_server.onnx_values import (
    NHWC_AXIS,
    UnsupportedOperator,
    Value,
    as_tensors,
    attributes,
    implements,
    plain,
    shape_arg,
)

if TYPE_CHECKING:
    from gradcam_server.onnx_graph import OnnxGraph


# -- element-wise ------------------------------------------------------------------------------


def _image_layout(g: OnnxGraph, inputs: Sequence[Value | None], rank: int) -> str | None:
    """The layout an element-wise result inherits from a 4-D input."""
    if rank != 4:
        return None
    for value in inputs:
        if value is not None and value.layout and g.rank(value) == 4:
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


@implements(*_UNARY)
def _unary(g: OnnxGraph, node, inputs):
    (x, *_) = inputs
    data = x.data
    if isinstance(data, np.ndarray) and node.op_type in ("Identity", "Dropout"):
        return [x]
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise UnsupportedOperator("Dropout's mask output is not supported")
    return [replace(x, data=_UNARY[node.op_type](data), known=x.known, _view=None)]


def _elementwise(g: OnnxGraph, x: Value, fn: Callable[[tf.Tensor], tf.Tensor]) -> list[Value]:
    return [replace(x, data=fn(tf.convert_to_tensor(x.data)), known=None, _view=None)]


@implements("LeakyRelu")
def _leaky_relu(g, node, inputs):
    alpha = attributes(node).get("alpha", 0.01)
    return _elementwise(g, inputs[0], lambda x: tf.nn.leaky_relu(x, alpha))


@implements("Elu")
def _elu(g, node, inputs):
    alpha = attributes(node).get("alpha", 1.0)
    return _elementwise(g, inputs[0], lambda x: tf.where(x > 0, x, alpha * (tf.exp(x) - 1)))


@implements("Selu")
def _selu(g, node, inputs):
    attrs = attributes(node)
    alpha, gamma = (
        attrs.get("alpha", 1.67326319217681884765625),
        attrs.get("gamma", 1.05070102214813232421875),
    )
    return _elementwise(g, inputs[0], lambda x: gamma * tf.where(x > 0, x, alpha * (tf.exp(x) - 1)))


@implements("HardSigmoid")
def _hard_sigmoid(g, node, inputs):
    attrs = attributes(node)
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return _elementwise(g, inputs[0], lambda x: tf.clip_by_value(alpha * x + beta, 0.0, 1.0))


@implements("HardSwish")
def _hard_swish(g, node, inputs):
    return _elementwise(g, inputs[0], lambda x: x * tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0))


@implements("Gelu")
def _gelu(g, node, inputs):
    approximate = attributes(node).get("approximate", "none")
    if approximate == "tanh":
        return _elementwise(g, inputs[0], lambda x: tf.nn.gelu(x, approximate=True))
    return _elementwise(g, inputs[0], lambda x: 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0))))


@implements("Clip")
def _clip(g, node, inputs):
    x = inputs[0]
    dtype = tf.convert_to_tensor(x.data).dtype
    if g.opset < 11:
        attrs = attributes(node)
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


@implements("Cast")
def _cast(g, node, inputs):
    (x,) = inputs
    to = helper.tensor_dtype_to_np_dtype(attributes(node)["to"])
    if to.kind == "f":
        to = np.dtype(g.np_dtype)
    if isinstance(x.data, np.ndarray):
        return [Value(x.data.astype(to))]
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


def binary(g: OnnxGraph, fn: Callable, a: Value, b: Value) -> Value:
    """An element-wise operation with broadcasting, on channels-last storage when possible."""
    rank = max(g.rank(a), g.rank(b))
    if (a.nhwc or b.nhwc) and rank == 4:
        x, y = g.channels_last(a), g.channels_last(b)
        if x is not None and y is not None:
            return Value(fn(*as_tensors(x, y)), nhwc=True, layout="NCHW")
    x, y = g.view(a), g.view(b)
    return plain(fn(*as_tensors(x, y)), _image_layout(g, (a, b), rank))


@implements(*_BINARY, "Mean")
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


@implements("Mod")
def _mod(g, node, inputs):
    fmod = attributes(node).get("fmod", 0)
    fn = tf.truncatemod if fmod else tf.math.floormod
    return [binary(g, fn, inputs[0], inputs[1])]


@implements("Where")
def _where(g, node, inputs):
    condition, x, y = inputs
    rank = max(g.rank(v) for v in inputs)
    if rank == 4 and any(v.nhwc for v in inputs):
        parts = [g.channels_last(v) for v in inputs]
        if all(p is not None for p in parts):
            a, b = as_tensors(parts[1], parts[2])
            return [Value(tf.where(parts[0], a, b), nhwc=True, layout="NCHW")]
    a, b = as_tensors(g.view(x), g.view(y))
    return [plain(tf.where(g.view(condition), a, b), _image_layout(g, inputs, rank))]


# -- shapes ------------------------------------------------------------------------------------


def _known(value: Value) -> np.ndarray | None:
    """Entries of a shape-like integer value known while tracing (object array)."""
    if isinstance(value.data, np.ndarray):
        return value.data.astype(object) if value.data.ndim <= 1 else None
    return value.known


def _from_known(known: np.ndarray, tensor_fn: Callable[[], tf.Tensor]) -> Value:
    known = np.asarray(known, dtype=object)
    if all(k is not None for k in known.reshape(-1)):
        return Value(np.array(known.tolist(), dtype=np.int64).reshape(known.shape))
    return Value(tensor_fn(), known=known)


@implements("Shape")
def _shape_op(g: OnnxGraph, node, inputs):
    (x,) = inputs
    dims = g.shape(x)
    attrs = attributes(node)
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    picked = dims[slice(start, end)]
    known = np.array(picked, dtype=object)
    shape = _from_known(known, lambda: tf.shape(g.view(x), out_type=tf.int64)[start:end])
    if len(picked) == len(dims):
        shape.layout = x.layout  # a Reshape to this shape restores the layout
    return [shape]


@implements("Size")
def _size(g: OnnxGraph, node, inputs):
    dims = g.shape(inputs[0])
    if None in dims:
        return [plain(tf.size(g.view(inputs[0]), out_type=tf.int64))]
    return [Value(np.array(math.prod(dims), dtype=np.int64))]


def _axes(g: OnnxGraph, node, inputs, position: int, name: str = "axes") -> list[int] | None:
    attrs = attributes(node)
    if name in attrs:
        return [int(a) for a in attrs[name]]
    if len(inputs) > position and inputs[position] is not None:
        return [int(a) for a in g.const(inputs[position], name).reshape(-1)]
    return None


def _reshape_to(g: OnnxGraph, x: Value, target: list[int | tf.Tensor]) -> Value:
    """Reshape an ONNX view, using channels-last storage directly when the orders agree."""
    if x.nhwc:
        _, c, h, w = g.shape(x)
        if c is not None and h is not None and w is not None and (h * w == 1 or c == 1):
            return plain(tf.reshape(x.data, shape_arg(target)))
    data = g.view(x)
    if isinstance(data, np.ndarray) and all(isinstance(d, (int, np.integer)) for d in target):
        return Value(data.reshape([int(d) for d in target]))
    return plain(tf.reshape(data, shape_arg(target)))


def _is_grid(target: list[int | tf.Tensor], dims: list[int | None]) -> bool:
    """Whether reshaping (B, T, C) to `target` (B, h, w, C) lays the T tokens out on an h x w
    grid (not, say, attention heads unfolded from the batch: (B*heads, T, d) to
    (B, heads, T, d))."""
    h, w = target[1], target[2]
    if not all(isinstance(d, (int, np.integer)) for d in (h, w)) or dims[1] is None:
        return True  # sizes unknown while tracing: taken for a grid
    return int(h) * int(w) == dims[1]


@implements("Reshape")
def _reshape(g: OnnxGraph, node, inputs):
    x, shape = inputs
    allow_zero = attributes(node).get("allowzero", 0)
    dims = g.shape(x)
    known = _known(shape)
    if known is None:  # computed entirely at run time
        target = tf.convert_to_tensor(shape.data)
        if not allow_zero:  # 0 copies the input's dimension (those beyond its rank: invalid)
            current = tf.shape(g.view(x), out_type=target.dtype)[: target.shape[0]]
            current = tf.concat([current, target[len(dims) :]], 0)
            target = tf.where(target == 0, current, target)
        return [plain(tf.reshape(g.view(x), target))]
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
        elif last_kept and x.layout != "NCHW" and len(dims) == 3 and _is_grid(target, dims):
            result.layout = "NHWC"  # (B, h*w, C) tokens to a (B, h, w, C) grid
    return [result]


@implements("Flatten")
def _flatten(g: OnnxGraph, node, inputs):
    (x,) = inputs
    axis = int(attributes(node).get("axis", 1))
    axis = axis + g.rank(x) if axis < 0 else axis  # may equal the rank: (N..., 1)
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


@implements("Transpose")
def _transpose(g: OnnxGraph, node, inputs):
    (x,) = inputs
    rank = g.rank(x)
    perm = list(attributes(node).get("perm", range(rank - 1, -1, -1)))
    layout = _permute_layout(x.layout, perm) if rank == 4 else None
    if isinstance(x.data, np.ndarray):
        return [Value(np.transpose(x.data, perm))]
    storage_perm = [NHWC_AXIS[p] for p in perm] if x.nhwc else perm
    if storage_perm == list(range(rank)):
        return [plain(x.data, layout)]
    if rank == 4 and [storage_perm[a] for a in (0, 2, 3, 1)] == [0, 1, 2, 3]:
        # The result's channels-last form is the stored data itself.
        return [Value(x.data, nhwc=True, layout=layout if layout == "NCHW" else None)]
    return [plain(tf.transpose(x.data, storage_perm), layout)]


@implements("Squeeze", "Unsqueeze")
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
        return [Value(data.reshape(new))]
    if node.op_type == "Squeeze":
        return [plain(tf.squeeze(data, axis=axes))]
    for axis in axes:
        data = tf.expand_dims(data, axis)
    return [plain(data)]


def _unknown_entries(g: OnnxGraph, value: Value) -> np.ndarray | None:
    """A 1-D integer tensor of static length, none of whose entries is known while tracing."""
    (length,) = g.shape(value)
    integer = tf.as_dtype(value.data.dtype).is_integer
    return np.array([None] * length, dtype=object) if integer and length is not None else None


@implements("Concat")
def _concat(g: OnnxGraph, node, inputs):
    values = [v for v in inputs if v is not None]
    rank = g.rank(values[0])
    axis = int(attributes(node)["axis"]) % rank
    knowns = [_known(v) for v in values]
    if rank == 1:  # a shape: what is known of it, the rest (say the batch size) None
        knowns = [
            _unknown_entries(g, v) if k is None else k for k, v in zip(knowns, values, strict=True)
        ]
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
            Value(tf.concat([v.data for v in values], NHWC_AXIS[axis]), nhwc=True, layout="NCHW")
        ]
    parts = [g.view(v) for v in values]
    dtype = next((p.dtype for p in parts if not isinstance(p, np.ndarray)), None)
    if dtype is None:
        return [Value(np.concatenate(parts, axis))]
    parts = [tf.constant(p, dtype=dtype) if isinstance(p, np.ndarray) else p for p in parts]
    return [plain(tf.concat(parts, axis), _image_layout(g, values, rank))]


@implements("Split")
def _split(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = attributes(node)
    rank = g.rank(x)
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
        parts = tf.split(x.data, sizes, axis=NHWC_AXIS[axis])
        return [Value(p, nhwc=True, layout="NCHW") for p in parts]
    data = g.view(x)
    if isinstance(data, np.ndarray):
        return [Value(p) for p in np.split(data, np.cumsum(sizes)[:-1], axis=axis)]
    return [plain(p, x.layout if rank == 4 else None) for p in tf.split(data, sizes, axis=axis)]


@implements("Slice")
def _slice(g: OnnxGraph, node, inputs):
    x = inputs[0]
    rank = g.rank(x)
    if g.opset < 10:
        attrs = attributes(node)
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
        return [Value(x.data[tuple(storage)], nhwc=True, layout="NCHW")]
    data = g.view(x)
    return [Value(data[tuple(index)], layout=x.layout if rank == 4 else None)]


@implements("Gather")
def _gather(g: OnnxGraph, node, inputs):
    x, indices = inputs
    rank = g.rank(x)
    axis = int(attributes(node).get("axis", 0)) % rank
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
            return [Value(np.take(data, index, axis=axis))]
        return [plain(tf.gather(data, index, axis=axis))]
    data = tf.convert_to_tensor(g.view(x))
    index = tf.convert_to_tensor(indices.data)
    index = tf.where(index < 0, index + tf.shape(data, out_type=index.dtype)[axis], index)
    return [plain(tf.gather(data, index, axis=axis))]


@implements("Expand")
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
    return [plain(y)]


@implements("Tile")
def _tile(g: OnnxGraph, node, inputs):
    x, repeats = inputs
    return [plain(tf.tile(g.view(x), tf.convert_to_tensor(repeats.data)))]


_SCATTER = {
    "none": tf.tensor_scatter_nd_update,
    "add": tf.tensor_scatter_nd_add,
    "max": tf.tensor_scatter_nd_max,
    "min": tf.tensor_scatter_nd_min,
}


@implements("ScatterND")
def _scatter_nd(g: OnnxGraph, node, inputs):
    """Slice assignment (`x[..., a:b] = y` in PyTorch). With constant operands (a Swin
    attention mask) it is computed once while tracing, as every constant operation is."""
    x, indices, updates = inputs
    reduction = attributes(node).get("reduction", "none")
    if reduction not in _SCATTER:
        raise UnsupportedOperator(f"ScatterND with reduction {reduction!r}")
    data, new = as_tensors(g.view(x), g.view(updates))
    index = tf.convert_to_tensor(indices.data)
    if index.dtype not in (tf.int32, tf.int64):
        index = tf.cast(index, tf.int64)
    rank = g.rank(x)
    return [plain(_SCATTER[reduction](data, index, new), x.layout if rank == 4 else None)]


@implements("Constant")
def _constant(g: OnnxGraph, node, inputs):
    attrs = attributes(node)
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
    return [Value(g.float_const(array))]


@implements("ConstantOfShape")
def _constant_of_shape(g: OnnxGraph, node, inputs):
    attrs = attributes(node)
    fill = (
        numpy_helper.to_array(attrs["value"]).reshape(-1)[0] if "value" in attrs else np.float32(0)
    )
    fill = g.float_const(np.array(fill))
    shape = inputs[0]
    if isinstance(shape.data, np.ndarray):
        return [Value(np.full(shape.data.astype(np.int64), fill, dtype=fill.dtype))]
    return [plain(tf.fill(shape.data, tf.constant(fill)))]


@implements("Range")
def _range(g: OnnxGraph, node, inputs):
    start, limit, delta = (g.view(v) for v in inputs)
    return [plain(tf.range(start, limit, delta))]


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


@implements(*_REDUCE)
def _reduce(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = attributes(node)
    keepdims = bool(attrs.get("keepdims", 1))
    rank = g.rank(x)
    axes = _axes(g, node, inputs, 1)
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = sorted(a % rank for a in axes)
    fn = _REDUCE[node.op_type]
    if x.nhwc:
        stored = [NHWC_AXIS[a] for a in axes]
        remaining = [NHWC_AXIS[a] for a in range(4) if a not in axes]
        if keepdims:
            return [Value(fn(x.data, axis=stored, keepdims=True), nhwc=True, layout="NCHW")]
        if remaining == sorted(remaining):
            return [plain(fn(x.data, axis=stored, keepdims=False))]
    layout = x.layout if keepdims and rank == 4 else None
    return [plain(fn(g.view(x), axis=axes, keepdims=keepdims), layout)]


@implements("ArgMax", "ArgMin")
def _argmax(g: OnnxGraph, node, inputs):
    attrs = attributes(node)
    if attrs.get("select_last_index", 0):
        raise UnsupportedOperator(f"{node.op_type} with select_last_index")
    data = g.view(inputs[0])
    axis = int(attrs.get("axis", 0))
    fn = tf.argmax if node.op_type == "ArgMax" else tf.argmin
    y = fn(data, axis=axis, output_type=tf.int64)
    if attrs.get("keepdims", 1):
        y = tf.expand_dims(y, axis)
    return [plain(y)]


@implements("Pad")
def _pad(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = attributes(node)
    mode = attrs.get("mode", "constant")
    rank = g.rank(x)
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
        return [Value(y[tuple(crops[a] for a in (0, 2, 3, 1))], nhwc=True, layout="NCHW")]
    data = tf.convert_to_tensor(g.view(x))
    if mode == "constant":
        y = tf.pad(data, per_axis, constant_values=tf.cast(value, data.dtype))
    elif mode == "reflect":
        y = tf.pad(data, per_axis, mode="REFLECT")
    elif mode == "edge" and max(max(p) for p in per_axis) <= 1:
        y = tf.pad(data, per_axis, mode="SYMMETRIC")
    else:
        raise UnsupportedOperator(f"Pad mode {mode!r} with these pads")
    return [plain(y[tuple(crops)], x.layout if rank == 4 else None)]
