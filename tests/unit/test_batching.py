"""Several requests as one batch: validated one by one, run once, split back in order."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gradcam_client.remote import contract
from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_server.batching import (
    InferenceFailure,
    RequestError,
    RequestInputs,
    run_requests,
    validate,
)

INFO = ModelInfo("m", 4, 4, ("a", "b", "c"), (LayerInfo("l", 2, 2),), ("gradcam",), 8)


def request(n: int, target: int = -1, size: int = 4) -> RequestInputs:
    frames = np.full((n, size, size, 3), n, np.uint8)
    return RequestInputs(frames, np.full((n, 1), target, np.int32))


def fake_model(frames: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Echoes each frame's first pixel so the split can be checked."""
    return {
        contract.CLASS_INDEX: frames[:, 0, 0, :1].astype(np.int32),
        contract.PROBABILITIES: np.repeat(targets.astype(np.float32), 3, axis=1),
    }


def test_requests_are_run_once_and_split_back_in_order():
    calls = []

    def model(frames, targets):
        calls.append(len(frames))
        return fake_model(frames, targets)

    answers = run_requests([request(1), request(3, 2), request(2, 0)], INFO, model)
    assert calls == [6]
    assert [a[contract.CLASS_INDEX][:, 0].tolist() for a in answers] == [[1], [3, 3, 3], [2, 2]]
    assert answers[1][contract.PROBABILITIES].tolist() == [[2, 2, 2]] * 3


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (request(2, size=5), "must have shape"),
        (RequestInputs(np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 1), np.int32)), "UINT8"),
        (RequestInputs(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 1), np.int64)), "INT32"),
        (RequestInputs(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((1, 1), np.int32)), "one target"),
        (request(1, target=3), "out of range.*0 to 2"),
        (request(1, target=-2), "out of range"),
    ],
)
def test_a_bad_request_gets_its_own_error_and_the_others_succeed(bad, message):
    answers = run_requests([request(1), bad, request(2)], INFO, fake_model)
    assert isinstance(answers[1], RequestError)
    with pytest.raises(RequestError, match=message):
        validate(bad, INFO)
    assert answers[0][contract.CLASS_INDEX].tolist() == [[1]]
    assert answers[2][contract.CLASS_INDEX].tolist() == [[2], [2]]


def test_a_model_failure_reaches_every_request_of_the_batch():
    def broken(frames, targets):
        raise RuntimeError("out of memory")

    answers = run_requests([request(1), request(1, target=9)], INFO, broken)
    assert isinstance(answers[0], InferenceFailure) and "out of memory" in str(answers[0])
    assert isinstance(answers[1], RequestError) and not isinstance(answers[1], InferenceFailure)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_map_holding_nan_or_infinity_fails_its_request_as_a_server_fault(bad):
    def overflowing(frames, targets):
        out = fake_model(frames, targets)
        maps = np.ones((len(frames), 1, 2, 2), np.float32)
        maps[frames[:, 0, 0, 0] == 3, 0, 1, 1] = bad  # the request of three frames
        out[contract.cam_output_name("l")] = maps
        return out

    answers = run_requests([request(1), request(3), request(2)], INFO, overflowing)
    assert isinstance(answers[1], InferenceFailure)
    assert "NaN or infinity in CAM__l for frame 0 of this request" in str(answers[1])
    assert answers[0][contract.cam_output_name("l")].max() == 1.0
    assert answers[2][contract.cam_output_name("l")].shape == (2, 1, 2, 2)


def encoded_request(files: list[bytes], target: int = -1) -> RequestInputs:
    encoded = np.array([[f] for f in files], dtype=object)
    return RequestInputs(None, np.full((len(files), 1), target, np.int32), encoded=encoded)


def fake_decode(encoded: np.ndarray) -> np.ndarray:
    """'Decodes' b"<digit>" to a frame of that value; anything else is not an image."""
    values = []
    for (data,) in encoded:
        if not (len(data) == 1 and data.isdigit()):
            raise ValueError("Unknown image file format")
        values.append(int(data))
    return np.array(values, np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)


def test_encoded_and_raw_requests_run_in_one_batch():
    calls = []

    def model(frames, targets):
        calls.append(len(frames))
        return fake_model(frames, targets)

    requests = [request(1), encoded_request([b"7", b"8"]), request(2)]
    answers = run_requests(requests, INFO, model, fake_decode)
    assert calls == [5]
    assert [a[contract.CLASS_INDEX][:, 0].tolist() for a in answers] == [[1], [7, 8], [2, 2]]


def test_an_undecodable_frame_fails_its_request_naming_the_frame_and_the_others_succeed():
    requests = [encoded_request([b"1"]), encoded_request([b"2", b"\xff\xd8\xff", b"3"]), request(2)]
    answers = run_requests(requests, INFO, fake_model, fake_decode)
    assert isinstance(answers[1], RequestError) and not isinstance(answers[1], InferenceFailure)
    message = str(answers[1])
    assert "ENCODED_FRAMES frame 1 of this request (3 bytes)" in message
    assert "Unknown image file format" in message
    assert answers[0][contract.CLASS_INDEX][:, 0].tolist() == [1]
    assert answers[2][contract.CLASS_INDEX][:, 0].tolist() == [2, 2]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            RequestInputs(
                np.zeros((1, 4, 4, 3), np.uint8),
                np.zeros((1, 1), np.int32),
                encoded=np.array([[b"1"]], object),
            ),
            "exactly one of FRAMES",
        ),
        (RequestInputs(None, np.zeros((1, 1), np.int32)), "exactly one of FRAMES"),
        (
            RequestInputs(None, np.zeros((1, 1), np.int32), encoded=np.array([b"1"], object)),
            r"shape \[batch, 1\]",
        ),
        (
            RequestInputs(
                None, np.zeros((1, 1), np.int32), encoded=np.array([[b"1"], [b"2"]], object)
            ),
            "one target",
        ),
    ],
)
def test_a_bad_encoded_request_is_refused_clearly(bad, message):
    answers = run_requests([request(1), bad], INFO, fake_model, fake_decode)
    assert isinstance(answers[1], RequestError)
    assert re.search(message, str(answers[1]))
    assert answers[0][contract.CLASS_INDEX][:, 0].tolist() == [1]


def test_a_model_without_the_decoding_step_refuses_encoded_frames():
    answers = run_requests([encoded_request([b"1"])], INFO, fake_model)
    assert "does not accept ENCODED_FRAMES" in str(answers[0])


def test_encoded_frames_too_large_to_decode_fail_before_decoding() -> None:
    import cv2

    from gradcam_server.batching import MAX_DECODED_PIXELS, image_size

    small_png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    small_jpeg = cv2.imencode(".jpg", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    assert image_size(small_png) == image_size(small_jpeg) == (40, 30)
    assert image_size(b"not an image") is None
    # A PNG header claiming 20000x20000 pixels: refused from the header alone.
    bomb = small_png[:16] + (20000).to_bytes(4, "big") * 2 + small_png[24:]
    assert image_size(bomb) == (20000, 20000) and MAX_DECODED_PIXELS < 20000 * 20000
    encoded = np.array([[small_png], [bomb]], dtype=object)
    request = RequestInputs(frames=None, targets=np.full((2, 1), -1, np.int32), encoded=encoded)
    with pytest.raises(RequestError, match="frame 1 of this request is a 20000x20000 picture"):
        validate(request, INFO)


def test_a_request_without_targets_is_refused_by_name() -> None:
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(RequestError, match=r"missing required input\(s\) \['TARGET_CLASS'\]"):
        validate(RequestInputs(frames=frames, targets=None), INFO)
