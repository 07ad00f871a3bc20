"""ONNX models interpreted with TensorFlow ops, against onnxruntime (an independent runtime).

Each operator runs in a tiny graph on an image input, eagerly and traced, both from NCHW
images and from channels-last ones (the serving path); the tiny CNN and ViT of `onnx_models`
give logits within 1e-4 (relative) of onnxruntime's.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper
from onnx_models import GraphBuilder, conv, groupnorm_cnn, tiny_cnn, tiny_vit

from gradcam_server.onnx_graph import OnnxGraph, OnnxModelError, UnsupportedOperator, token_layout

SHAPE = (2, 3, 8, 8)


def reference(model: onnx.ModelProto, images: np.ndarray, outputs=()) -> list[np.ndarray]:
    """onnxruntime's values of the graph output, then of `outputs` (intermediate tensors)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for name in outputs:
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run([model.graph.output[0].name, *outputs], {"image": images})


def images(shape=SHAPE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(np.float32)


def assert_close(got, want, rtol=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(got - want).max()) / scale < rtol


def check(model: onnx.ModelProto, x: np.ndarray | None = None, rtol: float = 1e-5) -> None:
    """The graph's output equals onnxruntime's: eagerly, traced, and from channels-last
    images (traced with a dynamic batch, as served)."""
    x = images() if x is None else x
    graph = OnnxGraph(model)
    want = reference(model, x, [graph.output_name])[-1]
    _, eager = graph.run(tf.constant(x))
    assert_close(eager, want, rtol)
    if graph.input_layout == "NCHW":
        spec = tf.TensorSpec([None, *x.shape[2:], x.shape[1]], tf.float32)
        traced = tf.function(
            lambda im: graph.run(im, channels_last=True)[1], input_signature=[spec]
        )
        assert_close(traced(tf.constant(x.transpose(0, 2, 3, 1))), want, rtol)
    else:
        traced = tf.function(lambda im: graph.run(im)[1])
        assert_close(traced(tf.constant(x)), want, rtol)


def c(b: GraphBuilder, value, dtype=np.float32) -> str:
    return b.const(np.asarray(value, dtype))


def build(op_graph, opset: int = 17, shape=SHAPE) -> onnx.ModelProto:
    b = GraphBuilder(1)
    out = op_graph(b, "image")
    if isinstance(out, tuple):  # an integer or boolean result: compare it as floats
        out = b.op("Cast", out[0], to=TensorProto.FLOAT)
    out = b.op("Identity", out)  # a final Softmax would count as the end of a classifier
    return b.model(out, ["batch", *shape[1:]], opset=opset)


CASES = {
    # convolutions: padding, strides, dilations, groups, depthwise
    "conv_pads": lambda b, x: conv(b, x, 3, 4, pads=[1, 0, 2, 1]),
    "conv_stride_dilation": lambda b, x: conv(b, x, 3, 4, strides=[2, 1], dilations=[2, 2]),
    "conv_same_upper": lambda b, x: conv(b, x, 3, 4, strides=[2, 2], auto_pad="SAME_UPPER"),
    "conv_same_lower": lambda b, x: conv(b, x, 3, 4, strides=[2, 2], auto_pad="SAME_LOWER"),
    "conv_valid_1x1": lambda b, x: conv(b, x, 3, 5, k=1, auto_pad="VALID"),
    "depthwise": lambda b, x: conv(b, x, 3, 6, group=3, pads=[1, 1, 1, 1], strides=[2, 2]),
    "depthwise_dilated": lambda b, x: conv(
        b, x, 3, 3, group=3, pads=[2, 2, 2, 2], dilations=[2, 2]
    ),
    "grouped": lambda b, x: conv(b, conv(b, x, 3, 6, k=1), 6, 4, group=2, pads=[1, 1, 1, 1]),
    "conv_no_bias": lambda b, x: b.op("Conv", x, b.weight(2, 3, 3, 3), kernel_shape=[3, 3]),
    # pooling
    "maxpool": lambda b, x: b.op(
        "MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    ),
    "maxpool_ceil": lambda b, x: b.op(
        "MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1
    ),
    "avgpool_exclude_pad": lambda b, x: b.op(
        "AveragePool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    ),
    "avgpool_include_pad": lambda b, x: b.op(
        "AveragePool", x, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
    ),
    "avgpool_ceil": lambda b, x: b.op(
        "AveragePool", x, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, pads=[1, 1, 0, 0]
    ),
    "global_pools": lambda b, x: b.op(
        "Add", b.op("GlobalAveragePool", x), b.op("GlobalMaxPool", conv(b, x, 3, 3))
    ),
    # normalisation
    "batchnorm": lambda b, x: b.op(
        "BatchNormalization",
        conv(b, x, 3, 4),
        b.weight(4),
        b.weight(4),
        b.weight(4),
        c(b, [0.5, 1.0, 2.0, 0.1]),
        epsilon=1e-3,
    ),
    "instancenorm": lambda b, x: b.op("InstanceNormalization", x, b.weight(3), b.weight(3)),
    "layernorm_last": lambda b, x: b.op("LayerNormalization", x, b.weight(8), b.weight(8)),
    "layernorm_chw": lambda b, x: b.op(
        "LayerNormalization", x, b.weight(3, 8, 8), b.weight(3, 8, 8), axis=1
    ),
    "channel_layernorm": lambda b, x: b.op(  # ConvNeXt: permute, LayerNorm, permute back
        "Transpose",
        b.op(
            "LayerNormalization",
            b.op("Transpose", conv(b, x, 3, 4), perm=[0, 2, 3, 1]),
            b.weight(4),
            b.weight(4),
        ),
        perm=[0, 3, 1, 2],
    ),
    # activations
    "relu_leaky_elu": lambda b, x: b.op(
        "Sum", b.op("Relu", x), b.op("LeakyRelu", x, alpha=0.2), b.op("Elu", x), b.op("Selu", x)
    ),
    "sigmoids": lambda b, x: b.op(
        "Sum",
        b.op("Sigmoid", x),
        b.op("HardSigmoid", x),
        b.op("HardSwish", x),
        b.op("Softplus", x),
        b.op("Tanh", x),
        b.op("Softsign", x),
    ),
    "clip_relu6": lambda b, x: b.op("Clip", conv(b, x, 3, 4), c(b, 0), c(b, 0.5)),
    "clip_min_only": lambda b, x: b.op("Clip", x, c(b, -0.5)),
    "erf_gelu": lambda b, x: b.op(
        "Mul",
        b.op("Mul", x, b.op("Add", b.op("Erf", b.op("Div", x, c(b, 2**0.5))), c(b, 1))),
        c(b, 0.5),
    ),
    "prelu": lambda b, x: b.op("PRelu", conv(b, x, 3, 4), b.weight(4, 1, 1)),
    "unary_math": lambda b, x: b.op(
        "Sum",
        b.op("Sqrt", b.op("Abs", x)),
        b.op("Exp", b.op("Neg", x)),
        b.op("Log", b.op("Add", b.op("Abs", x), c(b, 1))),
        b.op("Reciprocal", b.op("Add", b.op("Abs", x), c(b, 1))),
        b.op("Floor", x),
        b.op("Ceil", x),
        b.op("Sign", x),
    ),
    # broadcasting arithmetic, channels-last operands mixed with ONNX-layout constants
    "per_channel_constants": lambda b, x: b.op(
        "Div",
        b.op("Sub", conv(b, x, 3, 4), b.weight(1, 4, 1, 1)),
        c(b, [[[2.0]], [[3.0]], [[4.0]], [[5.0]]]),
    ),
    "broadcast_width": lambda b, x: b.op("Mul", conv(b, x, 3, 4, pads=[1, 1, 1, 1]), b.weight(8)),
    "broadcast_plain_4d": lambda b, x: b.op("Add", conv(b, x, 3, 3, pads=[1, 1, 1, 1]), x),
    "pow_max_min_mean": lambda b, x: b.op(
        "Mean",
        b.op("Pow", b.op("Abs", x), c(b, 1.5)),
        b.op("Max", x, c(b, 0.1), x),
        b.op("Min", x, c(b, -0.1)),
    ),
    "where_compare": lambda b, x: b.op(
        "Where",
        b.op("Or", b.op("Less", x, c(b, -1)), b.op("Greater", x, c(b, 1))),
        x,
        b.op("Neg", x),
    ),
    "mod_equal": lambda b, x: (
        b.op(
            "Equal",
            b.op(
                "Mod",
                b.op("Cast", b.op("Floor", b.op("Mul", x, c(b, 3))), to=TensorProto.INT64),
                c(b, 2, np.int64),
            ),
            c(b, 1, np.int64),
        ),
    ),
    "integer_division": lambda b, x: (
        b.op(
            "Div",
            b.op("Cast", b.op("Floor", b.op("Mul", x, c(b, 5))), to=TensorProto.INT64),
            c(b, 2, np.int64),
        ),
    ),
    # linear algebra
    "softmax_13": lambda b, x: b.op("Softmax", x, axis=1),
    "log_softmax": lambda b, x: b.op("LogSoftmax", x, axis=-1),
    "matmul_4d_2d": lambda b, x: b.op("MatMul", x, b.weight(8, 5)),
    "matmul_batched": lambda b, x: b.op("MatMul", x, b.op("Transpose", x, perm=[0, 1, 3, 2])),
    "gemm": lambda b, x: b.op(
        "Gemm", b.op("Flatten", x), b.weight(4, 192), b.weight(4), transB=1, alpha=0.5, beta=2.0
    ),
    "gemm_transposed_a": lambda b, x: b.op(
        "Gemm", b.op("Transpose", b.op("Flatten", x)), b.weight(192, 4), transA=1
    ),
    "einsum": lambda b, x: b.op("Einsum", x, b.weight(3, 5), equation="nchw,ck->nkhw"),
    # shapes
    "flatten_axis2": lambda b, x: b.op("Flatten", conv(b, x, 3, 4), axis=2),
    "reshape_zero_minus_one": lambda b, x: b.op(
        "Reshape", conv(b, x, 3, 4), b.const(np.array([0, 0, -1], np.int64))
    ),
    "shape_gather_concat_reshape": lambda b, x: b.op(
        "Reshape",
        x,
        b.op(
            "Concat",
            b.op("Slice", b.op("Shape", x), c(b, [0], np.int64), c(b, [2], np.int64)),
            c(b, [-1], np.int64),
            axis=0,
        ),
    ),
    "shape_start_end": lambda b, x: b.op(
        "Reshape", x, b.op("Concat", b.op("Shape", x, end=1), c(b, [3, 64], np.int64), axis=0)
    ),
    "transpose_squeeze_unsqueeze": lambda b, x: b.op(
        "Squeeze",
        b.op("Unsqueeze", b.op("Transpose", x, perm=[0, 2, 3, 1]), c(b, [1], np.int64)),
        c(b, [1], np.int64),
    ),
    "concat_split": lambda b, x: b.op(
        "Sum",
        *b.op(
            "Split",
            b.op("Concat", conv(b, x, 3, 4), conv(b, x, 3, 2), axis=1),
            c(b, [2, 1, 3], np.int64),
            axis=1,
            outputs=3,
        )[:1],
        b.op("Split", conv(b, x, 3, 4), c(b, [2, 2], np.int64), axis=1, outputs=2)[1],
    ),
    "slice_steps_negative": lambda b, x: b.op(
        "Slice",
        conv(b, x, 3, 4),
        c(b, [-1, 1], np.int64),
        c(b, [-(2**63), 100], np.int64),
        c(b, [2, 1], np.int64),
        c(b, [-1, 2], np.int64),
    ),
    "gather_token_and_indices": lambda b, x: b.op(
        "Add",
        b.op("Gather", x, c(b, -1, np.int64), axis=2),
        b.op(
            "Gather",
            b.op("Gather", x, c(b, [-1, 0, 2, 1, 3, 5, 6, 7], np.int64), axis=3),
            c(b, 1, np.int64),
            axis=2,
        ),
    ),
    "expand_tile": lambda b, x: b.op(
        "Add",
        b.op("Expand", b.weight(1, 3, 1, 8), b.op("Shape", x)),
        b.op("Tile", b.op("ReduceMean", x, axes=[2], keepdims=1), c(b, [1, 1, 8, 1], np.int64)),
    ),
    "constants": lambda b, x: b.op(
        "Add",
        b.op("Mul", x, b.op("Constant", value_float=2.0)),
        b.op(
            "ConstantOfShape",
            c(b, [1, 3, 1, 1], np.int64),
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]),
        ),
    ),
    "range_cast": lambda b, x: b.op(
        "Mul",
        x,
        b.op(
            "Cast",
            b.op("Range", c(b, 0, np.int64), c(b, 8, np.int64), c(b, 1, np.int64)),
            to=TensorProto.FLOAT,
        ),
    ),
    "identity_dropout": lambda b, x: b.op("Dropout", b.op("Identity", x)),
    "reduces": lambda b, x: b.op(
        "Sum",
        b.op("ReduceMean", conv(b, x, 3, 4), axes=[2, 3], keepdims=0),
        b.op("ReduceSum", conv(b, x, 3, 4), c(b, [2, 3], np.int64), keepdims=0),
        b.op("ReduceMax", conv(b, x, 3, 4), axes=[-1, -2], keepdims=0),
    ),
    "reduce_keep_channel": lambda b, x: b.op("ReduceL2", conv(b, x, 3, 4), axes=[1], keepdims=1),
    "pad_modes": lambda b, x: b.op(
        "Add",
        b.op(
            "Pad",
            conv(b, x, 3, 3, pads=[1, 1, 1, 1]),
            c(b, [0, 0, 1, 2, 0, 0, 2, 1], np.int64),
            c(b, 0.5),
        ),
        b.op("Pad", x, c(b, [0, 0, 2, 1, 0, 0, 1, 2], np.int64), mode="reflect"),
    ),
    "pad_edge_and_crop": lambda b, x: b.op(
        "Pad", x, c(b, [0, 0, 1, -1, 0, 0, -2, 1], np.int64), mode="edge"
    ),
    # slice assignment (Swin's attention mask): on constants, folded; on the image, computed
    "scatternd_constant": lambda b, x: b.op(
        "Add",
        x,
        b.op(
            "ScatterND",
            b.op("ConstantOfShape", c(b, [1, 1, 8, 8], np.int64)),
            c(b, [[0, 0, 2], [0, 0, 5]], np.int64),
            c(b, np.full((2, 8), -100.0)),
        ),
    ),
    "scatternd_image": lambda b, x: b.op(
        "ScatterND",
        b.op("Transpose", x, perm=[2, 1, 0, 3]),
        c(b, [[1], [6]], np.int64),
        c(b, np.arange(2 * 3 * 2 * 8).reshape(2, 3, 2, 8) / 10.0),
    ),
    "scatternd_add": lambda b, x: b.op(
        "ScatterND", x, c(b, [[0, 1, 3]], np.int64), c(b, np.ones((1, 8))), reduction="add"
    ),
    # a target shape computed at run time (from the batch size) of a higher rank
    "reshape_runtime_shape": lambda b, x: b.op(
        "Reshape",
        b.op("Reshape", x, c(b, [0, 3, 64], np.int64)),
        b.op(
            "Concat",
            b.op("Div", b.op("Shape", x, start=0, end=1), c(b, [1], np.int64)),
            c(b, [3, 4, 4, 4], np.int64),
            axis=0,
        ),
    ),
    "resize_nearest": lambda b, x: b.op(
        "Resize",
        conv(b, x, 3, 2),
        "",
        c(b, [1, 1, 2, 2]),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    ),
    "resize_linear": lambda b, x: b.op(
        "Resize", x, "", "", c(b, [2, 3, 16, 12], np.int64), mode="linear"
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_operator_matches_onnxruntime(case):
    check(build(CASES[case]))


@pytest.mark.parametrize(
    ("case", "opset"),
    [("gelu_20", 20), ("gelu_tanh", 20), ("groupnorm_18", 18), ("groupnorm_21", 21),
     ("softmax_11", 11), ("clip_6", 6), ("split_18", 18), ("mish_18", 18)],
)  # fmt: skip
def test_operators_of_other_opsets_match_onnxruntime(case, opset):
    graphs = {
        "gelu_20": lambda b, x: b.op("Gelu", x),
        "gelu_tanh": lambda b, x: b.op("Gelu", x, approximate="tanh"),
        "groupnorm_18": lambda b, x: b.op(
            "GroupNormalization", conv(b, x, 3, 6), b.weight(2), b.weight(2), num_groups=2
        ),
        "groupnorm_21": lambda b, x: b.op(
            "GroupNormalization", conv(b, x, 3, 6), b.weight(6), b.weight(6), num_groups=3
        ),
        "softmax_11": lambda b, x: b.op("Softmax", x, axis=1),
        "clip_6": lambda b, x: b.op("Clip", x, min=-0.5, max=1.0),
        "split_18": lambda b, x: b.op("Split", x, axis=3, num_outputs=3, outputs=3)[2],
        "mish_18": lambda b, x: b.op("Mish", x),
    }
    check(build(graphs[case], opset=opset))


def test_an_nhwc_model_runs_in_its_own_layout():
    """As tf2onnx writes them: NHWC input, a transpose to NCHW before the convolution."""
    b = GraphBuilder(2)
    x = b.op("Transpose", "image", perm=[0, 3, 1, 2])
    x = b.op("Relu", conv(b, x, 3, 4, pads=[1, 1, 1, 1]))
    x = b.op("Transpose", x, perm=[0, 2, 3, 1])
    model = b.model(b.op("Mul", x, b.weight(4)), ["batch", 8, 8, 3])
    graph = OnnxGraph(model)
    assert (graph.input_layout, graph.input_size) == ("NHWC", (8, 8))
    check(model, images((2, 8, 8, 3)))
    (last,) = [i for i in graph.tensor_infos() if i.kind == "spatial" and i.op == "Mul"]
    assert (last.layout, last.grid, last.channels) == ("NHWC", (8, 8), 4)


@pytest.mark.parametrize("make", [tiny_cnn, tiny_vit])
def test_tiny_models_match_onnxruntime_within_1e_4(make):
    model = make()
    x = np.random.default_rng(3).uniform(0, 255, (3, 3, 32, 32)).astype(np.float32)
    graph = OnnxGraph(model)
    (want,) = reference(model, x, [graph.output_name])[1:]
    _, logits = graph.run(tf.constant(x))
    assert_close(logits, want, 1e-4)
    check(model, x, 1e-4)


def test_float64_graphs_match_onnxruntime():
    model = tiny_vit()
    x = np.random.default_rng(4).uniform(0, 255, (2, 3, 32, 32)).astype(np.float32)
    (want,) = reference(model, x)
    _, logits = OnnxGraph(model, tf.float64).run(tf.constant(x))
    assert logits.dtype == tf.float64
    assert_close(logits, want, 1e-5)


def test_kept_tensors_are_the_ones_the_graph_consumes():
    """Gradients with respect to kept tensors reach the logits, channels-last or not."""
    graph = OnnxGraph(tiny_cnn())
    x = tf.constant(np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    nchw = tf.transpose(x, (0, 3, 1, 2))
    (want,) = reference(tiny_cnn(), nchw.numpy(), ["head"])[1:]
    for channels_last, images_in in ((True, x), (False, nchw)):
        with tf.GradientTape() as tape:
            tape.watch(images_in)
            kept, logits = graph.run(images_in, ["head", "silu"], channels_last=channels_last)
            score = tf.reduce_sum(logits[:, 1])
        gradients = tape.gradient(score, [kept["head"], kept["silu"]])
        assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)
        head = kept["head"].numpy()
        assert_close(head.transpose(0, 3, 1, 2) if channels_last else head, want)


def test_tensor_infos_find_spatial_maps_and_token_grids():
    cnn = {i.name: i for i in OnnxGraph(tiny_cnn()).tensor_infos()}
    assert (cnn["head"].kind, cnn["head"].grid, cnn["head"].channels) == ("spatial", (8, 8), 16)
    assert cnn["residual"].shape == (8, 16, 16) and cnn["residual"].layout == "NCHW"
    assert cnn["silu"].kind == "spatial"  # after GroupNorm's reshape back to the input's shape
    assert [i.order for i in cnn.values()] == sorted(i.order for i in cnn.values())
    vit = {i.name: i for i in OnnxGraph(tiny_vit(dim=24)).tensor_infos()}
    norm = vit["block1.norm1"]
    assert (norm.kind, norm.grid, norm.prefix, norm.channels) == ("tokens", (4, 4), 1, 24)
    assert vit["patch_embed"].kind == "spatial"
    assert all(i.kind is None for i in vit.values() if len(i.shape) == 3 and i.shape[0] == 2)
    forced = {i.name: i for i in OnnxGraph(tiny_vit(dim=24)).tensor_infos(token_grid=(2, 8))}
    assert (forced["block1.norm1"].grid, forced["block1.norm1"].prefix) == ((2, 8), 1)


def test_groupnorm_internals_are_not_token_sequences():
    infos = {i.name: i for i in OnnxGraph(groupnorm_cnn()).tensor_infos()}
    assert infos["grouped"].shape == infos["instnorm"].shape == (4, 512)
    assert infos["grouped"].kind is None and infos["instnorm"].kind is None
    assert infos["relu"].kind == "spatial"


def test_tokens_are_as_wide_as_the_patch_embedding():
    vit = {i.name: i for i in OnnxGraph(tiny_vit(dim=24)).tensor_infos()}
    hidden = [i for i in vit.values() if i.shape == (17, 48)]  # the MLP's hidden layer
    assert hidden and all(i.kind is None for i in hidden)
    assert vit["block1.out"].kind == "tokens"


def test_token_grids_without_a_patch_convolution_are_squares():
    assert token_layout(197, 64, []) == ((14, 14), 1)
    assert token_layout(197, 64, [((14, 14), 32)]) is None  # not the embedding's width
    assert token_layout(198, 64, [((14, 14), 64)]) == ((14, 14), 2)
    assert token_layout(4, 2048, [((16, 16), 8)]) is None  # GroupNorm's (N, 4, C/4*H*W)
    assert token_layout(197, 7, [((16, 16), 8)], token_grid=(14, 14)) == ((14, 14), 1)


def test_a_linear_map_of_channels_last_blocks_keeps_their_grid():
    """Swin's blocks: (N, H, W, C) after the patch embedding, then Linear layers (MatMul)."""
    b = GraphBuilder()
    x = b.op("Transpose", conv(b, "image", 3, 4, pads=[1, 1, 1, 1]), perm=[0, 2, 3, 1])
    x = b.op("MatMul", x, b.weight(4, 6), name="linear")
    x = b.op("LayerNormalization", x, b.weight(6), b.weight(6), name="norm")
    x = b.op("ReduceMean", x, axes=[1, 2], keepdims=0)
    infos = {i.name: i for i in OnnxGraph(b.model(x, ["batch", 3, 8, 8])).tensor_infos()}
    for name in ("linear", "norm"):
        assert (infos[name].kind, infos[name].layout, infos[name].grid) == (
            "spatial",
            "NHWC",
            (8, 8),
        )


def test_constants_of_constant_nodes_are_known():
    b = GraphBuilder()
    node = b.op("Constant", value=numpy_helper.from_array(np.array(0.0, np.float32)), name="zero")
    x = b.op("Clip", "image", b.op("Cast", b.op("Identity", node), to=TensorProto.FLOAT))
    graph = OnnxGraph(b.model(x, ["batch", 3, 8, 8]))
    clip = graph.producer(graph.output_name)
    assert float(graph.constant(clip.input[1])) == 0.0
    assert graph.constant(graph.output_name) is None  # computed from the image


def test_an_unknown_operator_is_named_with_its_node_and_opset():
    b = GraphBuilder()
    model = b.model(b.op("Celu", "image", name="odd"), ["batch", 3, 8, 8])
    with pytest.raises(
        UnsupportedOperator, match=r"^unsupported operator Celu \(Celu node 'odd', opset 17\)"
    ):
        OnnxGraph(model)
    b = GraphBuilder()
    b.nodes.append(helper.make_node("Fancy", ["image"], ["y"], domain="com.example", name="f"))
    with pytest.raises(UnsupportedOperator, match=r"Fancy of domain 'com\.example'"):
        OnnxGraph(b.model("y", ["batch", 3, 8, 8]))


def test_several_image_inputs_are_refused():
    b = GraphBuilder()
    extra = helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 3, 8, 8])
    model = b.model(b.op("Add", "image", "mask"), ["batch", 3, 8, 8], extra_inputs=[extra])
    with pytest.raises(OnnxModelError, match=r"2 inputs \('image', 'mask'\); only models with one"):
        OnnxGraph(model)


def test_a_non_image_input_is_refused():
    b = GraphBuilder()
    with pytest.raises(OnnxModelError, match=r"shape \[None, 16\]: an image input is 4-D"):
        OnnxGraph(b.model(b.op("Relu", "image"), ["batch", 16]))
