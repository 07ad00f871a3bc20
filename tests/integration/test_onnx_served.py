"""Users' own ONNX models (a CNN and a class-token ViT) exported and served by a real Triton:
answers equal the serving graph called in this process, for raw and encoded frames."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx_models import tiny_cnn, tiny_vit
from triton_server import running_triton

from gradcam_client.remote import contract
from gradcam_client.remote.server import GradcamServer
from gradcam_client.remote.wire import Wire
from gradcam_server import cli
from gradcam_server.explainer import GradCamModule
from gradcam_server.onnx_source import onnx_file

pytestmark = pytest.mark.integration

MODELS = {"onnx-cnn": (tiny_cnn, "all"), "onnx-vit": (tiny_vit, "gradcam,layercam,hirescam")}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The two models exported with `gradcam-server export`, served by one Triton."""
    folder = tmp_path_factory.mktemp("onnx-served")
    repository = folder / "repository"
    for name, (make, methods) in MODELS.items():
        onnx.save(make(), folder / f"{name}.onnx")
        argv = ["export", "--model", str(folder / f"{name}.onnx"), "--repository", str(repository)]
        assert cli.main([*argv, "--methods", methods, "--max-batch-size", "8"]) == 0
    with running_triton(repository, log_dir=folder / "logs") as server:
        yield server, folder


def in_process(folder, name: str, frames: np.ndarray, targets: np.ndarray) -> dict:
    """The same export's serving graph, built and called in this process."""
    source = onnx_file(folder / f"{name}.onnx")
    methods = list(contract.METHODS) if MODELS[name][1] == "all" else MODELS[name][1].split(",")
    module = GradCamModule(source.model, source.preprocess, source.default_layers, methods)
    out = module.serve(tf.constant(frames), tf.constant(targets.reshape(-1, 1)))
    return {key: value.numpy() for key, value in out.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_served_answers_equal_the_in_process_graph_raw_and_encoded(served, name, rng):
    triton, folder = served
    frames = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    targets = np.array([-1, 0, 1, -1, 2], np.int32)
    want = in_process(folder, name, frames, targets)
    info = GradcamServer(triton.urls.grpc, name).model_info()
    assert (info.input_height, info.input_width) == (32, 32)
    for wire in (Wire(), Wire("png")):
        got = GradcamServer(triton.urls.grpc, name, wire=wire).infer(frames, targets)
        np.testing.assert_allclose(got.probabilities, want[contract.PROBABILITIES], atol=1e-6)
        np.testing.assert_array_equal(got.class_index, want[contract.CLASS_INDEX][:, 0])
        for layer in info.layers:
            expected = want[layer.output_name]
            scale = max(float(expected.max()), 1e-12)
            assert np.abs(got.maps[layer.name] - expected).max() / scale < 1e-5
            assert expected.max() > 0


def test_the_vit_is_explained_on_its_patch_grid_at_its_default_layer(served):
    triton, _ = served
    info = GradcamServer(triton.urls.grpc, "onnx-vit").model_info()
    assert [(layer.name, layer.height, layer.width) for layer in info.layers] == [
        ("block1.norm1", 4, 4)
    ]
    assert info.class_names == tuple(f"class {i}" for i in range(4))
