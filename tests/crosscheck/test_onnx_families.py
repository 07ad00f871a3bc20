"""Your own model, proved on the main families: PyTorch → ONNX → the serving graph.

For each family of `torch_families` (random weights) and for EfficientNet-Lite0 with its real
weights, the model is exported to ONNX the way the documentation tells users to, checked with
onnxruntime, converted by the exporter, and compared with the PyTorch model it came from:

- the logits (float32, as served) within 1e-4 of the largest, and the served probabilities;
- the layer the exporter explains by default is the one pytorch-grad-cam explains (the last
  block's output of a CNN; the last block's first LayerNorm of a ViT, whose patch tokens still
  reach the class token; Swin's final LayerNorm on its (N, H, W, C) grid): the same tensor,
  value for value;
- every map of every method within 1e-3 of its maximum of pytorch-grad-cam's on the PyTorch
  model, both in float64 (a map is a sum of many signed terms that largely cancel: float32
  rounding alone moves it by more than that, see test_pytorch_grad_cam.py). Grad-CAM++ and
  XGrad-CAM assume activations >= 0: on a layer that can be negative the exporter refuses them.

One test serves two families through a real Triton.

Optional tier: `make crosscheck` installs PyTorch's CPU build and the libraries
(requirements/crosscheck.txt).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="cross-check tier: make crosscheck installs PyTorch")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

import torchvision_standin  # noqa: E402

torchvision_standin.install()
pytest.importorskip("pytorch_grad_cam")

import library_cams  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch_families  # noqa: E402

from gradcam_client.media.samples import pan_zoom_frames  # noqa: E402
from gradcam_client.remote import contract  # noqa: E402
from gradcam_server.cam_methods import NEEDS_NONNEGATIVE_ACTIVATIONS  # noqa: E402
from gradcam_server.explainer import GradCamModule  # noqa: E402
from gradcam_server.onnx_graph import OnnxGraph  # noqa: E402
from gradcam_server.onnx_source import onnx_network  # noqa: E402
from gradcam_server.preprocessing import get_preprocessing  # noqa: E402

FRAMES = 4
LOGIT_TOLERANCE = 1e-4  # of the largest |logit|
MAP_TOLERANCE = 1e-3  # of each map's maximum
SIGNED_OK = [m for m in library_cams.LIBRARY_METHODS if m not in NEEDS_NONNEGATIVE_ACTIVATIONS]


def frames_for(size: int) -> np.ndarray:
    """Frames of the sample clip (a pan over scikit-image's cat) at the model's input size."""
    return np.stack(pan_zoom_frames(FRAMES, (size, size)))


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_maps_close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Per frame: max |difference| within MAP_TOLERANCE of the expected map's maximum."""
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        peak = float(np.abs(e).max())
        error = float(np.abs(g - e).max())
        assert error <= MAP_TOLERANCE * max(peak, 1e-12), (
            f"{what}, frame {i}: max |difference| {error:.3g}, map maximum {peak:.3g}"
        )


def methods_for(family: torch_families.Family) -> list[str]:
    """The methods the exporter takes on the family's default layer."""
    if not family.nonnegative:
        return SIGNED_OK
    return list(library_cams.LIBRARY_METHODS)


@pytest.fixture(scope="module", params=list(torch_families.BY_NAME))
def family(request) -> torch_families.Family:
    return torch_families.BY_NAME[request.param]


@pytest.fixture(scope="module")
def network(family) -> torch.nn.Module:
    return family.build()


@pytest.fixture(scope="module")
def onnx_file(family, network, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp(family.name)
    return torch_families.export_onnx(network, family.input_size, folder / f"{family.name}.onnx")


@pytest.fixture(scope="module")
def frames(family) -> np.ndarray:
    return frames_for(family.input_size)


@pytest.fixture(scope="module")
def default_layer(family, onnx_file) -> str:
    return onnx_network(onnx_file).default_layer(get_preprocessing(family.preprocessing))


def test_the_onnx_export_runs_like_the_pytorch_model(family, network, onnx_file, frames):
    inputs = torch_families.model_input(frames, family.preprocessing, torch.float32)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": inputs.numpy()})[0]
    expected = library_cams.logits(network, inputs)
    assert got.shape == expected.shape == (FRAMES, expected.shape[1])
    assert relative_error(got, expected) <= 1e-5


def test_logits_and_probabilities_match_pytorch(family, network, onnx_file, frames, default_layer):
    inputs = torch_families.model_input(frames, family.preprocessing, torch.float32)
    expected = library_cams.logits(network, inputs)
    _, logits = OnnxGraph(onnx.load(str(onnx_file))).run(tf.constant(inputs.numpy()))
    assert relative_error(logits.numpy(), expected) <= LOGIT_TOLERANCE
    served = GradCamModule(
        onnx_network(onnx_file), get_preprocessing(family.preprocessing), [], ["gradcam"]
    )  # predictions only
    out = served.serve(tf.constant(frames), tf.constant(np.full((FRAMES, 1), -1, np.int32)))
    np.testing.assert_allclose(out[contract.PROBABILITIES].numpy(), softmax(expected), atol=1e-5)
    assert out[contract.CLASS_INDEX].numpy()[:, 0].tolist() == expected.argmax(axis=1).tolist()


def test_the_default_layer_is_pytorch_grad_cams(family, network, onnx_file, frames, default_layer):
    inputs = torch_families.model_input(frames, family.preprocessing, torch.float32)
    kept, _ = OnnxGraph(onnx.load(str(onnx_file))).run(tf.constant(inputs.numpy()), [default_layer])
    expected = library_cams.layer_output(network, family.target(network), inputs)
    got = kept[default_layer].numpy()
    assert got.shape == expected.shape, f"{default_layer}: {got.shape} != {expected.shape}"
    assert relative_error(got, expected) <= 1e-4, default_layer


def test_every_method_matches_pytorch_grad_cam(family, network, onnx_file, frames, default_layer):
    methods = methods_for(family)
    preprocess = get_preprocessing(family.preprocessing)
    module = GradCamModule(
        onnx_network(onnx_file, dtype=tf.float64), preprocess, [default_layer], methods
    )
    network64 = family.build().to(torch.float64)
    inputs = torch_families.model_input(frames, family.preprocessing, torch.float64)
    logits = library_cams.logits(network64, inputs)
    runner_up = np.argsort(-logits, axis=1)[:, 1]
    informative = 0
    for targets in (np.full(FRAMES, -1), runner_up):
        out = module.serve(tf.constant(frames), tf.constant(targets[:, None].astype(np.int32)))
        explained = out[contract.CLASS_INDEX].numpy()[:, 0]
        assert (explained == np.where(targets < 0, logits.argmax(axis=1), targets)).all()
        maps = out[contract.cam_output_name(module.layers[0])].numpy()
        for m, method in enumerate(methods):
            expected = library_cams.library_maps(
                network64, family.target(network64), family.reshape, method, inputs, explained
            )
            assert_maps_close(maps[:, m], expected, f"{family.name} {method}")
            informative += int((expected.max(axis=(1, 2)) > 0).sum())
    # Not a comparison of blank maps (a weighted sum of channels can be all zero after ReLU).
    assert informative >= 0.75 * 2 * len(methods) * FRAMES


def test_the_default_layers_sign_decides_the_methods(family, onnx_file, default_layer):
    """Every method on a non-negative layer (after ReLU or ReLU6); Grad-CAM++ and XGrad-CAM,
    which assume activations >= 0, refused on a signed one."""
    preprocess = get_preprocessing(family.preprocessing)
    every = list(library_cams.LIBRARY_METHODS)
    if family.nonnegative:
        module = GradCamModule(onnx_network(onnx_file), preprocess, [default_layer], every)
        assert module.methods == tuple(every)
        return
    with pytest.raises(ValueError, match="Grad-CAM\\+\\+, XGrad-CAM assume activations >= 0"):
        GradCamModule(onnx_network(onnx_file), preprocess, [default_layer], every)


SERVED = {"resnet-basic": "all", "vit": ",".join(SIGNED_OK)}
"""Families served through a real Triton, with the methods exported."""


@pytest.mark.integration
def test_gradcam_server_export_onnx_served_by_triton(tmp_path):
    from triton_server import running_triton

    from gradcam_client.remote.server import GradcamServer

    repository = tmp_path / "repository"
    command = Path(sys.executable).with_name("gradcam-server")
    networks = {}
    for name, methods in SERVED.items():
        family = torch_families.BY_NAME[name]
        networks[name] = family.build()
        path = torch_families.export_onnx(
            networks[name], family.input_size, tmp_path / f"{name}.onnx"
        )
        options = ["--preprocessing", family.preprocessing, "--methods", methods]
        subprocess.run(
            [command, "export", "--model", path, "--repository", repository, *options],
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
        )
    with running_triton(repository, log_dir=tmp_path / "logs") as server:
        for name in SERVED:
            family = torch_families.BY_NAME[name]
            frames = frames_for(family.input_size)
            client = GradcamServer(server.urls.grpc, name)
            try:
                result = client.infer(frames, np.full(FRAMES, -1, np.int32))
                info = client.model_info()
            finally:
                client.close()
            network64 = networks[name].to(torch.float64)
            inputs = torch_families.model_input(frames, family.preprocessing, torch.float64)
            logits = library_cams.logits(network64, inputs)
            np.testing.assert_allclose(result.probabilities, softmax(logits), atol=1e-5)
            assert info.class_names[:2] == ("class 0", "class 1")
            (layer,) = info.layers
            for m, method in enumerate(info.methods):
                expected = library_cams.library_maps(
                    network64, family.target(network64), family.reshape, method, inputs,
                    result.class_index,
                )  # fmt: skip
                assert_maps_close(result.maps[layer.name][:, m], expected, f"served {name}")
