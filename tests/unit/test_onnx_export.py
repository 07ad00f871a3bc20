"""`gradcam-server export --model MODEL.onnx` and `gradcam-server layers`: maps against
references computed without the serving graph, default layers, and every bad input in one
line with exit code 1 and nothing left in the repository."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper
from onnx_models import GraphBuilder, conv, groupnorm_cnn, tiny_cnn, tiny_vit
from test_gradcam_graph import reference_maps

from gradcam_client.remote import contract
from gradcam_server import cli
from gradcam_server.explainer import GradCamModule
from gradcam_server.exporter import export
from gradcam_server.model_sources import imagenet_class_names
from gradcam_server.onnx_graph import OnnxGraph, OnnxModelError
from gradcam_server.onnx_source import onnx_file, onnx_network
from gradcam_server.preprocessing import identity

SIGN_FREE = ["gradcam", "layercam", "hirescam"]
"""The methods that make no assumption on the sign of activations."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name, model in {
        "tiny_cnn": tiny_cnn(),
        "tiny_vit": tiny_vit(),
        "mean_vit": tiny_vit(pool="mean"),
    }.items():
        paths[name] = folder / f"{name}.onnx"
        onnx.save(model, paths[name])
    return paths


def serve(module: GradCamModule, frames: np.ndarray, targets) -> dict[str, np.ndarray]:
    out = module.serve(tf.constant(frames), tf.constant(np.int32(targets).reshape(-1, 1)))
    return {key: value.numpy() for key, value in out.items()}


def ort_values(path, images: np.ndarray, names: list[str]) -> list[np.ndarray]:
    model = onnx.load(str(path))
    for name in names:
        model.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {"image": images})


def assert_maps_equal(got: np.ndarray, want: dict[str, np.ndarray], methods) -> None:
    for m, method in enumerate(methods):
        scale = max(float(want[method].max()), 1e-12)
        assert np.abs(got[m] - want[method]).max() / scale < 1e-4, method


def test_cnn_maps_equal_onnxruntime_activations_with_the_head_s_own_gradients(files, rng):
    """Grad-CAM's gradient on the last map of a CNN ending in global pooling and a linear
    layer is W[class, k] / (h * w): the reference needs only onnxruntime's activations."""
    methods = contract.METHODS  # all five: the layer (a ReLU6) is non-negative
    module = GradCamModule(onnx_network(files["tiny_cnn"]), identity, ["head"], list(methods))
    frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    targets = [-1, 2, 0]
    out = serve(module, frames, targets)
    graph = OnnxGraph(onnx.load(str(files["tiny_cnn"])))
    acts, logits = ort_values(
        files["tiny_cnn"],
        frames.transpose(0, 3, 1, 2).astype(np.float32),
        ["head", graph.output_name],
    )
    gemm = next(n for n in onnx.load(str(files["tiny_cnn"])).graph.node if n.op_type == "Gemm")
    weights = graph.constant(gemm.input[1])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out[contract.PROBABILITIES], probabilities, rtol=1e-4, atol=1e-6)
    informative = 0
    for i, target in enumerate(targets):
        cls = int(np.argmax(logits[i])) if target < 0 else target
        assert out[contract.CLASS_INDEX][i, 0] == cls
        a = acts[i].transpose(1, 2, 0)  # [h, w, k]
        g = np.broadcast_to(weights[cls] / (8 * 8), a.shape)
        assert_maps_equal(out[contract.cam_output_name("head")][i], reference_maps(a, g), methods)
        informative += bool(out[contract.cam_output_name("head")][i].max() > 0)
    assert informative >= 2


def test_vit_maps_are_taken_on_the_patch_grid_without_the_class_token(files, rng):
    """Against the token sequence and its gradient from a plain eager tape on NCHW images,
    laid on the grid by numpy."""
    layer = "block1.norm1"
    module = GradCamModule(onnx_network(files["tiny_vit"]), identity, [layer], SIGN_FREE)
    frames = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = serve(module, frames, [-1, 1])
    graph = OnnxGraph(onnx.load(str(files["tiny_vit"])))
    images = tf.constant(frames.transpose(0, 3, 1, 2), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        kept, logits = graph.run(images, [layer])
        classes = [int(tf.argmax(logits[0])), 1]
        score = logits[0, classes[0]] + logits[1, classes[1]]
    tokens, grads = kept[layer].numpy(), tape.gradient(score, kept[layer]).numpy()
    assert module.layer_shapes == {layer: (4, 4)}
    for i in range(2):
        a, g = tokens[i, 1:].reshape(4, 4, 16), grads[i, 1:].reshape(4, 4, 16)
        assert out[contract.CLASS_INDEX][i, 0] == classes[i]
        assert_maps_equal(out[contract.cam_output_name(layer)][i], reference_maps(a, g), SIGN_FREE)
    assert np.abs(grads[:, 1:]).max() > 0


def test_a_frame_is_explained_the_same_alone_or_in_a_batch(files, rng):
    module = GradCamModule(onnx_network(files["tiny_vit"]), identity, ["block0.out"], SIGN_FREE)
    frames = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    batched = serve(module, frames, [-1, 0, -1, 3])
    for i, target in enumerate([-1, 0, -1, 3]):
        alone = serve(module, frames[i : i + 1], [target])
        for name, value in alone.items():
            scale = max(float(np.abs(value).max()), 1e-12)
            assert np.abs(batched[name][i] - value[0]).max() / scale < 1e-5, name


def test_default_layers(files):
    assert onnx_file(files["tiny_cnn"]).default_layers == ["head"]
    # The last block's first LayerNorm: after it, only the class token reaches the head.
    assert onnx_file(files["tiny_vit"]).default_layers == ["block1.norm1"]
    # Mean-pooled tokens all reach the head: the final LayerNorm.
    assert onnx_file(files["mean_vit"]).default_layers == ["norm"]


def _head(b: GraphBuilder, x: str, channels: int) -> str:
    x = b.op("Flatten", b.op("GlobalAveragePool", x))
    return b.op("Gemm", x, b.weight(2, channels), transB=1)


def _cnn_with_tokens_inside(b: GraphBuilder) -> str:
    """A CNN whose middle block attends over its map's tokens (as non-local blocks do)."""
    x = conv(b, "image", 3, 8, k=2, strides=[2, 2], name="embed")
    tokens = b.op("Transpose", b.op("Reshape", x, b.const(np.array([0, 8, -1]))), perm=[0, 2, 1])
    tokens = b.op("LayerNormalization", tokens, b.weight(8), b.weight(8), name="token_norm")
    x = b.op("Reshape", b.op("Transpose", tokens, perm=[0, 2, 1]), b.const(np.array([0, 8, 4, 4])))
    return _head(b, b.op("Relu", conv(b, x, 8, 8, pads=[1, 1, 1, 1]), name="relu"), 8)


def _channels_last_blocks(b: GraphBuilder) -> str:
    """Swin-like: (N, H, W, C) blocks of Linear layers and a final LayerNorm, then the
    permutation back to (N, C, H, W) in front of the head."""
    x = b.op("Transpose", conv(b, "image", 3, 4, k=2, strides=[2, 2]), perm=[0, 2, 3, 1])
    x = b.op("MatMul", x, b.weight(4, 6))
    x = b.op("LayerNormalization", x, b.weight(6), b.weight(6), name="norm")
    return _head(b, b.op("Transpose", x, perm=[0, 3, 1, 2], name="permute"), 6)


def test_a_cnn_defaults_to_its_last_map_whatever_sequences_it_holds(tmp_path, capsys):
    path = tmp_path / "groupnorm.onnx"
    onnx.save(groupnorm_cnn(), path)
    assert onnx_file(path).default_layers == ["relu"]
    assert cli.main(["layers", str(path)]) == 0
    listed = {line.lstrip("* ").split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert "grouped" not in listed and "instnorm" not in listed
    for name, build, default in (
        ("inside", _cnn_with_tokens_inside, "relu"),
        ("swin", _channels_last_blocks, "norm"),  # not its transpose "permute"
    ):
        path = tmp_path / f"{name}.onnx"
        onnx.save(_model_with(build), path)
        network = onnx_network(path)
        assert network.default_layer() == default, name
    assert [i.kind for i in network.infos if i.name in ("norm", "permute")] == ["spatial"] * 2


@pytest.mark.parametrize(("low", "nonnegative"), [(0.0, True), (-1.0, False)])
def test_relu6_with_constant_node_bounds_takes_every_method(tmp_path, low, nonnegative):
    """PyTorch exports ReLU6 as Clip with its bounds from Constant nodes (here through an
    Identity and a Cast, as some exporters add)."""

    def relu6(b: GraphBuilder) -> str:
        bounds = [
            b.op("Constant", value=numpy_helper.from_array(np.array(v, np.float32)))
            for v in (low, 6.0)
        ]
        low_input = b.op("Cast", b.op("Identity", bounds[0]), to=TensorProto.FLOAT)
        x = b.op("Clip", conv(b, "image", 3, 4), low_input, bounds[1], name="relu6")
        return _head(b, x, 4)

    path = tmp_path / "relu6.onnx"
    onnx.save(_model_with(relu6), path)
    network = onnx_network(path)
    if nonnegative:
        network.select(("relu6",), ("gradcampp", "xgradcam"))
        assert network.layers == ("relu6",)
    else:
        with pytest.raises(OnnxModelError, match="assume activations >= 0"):
            network.select(("relu6",), ("gradcampp",))


def test_class_names_default_to_imagenet_for_1000_classes(tmp_path):
    path = tmp_path / "wide.onnx"
    onnx.save(tiny_cnn(classes=1000), path)
    source = onnx_file(path)
    assert source.class_names == imagenet_class_names() and source.name == "wide"
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    onnx.save(tiny_cnn(classes=2), path)
    assert onnx_file(path, class_names_file=names).class_names == ["cat", "dog"]


def test_a_grey_model_gets_the_luma_of_the_frames(tmp_path, rng):
    b = GraphBuilder(3)
    x = b.op("Relu", conv(b, "image", 1, 4, pads=[1, 1, 1, 1]), name="features")
    x = b.op("Flatten", b.op("GlobalAveragePool", x))
    model = b.model(b.op("Gemm", x, b.weight(3, 4), transB=1), ["batch", 1, 16, 16])
    onnx.save(model, tmp_path / "grey.onnx")
    module = GradCamModule(onnx_network(tmp_path / "grey.onnx"), identity, ["features"], SIGN_FREE)
    frames = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    grey = (frames.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))[:, None]
    (logits,) = ort_values(tmp_path / "grey.onnx", grey, [model.graph.output[0].name])
    probabilities = serve(module, frames, [-1, -1])[contract.PROBABILITIES]
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, want / want.sum(axis=1, keepdims=True), atol=1e-5)


def test_a_dynamic_input_size_is_given_on_the_command_line(tmp_path, capsys):
    model = tiny_cnn()
    for axis, name in ((2, "height"), (3, "width")):
        dim = model.graph.input[0].type.tensor_type.shape.dim[axis]
        dim.ClearField("dim_value")
        dim.dim_param = name
    onnx.save(model, tmp_path / "dynamic.onnx")
    repository = tmp_path / "repo"
    argv = ["export", "--model", str(tmp_path / "dynamic.onnx"), "--repository", str(repository)]
    assert cli.main([*argv, "--input-size", "32x32"]) == 0
    config = (repository / "dynamic" / "config.pbtxt").read_text()
    assert "32" in config and "head" in config


def test_token_grid_overrides_the_grid_found(files, tmp_path):
    source = onnx_file(files["tiny_vit"], token_grid=(2, 8))
    folder = export(source, tmp_path, layers=["default"], methods=SIGN_FREE)
    assert folder.name == "tiny-vit"
    assert source.model.layer_grid("block1.norm1") == (2, 8)


def _model_with(op_graph, shape=("batch", 3, 8, 8), extra_inputs=()) -> onnx.ModelProto:
    b = GraphBuilder(4)
    return b.model(op_graph(b), list(shape), extra_inputs=list(extra_inputs))


def _bad_models() -> dict[str, onnx.ModelProto]:
    dynamic = tiny_cnn()
    dynamic.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    return {
        "dynamic.onnx": dynamic,
        "two_inputs.onnx": _model_with(
            lambda b: b.op("Add", "image", "mask"),
            extra_inputs=[helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 3, 8, 8])],
        ),
        "flat.onnx": _model_with(
            lambda b: b.op("Gemm", b.op("Flatten", "image"), b.weight(4, 192), transB=1)
        ),
        "celu.onnx": _model_with(lambda b: b.op("Celu", "image", name="odd")),
    }


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("notes.onnx", [], "notes.onnx is not an ONNX model (DecodeError)"),
        ("missing.onnx", [], "no ONNX model file at"),
        (
            "dynamic.onnx",
            [],
            "dynamic.onnx takes images of any size (its input 'image' has a dynamic height or "
            "width); give the size it was trained for with --input-size HxW",
        ),
        ("tiny_cnn.onnx", ["--input-size", "64x64"], "tiny_cnn.onnx takes 32x32 images only"),
        ("tiny_cnn.onnx", ["--input-size", "big"], "--input-size takes HEIGHTxWIDTH"),
        ("two_inputs.onnx", [], "the model has 2 inputs ('image', 'mask'); only models with one"),
        ("flat.onnx", [], "flat.onnx has no layer a map can come from"),
        ("celu.onnx", [], "unsupported operator Celu (Celu node 'odd', opset 17)"),
        ("tiny_cnn.onnx", ["--layers", "haed"], "no layer 'haed' in tiny_cnn.onnx; nearest: head"),
        (
            "tiny_cnn.onnx",
            ["--layers", "features"],
            "layer 'features' of tiny_cnn.onnx is a (batch, 16) tensor, not a spatial map",
        ),
        (
            "tiny_cnn.onnx",
            ["--layers", "residual", "--methods", "all"],
            "Grad-CAM++, XGrad-CAM assume activations >= 0, but layer 'residual' (Add, no "
            "non-negative activation) can be negative; explain a post-activation layer "
            "(e.g. 'sigmoid18') or leave out gradcampp,xgradcam",
        ),
        ("tiny_cnn.onnx", ["--class-names", "names.txt"], "holds 2 class names; the model has 5"),
        ("tiny_cnn.onnx", ["--token-grid", "4"], None),  # a square grid: accepted
        ("tiny_cnn.onnx", ["--preprocessing", "imagenet"], "unknown preprocessing 'imagenet'"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_leaves_nothing(
    files, tmp_path, capsys, model, extra, message
):
    for name, bad in _bad_models().items():
        onnx.save(bad, tmp_path / name)
    (tmp_path / "notes.onnx").write_text("not a model\n")
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    path = files["tiny_cnn"] if model == "tiny_cnn.onnx" else tmp_path / model
    repository = tmp_path / "repo"
    extra = [str(tmp_path / a) if a.endswith(".txt") else a for a in extra]
    code = cli.main(["export", "--model", str(path), "--repository", str(repository), *extra])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0
        return
    assert code == 1
    assert err.startswith("gradcam-server export: error: ") and err.count("\n") == 1
    assert message in err
    assert not repository.exists()


def test_a_failed_save_leaves_nothing_in_the_repository(files, tmp_path, monkeypatch):
    repository = tmp_path / "repo"
    (repository / "other").mkdir(parents=True)

    def fail(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(GradCamModule, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        export(onnx_file(files["tiny_cnn"]), repository)
    assert [p.name for p in repository.iterdir()] == ["other"]
    with pytest.raises(OSError, match="disk full"):
        export(onnx_file(files["tiny_cnn"]), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_layers_lists_maps_and_tokens_and_marks_the_default(files, capsys):
    assert cli.main(["layers", str(files["tiny_vit"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["layer", "kind", "map", "(h", "x", "w", "x", "C)", "op"]
    default = [line for line in lines if line.startswith("*")]
    assert len(default) == 1
    assert default[0].split() == [
        "*", "block1.norm1", "tokens", "4x4x16", "after", "1", "token", "LayerNormalization"
    ]  # fmt: skip
    assert any(line.split()[:3] == ["patch_embed", "spatial", "4x4x16"] for line in lines)
    assert cli.main(["layers", str(files["tiny_cnn"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("*")] == ["head"]


def test_layers_of_a_built_in_model(capsys):
    assert cli.main(["layers", "efficientnet-lite0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:4] for line in lines if line.startswith("*")] == [
        ["head_activation", "spatial", "7x7x1280"]
    ]


def test_layers_of_a_file_that_is_not_onnx(tmp_path, capsys):
    (tmp_path / "x.onnx").write_bytes(b"\x00\x01garbage")
    assert cli.main(["layers", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradcam-server layers: error: ") and "is not an ONNX model" in err


def test_an_exported_model_keeps_its_weights_as_variables(tmp_path):
    """Large initializers are saved once, beside the graph, not as constants inside it."""
    b = GraphBuilder(5)
    x = b.op("Relu", conv(b, "image", 3, 8, pads=[1, 1, 1, 1]), name="features")
    model = b.model(b.op("Gemm", b.op("Flatten", x), b.weight(300, 8192), transB=1),
                    ["batch", 3, 32, 32])  # fmt: skip
    onnx.save(model, tmp_path / "wide.onnx")
    folder = export(onnx_file(tmp_path / "wide.onnx"), tmp_path / "repo", methods=SIGN_FREE)
    saved = folder / "1" / "model.savedmodel"
    weights = 300 * 8192 * 4
    assert sum(f.stat().st_size for f in (saved / "variables").iterdir()) >= weights
    assert (saved / "saved_model.pb").stat().st_size < weights / 4
