"""Encoded frames and top-k answers through a real Triton: same answers, smaller messages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from map_quality import pearson
from served_models import EFFNET, TINY
from tritonclient.utils import InferenceServerException

from gradcam_client.media.samples import PHOTOS, pan_zoom_frames, photo
from gradcam_client.remote import contract
from gradcam_client.remote.server import GradcamServer
from gradcam_client.remote.wire import Wire

pytestmark = pytest.mark.integration


def encoded_infer(url: str, files: list[bytes]) -> grpcclient.InferResult:
    """A hand-made request with ENCODED_FRAMES, as any Triton client could send."""
    encoded = np.array([[f] for f in files], dtype=object)
    inputs = [
        grpcclient.InferInput(contract.ENCODED_FRAMES, list(encoded.shape), "BYTES"),
        grpcclient.InferInput(contract.TARGET_CLASS, [len(files), 1], "INT32"),
    ]
    inputs[0].set_data_from_numpy(encoded)
    inputs[1].set_data_from_numpy(np.full((len(files), 1), -1, np.int32))
    return grpcclient.InferenceServerClient(url).infer(TINY, inputs)


def test_png_frames_answer_exactly_as_raw_frames_and_top_k_answers_are_the_top(triton, rng):
    frames = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    targets = np.array([-1, 0, 1, -1, 4], np.int32)
    raw = GradcamServer(triton.urls.grpc, TINY).infer(frames, targets)
    png = GradcamServer(triton.urls.grpc, TINY, wire=Wire("png"), top_k=3).infer(frames, targets)
    np.testing.assert_array_equal(png.class_index, raw.class_index)
    for layer, maps in raw.maps.items():
        np.testing.assert_allclose(png.maps[layer], maps, rtol=1e-5, atol=1e-7)
    top = np.argsort(-raw.probabilities, axis=1)[:, :3]
    np.testing.assert_allclose(
        np.take_along_axis(png.probabilities, top, 1),
        np.take_along_axis(raw.probabilities, top, 1),
        rtol=1e-5,
    )
    assert (np.count_nonzero(png.probabilities, axis=1) == 3).all()


def test_a_top_k_answer_carries_no_probability_vector(triton):
    server = GradcamServer(triton.urls.grpc, TINY, top_k=2)
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    inputs = [
        grpcclient.InferInput(contract.FRAMES, [1, 32, 32, 3], "UINT8"),
        grpcclient.InferInput(contract.TARGET_CLASS, [1, 1], "INT32"),
    ]
    inputs[0].set_data_from_numpy(np.zeros((1, 32, 32, 3), np.uint8))
    inputs[1].set_data_from_numpy(np.full((1, 1), -1, np.int32))
    wanted = server._requested_outputs(server.model_info())
    answer = client.infer(
        TINY, inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in wanted]
    )
    assert answer.get_output(contract.PROBABILITIES) is None
    assert answer.as_numpy(contract.TOP_CLASSES).shape == (1, contract.DEFAULT_TOP_K)


def test_a_bad_encoded_frame_fails_its_request_naming_it_while_the_others_succeed(triton, rng):
    frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    good = [bytes(f[0]) for f in Wire("jpeg").encode(frames)]
    bad = {
        3: [good[0], good[1][: len(good[1]) // 2], good[2]],  # truncated JPEG, frame 1
        5: [good[0], good[1], b"this is not an image"],  # frame 2
    }
    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        try:
            outcomes[i] = encoded_infer(triton.urls.grpc, bad.get(i, good))
        except InferenceServerException as error:
            outcomes[i] = error

    with ThreadPoolExecutor(8) as pool:  # eight requests at once: one dynamic batch
        list(pool.map(send, range(8)))
    for index, frame in ((3, 1), (5, 2)):
        error = outcomes.pop(index)
        assert isinstance(error, InferenceServerException)
        assert "INVALID_ARGUMENT" in str(error.status())
        assert f"ENCODED_FRAMES frame {frame} of this request" in error.message()
    assert "Invalid JPEG data" in str(error) or "Unknown image file format" in str(error)
    for answer in outcomes.values():
        assert answer.as_numpy(contract.CLASS_INDEX).shape == (3, 1)


def map_correlations(url: str, frames: np.ndarray, quality: int) -> np.ndarray:
    """Per frame, the Grad-CAM map correlation between JPEG frames and raw ones (same class)."""
    raw = GradcamServer(url, EFFNET).infer(frames, np.full(len(frames), -1))
    jpeg = GradcamServer(url, EFFNET, wire=Wire("jpeg", quality)).infer(frames, raw.class_index)
    (layer,) = raw.maps
    gradcam = 0  # methods are in the config's order; Grad-CAM first
    return np.array(
        [
            pearson(j[gradcam], r[gradcam])
            for j, r in zip(jpeg.maps[layer], raw.maps[layer], strict=True)
        ]
    )


def test_jpeg_q95_maps_correlate_with_raw_maps_on_photos_and_a_pan(triton):
    def model_size(image):
        return cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)

    photos = np.stack([model_size(photo(name)) for name in PHOTOS])
    pan = np.stack([model_size(f) for f in pan_zoom_frames(16, (640, 360))])
    for frames in (photos, pan):
        correlations = map_correlations(triton.urls.grpc, frames, 95)
        assert correlations.mean() >= 0.99, correlations.round(3)
        assert correlations.min() >= 0.98, correlations.round(3)
