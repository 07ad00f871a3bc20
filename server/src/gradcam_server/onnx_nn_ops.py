"""ONNX convolution, pooling, normalisation, softmax, matrix product and resize operators for
`OnnxGraph`; image operators keep their outputs channels-last."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from gradcam_server.onnx_values import (
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


# -- convolution and pooling (channels-last storage) -------------------------------------------


def _padding(
    g: OnnxGraph, node, spatial: Sequence[int | None], kernel: Sequence[int], strides, dilations
) -> list[tuple[int, int]] | str:
    """Explicit (begin, end) pads per spatial axis, or "SAME"/"VALID" for TensorFlow."""
    attrs = attributes(node)
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


def _conv_filter(g: OnnxGraph, weight: Value) -> tf.Tensor | np.ndarray:
    """TensorFlow's (kh, kw, C/group, M) filter for ONNX (M, C/group, kh, kw) weights."""
    if weight.layout == "HWIO":  # transposed once, when the graph was loaded
        return weight.data
    data = g.view(weight)
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data.transpose(2, 3, 1, 0))
    return tf.transpose(data, (2, 3, 1, 0))


@implements("Conv")
def _conv(g: OnnxGraph, node, inputs):
    x, weight, *rest = inputs
    bias = rest[0] if rest else None
    if g.rank(x) != 4:
        raise UnsupportedOperator(f"Conv on a {g.rank(x)}-D input (only 2-D images)")
    attrs = attributes(node)
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
    data, filters = as_tensors(data, filters)
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
    return [Value(y, nhwc=True, layout="NCHW")]


def _pool_pads(
    g: OnnxGraph, node, spatial, kernel, strides, dilations
) -> tuple[list[tuple[int, int]], list[int]] | str:
    """Explicit pads and the extra end padding ceil_mode adds, or a TF padding name."""
    padding = _padding(g, node, spatial, kernel, strides, dilations)
    if isinstance(padding, str):
        return padding
    extra = [0] * len(kernel)
    if attributes(node).get("ceil_mode", 0):
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


@implements("MaxPool", "AveragePool")
def _pool(g: OnnxGraph, node, inputs):
    x = inputs[0]
    if g.rank(x) != 4:
        raise UnsupportedOperator(f"{node.op_type} on a {g.rank(x)}-D input (only 2-D images)")
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedOperator("MaxPool's Indices output is not supported")
    attrs = attributes(node)
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
        return [Value(y, nhwc=True, layout="NCHW")]
    if isinstance(pads, str):  # TensorFlow's SAME average excludes the padding, as ONNX's
        if pads == "SAME" and attrs.get("count_include_pad", 0):
            raise UnsupportedOperator("AveragePool SAME_UPPER with count_include_pad")
        y = tf.nn.avg_pool2d(data, window, step, pads)
        return [Value(y, nhwc=True, layout="NCHW")]
    explicit, extra = pads
    full = [(b, e + x_) for (b, e), x_ in zip(explicit, extra, strict=True)]
    total = tf.nn.avg_pool2d(_pad_nhwc(data, full, 0.0), window, step, "VALID")
    if not any(any(p) for p in full):
        return [Value(total, nhwc=True, layout="NCHW")]
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
    return [Value(total / counts, nhwc=True, layout="NCHW")]


@implements("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(g: OnnxGraph, node, inputs):
    (x,) = inputs
    reduce = tf.reduce_mean if node.op_type == "GlobalAveragePool" else tf.reduce_max
    if x.nhwc:
        return [Value(reduce(x.data, axis=(1, 2), keepdims=True), nhwc=True, layout="NCHW")]
    rank = g.rank(x)
    y = reduce(g.view(x), axis=list(range(2, rank)), keepdims=True)
    return [plain(y, "NCHW" if rank == 4 else None)]


# -- normalisation -----------------------------------------------------------------------------


def _per_channel(g: OnnxGraph, x: Value, vector) -> tf.Tensor | np.ndarray:
    """A (C,) vector shaped to broadcast over the channel axis of `x` as stored."""
    if x.nhwc:
        return vector
    rank = g.rank(x)
    shape = [-1] + [1] * (rank - 2)
    return vector.reshape(shape) if isinstance(vector, np.ndarray) else tf.reshape(vector, shape)


def _stored(g: OnnxGraph, x: Value) -> tf.Tensor:
    return tf.convert_to_tensor(x.data if x.nhwc else g.view(x))


@implements("BatchNormalization")
def _batch_norm(g: OnnxGraph, node, inputs):
    x, scale, bias, mean, var = inputs[:5]
    if len(node.output) > 1 and any(node.output[1:]):
        raise UnsupportedOperator("BatchNormalization in training mode")
    epsilon = attributes(node).get("epsilon", 1e-5)
    data = _stored(g, x)
    scale, bias, mean, var = (tf.cast(g.view(v), data.dtype) for v in (scale, bias, mean, var))
    factor = scale / tf.sqrt(var + epsilon)
    shift = bias - mean * factor
    y = data * _per_channel(g, x, factor) + _per_channel(g, x, shift)
    return [Value(y, nhwc=x.nhwc, layout="NCHW" if g.rank(x) == 4 else None)]


def _normalise(data: tf.Tensor, axes: list[int], epsilon: float) -> tf.Tensor:
    mean = tf.reduce_mean(data, axis=axes, keepdims=True)
    centred = data - mean
    variance = tf.reduce_mean(tf.square(centred), axis=axes, keepdims=True)
    return centred * tf.math.rsqrt(variance + epsilon)


@implements("InstanceNormalization")
def _instance_norm(g: OnnxGraph, node, inputs):
    x, scale, bias = inputs
    epsilon = attributes(node).get("epsilon", 1e-5)
    data = _stored(g, x)
    rank = g.rank(x)
    axes = [1, 2] if x.nhwc else list(range(2, rank))
    scale, bias = (tf.cast(g.view(v), data.dtype) for v in (scale, bias))
    y = _normalise(data, axes, epsilon) * _per_channel(g, x, scale) + _per_channel(g, x, bias)
    return [Value(y, nhwc=x.nhwc, layout="NCHW" if rank == 4 else None)]


@implements("GroupNormalization")
def _group_norm(g: OnnxGraph, node, inputs):
    x, scale, bias = inputs
    attrs = attributes(node)
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
    return [Value(y, nhwc=x.nhwc, layout="NCHW" if len(dims) == 4 else None)]


@implements("LayerNormalization")
def _layer_norm(g: OnnxGraph, node, inputs):
    x, scale, *rest = inputs
    if len(node.output) > 1 and any(node.output[1:]):
        raise UnsupportedOperator("LayerNormalization's mean and inverse deviation outputs")
    attrs = attributes(node)
    epsilon = attrs.get("epsilon", 1e-5)
    rank = g.rank(x)
    axis = int(attrs.get("axis", -1)) % rank
    data = tf.convert_to_tensor(g.view(x))
    y = _normalise(data, list(range(axis, rank)), epsilon) * tf.cast(g.view(scale), data.dtype)
    if rest and rest[0] is not None:
        y = y + tf.cast(g.view(rest[0]), data.dtype)
    return [plain(y, x.layout if rank == 4 and not x.nhwc else None)]


@implements("Softmax", "LogSoftmax")
def _softmax(g: OnnxGraph, node, inputs):
    x = inputs[0]
    data = tf.convert_to_tensor(g.view(x))
    rank = g.rank(x)
    default = -1 if g.opset >= 13 else 1
    axis = int(attributes(node).get("axis", default)) % rank
    fn = tf.nn.softmax if node.op_type == "Softmax" else tf.nn.log_softmax
    if g.opset >= 13 or axis == rank - 1:
        return [plain(fn(data, axis=axis))]
    dims = g.dynamic_dims(data)  # before opset 13: over all axes from `axis` on, flattened
    flat = tf.reshape(data, shape_arg([*dims[:axis], -1]))
    return [plain(tf.reshape(fn(flat, axis=-1), tf.shape(data)))]


# -- linear algebra ----------------------------------------------------------------------------


@implements("MatMul")
def _matmul(g: OnnxGraph, node, inputs):
    a, b = (g.view(v) for v in inputs)
    a, b = as_tensors(a, b)
    rank_a, rank_b = len(a.shape), len(b.shape)
    if rank_a == 1:
        a = a[None]
    if rank_b == 1:
        b = b[:, None]
    if len(a.shape) > 2 and len(b.shape) == 2:  # one large product rather than a batch
        dims = g.dynamic_dims(a)
        flat = tf.reshape(a, [-1, dims[-1]])
        y = tf.reshape(tf.matmul(flat, b), shape_arg([*dims[:-1], int(b.shape[1])]))
    else:
        y = tf.matmul(a, b)
    if rank_b == 1:
        y = y[..., 0]
    if rank_a == 1:
        y = y[..., 0, :] if rank_b != 1 else y[..., 0]
    # A linear map of a channels-last image's channels (Swin's (N, H, W, C) blocks) keeps its grid.
    channels_last = inputs[0].layout == "NHWC" and rank_a == 4 and rank_b == 2
    return [plain(y, "NHWC" if channels_last else None)]


@implements("Gemm")
def _gemm(g: OnnxGraph, node, inputs):
    a, b = as_tensors(g.view(inputs[0]), g.view(inputs[1]))
    attrs = attributes(node)
    y = tf.matmul(
        a, b, transpose_a=bool(attrs.get("transA", 0)), transpose_b=bool(attrs.get("transB", 0))
    )
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = alpha * y
    if len(inputs) > 2 and inputs[2] is not None:
        c = tf.cast(g.view(inputs[2]), y.dtype)
        y = y + (beta * c if beta != 1.0 else c)
    return [plain(y)]


@implements("Einsum")
def _einsum(g: OnnxGraph, node, inputs):
    equation = attributes(node)["equation"].replace(" ", "")
    tensors = [tf.convert_to_tensor(g.view(v)) for v in inputs]
    return [plain(tf.einsum(equation, *tensors))]


# -- resizing (channels-last storage) ----------------------------------------------------------


@implements("Resize", "Upsample")
def _resize(g: OnnxGraph, node, inputs):
    x = inputs[0]
    attrs = attributes(node)
    mode = attrs.get("mode", "nearest")
    if g.rank(x) != 4:
        raise UnsupportedOperator(f"{node.op_type} of a {g.rank(x)}-D tensor")
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
    return [Value(tf.cast(y, data.dtype), nhwc=True, layout="NCHW")]
