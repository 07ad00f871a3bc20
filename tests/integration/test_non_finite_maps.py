"""A map holding NaN or +inf is a clear error blaming the server, never a silently erased peak.

Two models on a real Triton: `overflow`, exported by the exporter, whose weights overflow
float32 on any bright frame (the server refuses to send its maps), and `raw-inf`, a python
model answering the contract with a +inf in a map (as a server without that check could): the
client refuses it.
"""

from __future__ import annotations

from pathlib import Path

import media
import numpy as np
import pytest
from client_runs import run_cli
from triton_server import running_triton, write_python_model

from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_server import model_sources
from gradcam_server.exporter import export
from gradcam_server.triton_config import ServingOptions, build_config, config_text

pytestmark = pytest.mark.integration

RAW_INF_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy().shape[0]
            maps = np.ones((n, 1, 4, 4), np.float32)
            maps[:, 0, 1, 2] = np.inf
            outputs = [
                pb_utils.Tensor("PROBABILITIES", np.full((n, 3), 1 / 3, np.float32)),
                pb_utils.Tensor("CLASS_INDEX", np.zeros((n, 1), np.int32)),
                pb_utils.Tensor("CAM__conv", maps),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""


def overflowing_classifier(path: Path) -> Path:
    """Convolution weights of 1e38: any bright pixel overflows to +inf (black frames do not)."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(
        4, 3, activation="relu", name="conv", kernel_initializer=keras.initializers.Constant(1e38)
    )(inputs)
    x = keras.layers.ReLU(max_value=1.0, name="clip")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("repo")
    keras_file = overflowing_classifier(tmp_path_factory.mktemp("keras") / "overflow.keras")
    source = model_sources.keras_file(keras_file, "unit")
    export(source, repository, name="overflow", layers=["conv"], methods=["gradcam", "hirescam"])
    info = ModelInfo("raw-inf", 16, 16, ("a", "b", "c"), (LayerInfo("conv", 4, 4),), ("gradcam",))
    folder = write_python_model(repository, "raw-inf", RAW_INF_MODEL)
    (folder / "config.pbtxt").write_text(config_text(build_config(info, ServingOptions())))
    with running_triton(repository, log_dir=tmp_path_factory.mktemp("logs")) as triton:
        yield triton


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return media.write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=3)


def test_the_server_refuses_to_send_maps_its_model_made_non_finite(server, clip, tmp_path, capsys):
    output = tmp_path / "out.mp4"
    run = run_cli(capsys, clip, "-o", output, "--url", server.urls.grpc, "--model", "overflow")
    assert run.code == 1
    assert "INTERNAL: the model computed NaN or infinity in CAM__conv for frame 0" in run.error
    assert "(a fault of the served model" in run.error
    assert not output.exists()


def test_the_client_refuses_a_map_holding_infinity(server, clip, tmp_path, capsys):
    output = tmp_path / "out.mp4"
    run = run_cli(capsys, clip, "-o", output, "--url", server.urls.grpc, "--model", "raw-inf")
    assert run.code == 1
    assert "the server returned a gradcam map of layer 'conv' holding NaN or infinity" in run.error
    assert "a fault of the server or its model, not of the video" in run.error
    assert not output.exists()


def test_black_frames_of_the_same_model_are_served(server):
    from gradcam_client.remote.server import GradcamServer

    result = GradcamServer(server.urls.grpc, "overflow").infer(
        np.zeros((2, 16, 16, 3), np.uint8), np.array([-1, 1])
    )
    assert np.isfinite(result.maps["conv"]).all()
