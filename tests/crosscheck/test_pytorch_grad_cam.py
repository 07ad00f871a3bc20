"""The five methods against pytorch-grad-cam on the same network and weights, frame by frame.

EfficientNet-Lite0's ImageNet weights are a PyTorch state dict: PyTorch runs them in the
architecture of the `efficientnet-lite-pytorch` package (not ours), pytorch-grad-cam
(`grad-cam` on PyPI) computes GradCAM, GradCAMPlusPlus, LayerCAM, HiResCAM and XGradCAM from
its own hooks, and the serving graph computes the same maps in TensorFlow from our Keras
rebuild. Raw maps must agree within 1e-3 of each map's maximum, per frame, for three kinds of
target; the library's public output (maps min-max scaled, upsampled and averaged over the
layers) must agree too.

Both frameworks run in float64 for every layer of the `blocks` preset: a map is a sum of
hundreds of signed terms (activation x gradient) that largely cancel, so on the early layers
float32 rounding alone (activations and gradients agree to about 1e-6) moves a map by up to
about 2% of its maximum in either framework. As served (float32), the 7x7 layers must agree too.

Optional tier, outside `make test`: `make crosscheck` installs PyTorch's CPU build and the
libraries (requirements/crosscheck.txt). Run without them, the tier fails: its skips are
refused (tests/skip_policy.py).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="cross-check tier: make crosscheck installs PyTorch")
efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")

import torchvision_standin  # noqa: E402

torchvision_standin.install()
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")

import cv2  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from skimage import data  # noqa: E402

from gradcam_client.remote import contract  # noqa: E402
from gradcam_server import efficientnet_lite0 as lite0  # noqa: E402
from gradcam_server.explainer import GradCamModule  # noqa: E402
from gradcam_server.model_sources import efficientnet_lite0  # noqa: E402

TOLERANCE = 1e-3  # of each map's maximum
SERVED_LAYERS = ("block14_dw_activation", "block15_dw_activation", lite0.HEAD_LAYER)  # 7x7
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
LIBRARY_METHODS = {
    "gradcam": pytorch_grad_cam.GradCAM,
    "gradcampp": pytorch_grad_cam.GradCAMPlusPlus,
    "layercam": pytorch_grad_cam.LayerCAM,
    "hirescam": pytorch_grad_cam.HiResCAM,
    "xgradcam": pytorch_grad_cam.XGradCAM,
}


def torch_model() -> torch.nn.Module:
    """The package's EfficientNet-Lite0 with the ImageNet weights, every activation hookable.

    The package applies one shared ReLU6 module (`_swish`) after each BatchNorm of a block (and
    of the stem and head), which a forward hook cannot tell apart. Each such BatchNorm becomes
    BatchNorm + its own ReLU6 and the shared module the identity: the same network, forward and
    backward.
    """
    model = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(lite0.imagenet_weights_path())
    )
    for owner in [model, *model._blocks]:
        for name in ("_bn0", "_bn1"):
            if hasattr(owner, name):
                setattr(owner, name, torch.nn.Sequential(getattr(owner, name), torch.nn.ReLU6()))
        owner._swish = torch.nn.Identity()
    return model.eval()


def torch_layer(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The module whose output is the Keras layer `name` (a post-activation layer)."""
    if name == lite0.HEAD_LAYER:
        return model._bn1[1]
    index = int(name.removeprefix("block").removesuffix("_dw_activation"))
    return model._blocks[index]._bn1[1]


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    images = [getattr(data, name)() for name in PHOTOS]
    return np.stack([cv2.resize(i, lite0.INPUT_SIZE, interpolation=cv2.INTER_AREA) for i in images])


@pytest.fixture(scope="module", params=["float64", "float32"])
def precision(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def source(precision):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return efficientnet_lite0()
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.fixture(scope="module")
def layers(source, precision) -> list[str]:
    every = source.resolve_layers(["blocks"])
    return every if precision == "float64" else [n for n in every if n in SERVED_LAYERS]


@pytest.fixture(scope="module")
def ours(source, layers):
    return GradCamModule(source.model, source.preprocess, layers, list(LIBRARY_METHODS))


@pytest.fixture(scope="module")
def network(precision) -> torch.nn.Module:
    return torch_model().to(getattr(torch, precision))


def as_torch_input(frames: np.ndarray, network: torch.nn.Module) -> torch.Tensor:
    """The package's input: NCHW, (x - 127) / 128 as for the original weights."""
    scaled = (frames.astype(np.float32) - 127.0) / 128.0
    dtype = next(network.parameters()).dtype
    return torch.from_numpy(scaled.transpose(0, 3, 1, 2)).to(dtype)


def target_sets(network: torch.nn.Module, frames: np.ndarray) -> dict[str, list[int]]:
    """Per frame: the predicted class, the runner-up, and a class the model finds unlikely."""
    with torch.no_grad():
        logits = network(as_torch_input(frames, network)).numpy()
    ranked = np.argsort(-logits, axis=1)
    return {
        "predicted": [-1] * len(frames),
        "runner-up": ranked[:, 1].tolist(),
        "unlikely": ranked[:, 500].tolist(),
    }


def library_maps(network, layers, method, frames, targets):
    """pytorch-grad-cam's raw per-layer maps [frame, h, w] and its public output [frame, H, W]."""
    modules = [torch_layer(network, name) for name in layers]
    cam = LIBRARY_METHODS[method](model=network, target_layers=modules)
    try:
        wanted = [ClassifierOutputTarget(t) for t in targets]
        public = cam(input_tensor=as_torch_input(frames, network), targets=wanted)
        captured = cam.activations_and_grads
        raw = {
            name: np.maximum(
                cam.get_cam_image(None, module, wanted, acts.numpy(), grads.numpy(), False), 0.0
            )
            for name, module, acts, grads in zip(
                layers, modules, captured.activations, captured.gradients, strict=True
            )
        }
    finally:
        cam.activations_and_grads.release()
    return raw, public


def library_scaling(maps: dict[str, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The library's post-processing, applied to our raw maps (per layer, then aggregated)."""
    per_layer = [scale_cam_image(m, size)[:, None] for m in maps.values()]
    return scale_cam_image(np.mean(np.maximum(np.concatenate(per_layer, axis=1), 0), axis=1))


def assert_close_per_frame(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        peak = float(np.abs(e).max())
        error = float(np.abs(g - e).max())
        assert error <= TOLERANCE * max(peak, 1e-12), (
            f"{what}, frame {i} ({PHOTOS[i]}): max |difference| {error:.3g}, map maximum {peak:.3g}"
        )


def test_the_networks_agree(network, source, frames):
    with torch.no_grad():
        theirs = network(as_torch_input(frames, network)).numpy()
    mine = source.model(source.preprocess(tf.constant(frames, tf.float32))).numpy()
    np.testing.assert_allclose(mine, theirs, atol=1e-3)  # logits; about 4e-6 in float32
    assert (mine.argmax(axis=1) == theirs.argmax(axis=1)).all()


@pytest.mark.parametrize("kind", ["predicted", "runner-up", "unlikely"])
def test_every_method_and_layer_matches_pytorch_grad_cam(network, ours, layers, frames, kind):
    targets = target_sets(network, frames)[kind]
    out = ours.serve(tf.constant(frames), tf.constant(np.array(targets, np.int32)[:, None]))
    explained = out[contract.CLASS_INDEX].numpy()[:, 0].tolist()
    assert kind == "predicted" or explained == targets
    informative = 0
    for m, method in enumerate(LIBRARY_METHODS):
        raw, public = library_maps(network, layers, method, frames, explained)
        mine = {name: out[contract.cam_output_name(name)].numpy()[:, m] for name in layers}
        for name in layers:
            assert mine[name].shape == raw[name].shape, name
            assert_close_per_frame(mine[name], raw[name], f"{method} on {name} ({kind})")
            informative += int((raw[name].max(axis=(1, 2)) > 0).sum())
        size = tuple(reversed(frames.shape[1:3]))
        assert_close_per_frame(library_scaling(mine, size), public, f"{method} public ({kind})")
    # Not a comparison of blank maps (a weighted sum of channels can be all zero after ReLU).
    assert informative >= 0.75 * len(LIBRARY_METHODS) * len(layers) * len(frames)
