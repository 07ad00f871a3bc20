"""Your own model, proved on the main families: PyTorch → ONNX → the serving graph.

For each family of `torch_families` (random weights) and for EfficientNet-Lite0 with its real
weights, the model is exported to ONNX the way the documentation tells users to, checked with
onnxruntime, converted by the exporter, and compared with the PyTorch model it came from: the
logits, the layer the exporter explains by default, and every map of every method against
pytorch-grad-cam's on the PyTorch model.

Optional tier: `make crosscheck` installs PyTorch's CPU build and the libraries
(requirements/crosscheck.txt).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="cross-check tier: make crosscheck installs PyTorch")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

import torchvision_standin  # noqa: E402

torchvision_standin.install()
pytest.importorskip("pytorch_grad_cam")

import library_cams  # noqa: E402
import torch_families  # noqa: E402

from gradcam_client.samples import pan_zoom_frames  # noqa: E402

FRAMES = 4
LOGIT_TOLERANCE = 1e-4  # of the largest |logit|


def frames_for(size: int) -> np.ndarray:
    """Frames of the sample clip (a pan over scikit-image's cat) at the model's input size."""
    return np.stack(pan_zoom_frames(FRAMES, (size, size)))


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module", params=list(torch_families.BY_NAME))
def family(request) -> torch_families.Family:
    return torch_families.BY_NAME[request.param]


@pytest.fixture(scope="module")
def network(family) -> torch.nn.Module:
    return family.build()


@pytest.fixture(scope="module")
def onnx_file(family, network, tmp_path_factory):
    folder = tmp_path_factory.mktemp(family.name)
    return torch_families.export_onnx(network, family.input_size, folder / f"{family.name}.onnx")


def test_the_onnx_export_runs_like_the_pytorch_model(family, network, onnx_file):
    inputs = torch_families.model_input(
        frames_for(family.input_size), family.preprocessing, torch.float32
    )
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": inputs.numpy()})[0]
    expected = library_cams.logits(network, inputs)
    assert got.shape == expected.shape == (FRAMES, expected.shape[1])
    assert relative_error(got, expected) <= 1e-5
