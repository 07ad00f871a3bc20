"""The exported Grad-CAM models served by a real Triton, called over real gRPC."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
import tritonclient.grpc as grpcclient
from served_models import ALL_METHODS, EFFNET, TINY
from tritonclient.utils import InferenceServerException

from gradcam_client.remote import contract
from gradcam_client.remote.server import GradcamServer
from gradcam_server.triton_config import model_info_from_config, parse_config_text

pytestmark = pytest.mark.integration


def direct(repository, name, frames, targets):
    """The SavedModel called in this process, without Triton."""
    path = repository / name / "1" / "model.savedmodel"
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = signature(
        FRAMES=tf.constant(frames), TARGET_CLASS=tf.constant(np.int32(targets).reshape(-1, 1))
    )
    return {key: value.numpy() for key, value in out.items()}


def raw_infer(url, name, frames, targets, dtype="UINT8", target_dtype="INT32"):
    client = grpcclient.InferenceServerClient(url)
    inputs = [
        grpcclient.InferInput(contract.FRAMES, list(frames.shape), dtype),
        grpcclient.InferInput(contract.TARGET_CLASS, [len(targets), 1], target_dtype),
    ]
    inputs[0].set_data_from_numpy(frames)
    inputs[1].set_data_from_numpy(np.asarray(targets).reshape(-1, 1))
    return client.infer(name, inputs)


@pytest.mark.parametrize("name", [TINY, EFFNET])
def test_server_outputs_equal_a_direct_savedmodel_call(triton, model_repository, name, rng):
    server = GradcamServer(triton.urls.grpc, name)
    info = server.model_info()
    frames = rng.integers(0, 256, (3, info.input_height, info.input_width, 3), dtype=np.uint8)
    targets = np.array([-1, 3, 1], np.int32)
    got = server.infer(frames, targets)
    want = direct(model_repository, name, frames, targets)
    np.testing.assert_allclose(got.probabilities, want[contract.PROBABILITIES], atol=1e-5)
    np.testing.assert_array_equal(got.class_index, want[contract.CLASS_INDEX][:, 0])
    assert got.class_index[1:].tolist() == [3, 1]
    for layer in info.layers:
        expected = want[layer.output_name]
        scale = max(float(expected.max()), 1e-12)
        assert np.abs(got.maps[layer.name] - expected).max() / scale < 1e-5


def test_clients_read_the_model_metadata_from_the_server(triton, model_repository):
    server = GradcamServer(triton.urls.grpc, TINY)
    info = server.model_info()
    on_disk = model_info_from_config(
        parse_config_text((model_repository / TINY / "config.pbtxt").read_text())
    )
    assert info == on_disk
    assert info.layer_names == ["conv1", "conv2"] and list(info.methods) == ALL_METHODS
    assert set(server.list_models()) == {TINY, EFFNET}


def test_chelsea_through_triton_is_a_cat(triton):
    server = GradcamServer(triton.urls.grpc, EFFNET)
    info = server.model_info()
    frame = cv2.resize(skimage.data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    result = server.infer(frame[None], np.array([-1]))
    assert 281 <= result.class_index[0] <= 285
    assert info.class_names[result.class_index[0]].endswith("cat")


def test_concurrent_requests_are_batched_together(triton, rng):
    server = GradcamServer(triton.urls.grpc, TINY)
    before = server.statistics()[0]["model_stats"][0]
    frames = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    results = [None] * len(frames)

    def one(i: int) -> None:
        results[i] = server.infer(frames[i : i + 1], np.array([i % 5 - 1]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = server.statistics()[0]["model_stats"][0]
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert inferences == len(frames)
    assert executions < inferences, f"{executions} executions for {inferences} frames"
    # Every request got its own frame's answer despite the shared batches.
    batched = server.infer(frames, np.array([i % 5 - 1 for i in range(len(frames))]))
    for i, result in enumerate(results):
        np.testing.assert_allclose(result.probabilities[0], batched.probabilities[i], atol=1e-5)


@pytest.mark.parametrize(
    ("frames", "dtype", "targets", "message"),
    [
        (np.zeros((1, 31, 32, 3), np.uint8), "UINT8", [-1], "unexpected shape"),
        (np.zeros((1, 32, 32, 3), np.float32), "FP32", [-1], "data-type"),
        (np.zeros((1, 32, 32, 3), np.uint8), "UINT8", [7], "out of range"),
        (np.zeros((17, 32, 32, 3), np.uint8), "UINT8", [-1] * 17, "batch-size must be <= 16"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    triton, frames, dtype, targets, message
):
    with pytest.raises(InferenceServerException, match=message) as caught:
        raw_infer(triton.urls.grpc, TINY, frames, np.int32(targets), dtype)
    assert "INVALID_ARGUMENT" in str(caught.value.status())
    good = raw_infer(triton.urls.grpc, TINY, np.zeros((2, 32, 32, 3), np.uint8), np.int32([-1, 0]))
    assert good.as_numpy(contract.CLASS_INDEX)[1, 0] == 0


def test_a_bad_request_fails_alone_while_concurrent_good_ones_succeed(triton, rng):
    frames = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        target = 99 if i == 3 else -1
        try:
            outcomes[i] = raw_infer(triton.urls.grpc, TINY, frames, np.int32([target]))
        except InferenceServerException as error:
            outcomes[i] = error

    with ThreadPoolExecutor(8) as pool:  # eight requests at once: one dynamic batch
        list(pool.map(send, range(8)))
    assert isinstance(outcomes.pop(3), InferenceServerException)
    assert all(not isinstance(o, Exception) for o in outcomes.values())
