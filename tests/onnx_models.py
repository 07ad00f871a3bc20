"""Tiny ONNX models built with `onnx.helper` (no PyTorch): operator checks, a CNN, a ViT.

Every model takes one image input "image" (batch axis symbolic) and its initializers are drawn
from a seeded generator, so a test can rebuild exactly the same model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    """Collects nodes and initializers; `name()` makes fresh tensor names."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self._count = 0

    def name(self, prefix: str = "t") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, array, name: str | None = None) -> str:
        name = name or self.name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int, scale: float = 0.3, name: str | None = None) -> str:
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32), name)

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, **attrs):
        """Add a node; returns its output name (or names when `outputs` > 1)."""
        outs = [name or self.name(op_type.lower())]
        outs += [self.name(op_type.lower()) for _ in range(outputs - 1)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if outputs == 1 else outs

    def model(
        self,
        output: str,
        input_shape: Sequence[int | str],
        opset: int = OPSET,
        extra_inputs: Sequence[onnx.ValueInfoProto] = (),
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "test",
            [
                helper.make_tensor_value_info("image", TensorProto.FLOAT, list(input_shape)),
                *extra_inputs,
            ],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        return model


def conv(b: GraphBuilder, x: str, c_in: int, c_out: int, k: int = 3, name=None, **attrs) -> str:
    group = attrs.get("group", 1)
    w = b.weight(c_out, c_in // group, k, k, scale=1.0 / np.sqrt(c_in * k * k / group))
    return b.op("Conv", x, w, b.weight(c_out, scale=0.1), name=name, kernel_shape=[k, k], **attrs)


def layer_norm(b: GraphBuilder, x: str, dim: int, name: str) -> str:
    """A LayerNormalization over the last axis (opset 17), with random scale and shift."""
    return b.op(
        "LayerNormalization",
        x,
        b.weight(dim, scale=1.0),
        b.weight(dim, scale=0.1),
        axis=-1,
        epsilon=1e-6,
        name=name,
    )


def tiny_cnn(classes: int = 5, size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A CNN with what exported user models carry: its own per-channel normalisation of
    0..255 pixels, GroupNorm (as torch decomposes it), SiLU, a depthwise convolution, a
    squeeze-excite gate, a residual Add, BatchNorm, ReLU6 (Clip), global pooling, a Gemm and a
    final Softmax."""
    b = GraphBuilder(seed)
    mean = b.const(np.array([123.675, 116.28, 103.53], np.float32).reshape(1, 3, 1, 1))
    std = b.const(np.array([58.395, 57.12, 57.375], np.float32).reshape(1, 3, 1, 1))
    x = b.op("Div", b.op("Sub", "image", mean), std)
    x = conv(b, x, 3, 8, strides=[2, 2], pads=[1, 1, 1, 1], name="stem")
    # GroupNorm(2 groups) as torch exports it at opset 17: InstanceNorm on (N, G, -1).
    grouped = b.op("Reshape", x, b.const(np.array([0, 2, -1], np.int64)))
    normed = b.op(
        "InstanceNormalization",
        grouped,
        b.const(np.ones(2, np.float32)),
        b.const(np.zeros(2, np.float32)),
        epsilon=1e-5,
    )
    x = b.op("Reshape", normed, b.op("Shape", x))
    x = b.op("Add", b.op("Mul", x, b.weight(8, 1, 1, scale=1.0)), b.weight(8, 1, 1, scale=0.1))
    x = b.op("Mul", x, b.op("Sigmoid", x), name="silu")
    skip = x
    x = conv(b, x, 8, 8, group=8, pads=[1, 1, 1, 1], name="depthwise")
    gate = b.op("GlobalAveragePool", x)
    gate = b.op("Sigmoid", conv(b, gate, 8, 8, k=1))
    x = b.op("Mul", x, gate)
    x = b.op("Add", x, skip, name="residual")
    x = conv(b, x, 8, 16, strides=[2, 2], pads=[1, 1, 1, 1])
    x = b.op(
        "BatchNormalization",
        x,
        b.weight(16, scale=1.0),
        b.weight(16, scale=0.1),
        b.weight(16, scale=0.1),
        b.const(np.full(16, 0.5, np.float32)),
        epsilon=1e-3,
    )
    x = b.op(
        "Clip", x, b.const(np.array(0, np.float32)), b.const(np.array(6, np.float32)), name="head"
    )
    x = b.op("Flatten", b.op("GlobalAveragePool", x), name="features")
    logits = b.op("Gemm", x, b.weight(classes, 16), b.weight(classes, scale=0.1), transB=1)
    return b.model(b.op("Softmax", logits, axis=1), ["batch", 3, size, size])


def groupnorm_cnn(groups: int = 4) -> onnx.ModelProto:
    """Conv, GroupNorm as torch exports it (InstanceNormalization on (N, groups, -1)) with as
    many groups as a square patch grid has tokens (4 = 2 x 2), ReLU ("relu"), a linear head."""
    b = GraphBuilder()
    x = conv(b, "image", 3, 8, pads=[1, 1, 1, 1], name="conv")
    grouped = b.op("Reshape", x, b.const(np.array([0, groups, -1])), name="grouped")
    ones, zeros = b.const(np.ones(groups, np.float32)), b.const(np.zeros(groups, np.float32))
    normed = b.op("InstanceNormalization", grouped, ones, zeros, name="instnorm")
    x = b.op("Reshape", normed, b.op("Shape", x))
    x = b.op("Add", b.op("Mul", x, b.weight(8, 1, 1)), b.weight(8, 1, 1))
    x = b.op("Flatten", b.op("GlobalAveragePool", b.op("Relu", x, name="relu")))
    return b.model(b.op("Gemm", x, b.weight(2, 8), transB=1), ["batch", 3, 16, 16])


def tiny_vit(
    classes: int = 4,
    size: int = 32,
    patch: int = 8,
    dim: int = 16,
    heads: int = 2,
    depth: int = 2,
    seed: int = 0,
    pool: str = "class",
) -> onnx.ModelProto:
    """A class-token ViT as torch exports one at opset 17: patch convolution, flatten and
    transpose, a class token expanded to the batch and concatenated, learned position
    embeddings, pre-norm blocks (LayerNorm, attention with MatMul/Softmax, GELU through Erf),
    a final LayerNorm and the class token into the head (`pool="mean"`: no class token, the
    mean of the patch tokens). Block i's first LayerNorm is named f"block{i}.norm1"."""
    b = GraphBuilder(seed)
    grid = size // patch
    tokens = grid * grid + (pool == "class")
    x = b.op("Div", "image", b.const(np.array(255.0, np.float32)))
    x = conv(b, x, 3, dim, k=patch, strides=[patch, patch], name="patch_embed")
    batch = b.op(
        "Unsqueeze", b.op("Gather", b.op("Shape", x), b.const(np.array(0))), b.const(np.array([0]))
    )
    flat = b.op("Reshape", x, b.const(np.array([0, dim, -1])))
    x = b.op("Transpose", flat, perm=[0, 2, 1])
    if pool == "class":
        shape = b.op("Concat", batch, b.const(np.array([1, dim])), axis=0)
        cls = b.op("Expand", b.weight(1, 1, dim, scale=0.5), shape)
        x = b.op("Concat", cls, x, axis=1)
    x = b.op("Add", x, b.weight(1, tokens, dim, scale=0.5), name="embedded")
    head_dim = dim // heads
    for i in range(depth):
        h = layer_norm(b, x, dim, f"block{i}.norm1")
        qkv = b.op("Add", b.op("MatMul", h, b.weight(dim, 3 * dim)), b.weight(3 * dim, scale=0.1))
        qkv = b.op(
            "Reshape",
            qkv,
            b.op("Concat", batch, b.const(np.array([tokens, 3, heads, head_dim])), axis=0),
        )
        qkv = b.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])
        q, k, v = (b.op("Gather", qkv, b.const(np.array(j)), axis=0) for j in range(3))
        scores = b.op("MatMul", q, b.op("Transpose", k, perm=[0, 1, 3, 2]))
        scores = b.op("Mul", scores, b.const(np.array(head_dim**-0.5, np.float32)))
        attn = b.op("MatMul", b.op("Softmax", scores, axis=-1), v)
        attn = b.op(
            "Reshape",
            b.op("Transpose", attn, perm=[0, 2, 1, 3]),
            b.op("Concat", batch, b.const(np.array([tokens, dim])), axis=0),
        )
        attn = b.op("Add", b.op("MatMul", attn, b.weight(dim, dim)), b.weight(dim, scale=0.1))
        x = b.op("Add", x, attn, name=f"block{i}.attn_out")
        h = layer_norm(b, x, dim, f"block{i}.norm2")
        h = b.op("Add", b.op("MatMul", h, b.weight(dim, 2 * dim)), b.weight(2 * dim, scale=0.1))
        erf = b.op("Erf", b.op("Div", h, b.const(np.array(np.sqrt(2), np.float32))))
        h = b.op(
            "Mul",
            b.op("Mul", h, b.op("Add", erf, b.const(np.array(1, np.float32)))),
            b.const(np.array(0.5, np.float32)),
        )
        h = b.op("Add", b.op("MatMul", h, b.weight(2 * dim, dim)), b.weight(dim, scale=0.1))
        x = b.op("Add", x, h, name=f"block{i}.out")
    x = layer_norm(b, x, dim, "norm")
    if pool == "class":
        pooled = b.op("Gather", x, b.const(np.array(0)), axis=1)
    else:
        pooled = b.op("ReduceMean", x, axes=[1], keepdims=0)
    logits = b.op("Gemm", pooled, b.weight(classes, dim), b.weight(classes, scale=0.1), transB=1)
    return b.model(logits, ["batch", 3, size, size])
