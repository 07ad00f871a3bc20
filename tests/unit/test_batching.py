"""Several requests as one batch: validated one by one, run once, split back in order."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_client import contract
from gradcam_client.contract import LayerInfo, ModelInfo
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
