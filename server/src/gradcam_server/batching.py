"""Run several inference requests as one batch: validate, concatenate, run once, split back.

Pure numpy so that it is tested without Triton; the python backend adapter only converts
between Triton tensors and these arrays. Every request gets exactly one answer, in order: its
outputs or an error message of its own, while the other requests still succeed.

A request brings raw frames or encoded ones (JPEG/PNG bytes); encoded frames are decoded by
the model's own decoding step, request by request, and a frame that cannot be decoded fails
its request with a message naming that frame.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradcam_client.remote import contract
from gradcam_client.remote.contract import ModelInfo

MAX_DECODED_PIXELS = 4096 * 4096
"""Largest picture an encoded frame may decode to (a small PNG can claim gigapixels)."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

Outputs = dict[str, np.ndarray]
RunBatch = Callable[[np.ndarray, np.ndarray], Outputs]
Decode = Callable[[np.ndarray], np.ndarray]
"""Encoded frames [n, 1] (bytes) -> frames [n, H, W, 3] uint8; raises ValueError if it cannot."""


@dataclass(frozen=True)
class RequestInputs:
    """The inputs of one request: frames [n, H, W, 3] uint8 or encoded frames [n, 1] bytes
    (exactly one of them), and targets [n, 1] int32."""

    frames: np.ndarray | None
    targets: np.ndarray | None
    encoded: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.targets.shape[0])


class RequestError(Exception):
    """A request that cannot be served; the message goes back to its client."""


class InferenceFailure(RequestError):
    """The model failed on a valid batch (a server-side fault, not the client's)."""


def validate(request: RequestInputs, info: ModelInfo) -> None:
    """Raise RequestError naming what is wrong with one request."""
    if (request.frames is None) == (request.encoded is None):
        raise RequestError(
            f"give the frames as exactly one of {contract.FRAMES} (raw pixels) and "
            f"{contract.ENCODED_FRAMES} (JPEG or PNG files)"
        )
    if request.encoded is not None:
        _validate_encoded(request.encoded)
        count = request.encoded.shape[0]
    else:
        _validate_frames(request.frames, info)
        count = request.frames.shape[0]
    _validate_targets(request.targets, count, info)


def _validate_encoded(encoded: np.ndarray) -> None:
    if encoded.dtype != object:
        raise RequestError(f"{contract.ENCODED_FRAMES} must be BYTES, got {encoded.dtype}")
    if encoded.ndim != 2 or encoded.shape[1] != 1:
        raise RequestError(
            f"{contract.ENCODED_FRAMES} must have shape [batch, 1] (one file per frame), "
            f"got {list(encoded.shape)}"
        )
    for index, (data,) in enumerate(encoded):
        size = image_size(bytes(data))
        if size is not None and size[0] * size[1] > MAX_DECODED_PIXELS:
            raise RequestError(
                f"{contract.ENCODED_FRAMES} frame {index} of this request is a "
                f"{size[0]}x{size[1]} picture; the largest this server decodes has "
                f"{MAX_DECODED_PIXELS:,} pixels: resize it first"
            )


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None if not found."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return None


def _validate_frames(frames: np.ndarray, info: ModelInfo) -> None:
    expected = (info.input_height, info.input_width, 3)
    if frames.dtype != contract.numpy_dtype(contract.FRAMES):
        wanted = contract.triton_dtype(contract.FRAMES)
        raise RequestError(f"{contract.FRAMES} must be {wanted}, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[1:] != expected:
        raise RequestError(
            f"{contract.FRAMES} must have shape [batch, {', '.join(map(str, expected))}], "
            f"got {list(frames.shape)}"
        )


def _validate_targets(targets: np.ndarray | None, count: int, info: ModelInfo) -> None:
    if targets is None:  # Triton lets it through once other inputs are optional
        raise RequestError(
            f"missing required input(s) ['{contract.TARGET_CLASS}']: one target per frame "
            f"(-1 for the predicted class)"
        )
    if targets.dtype != contract.numpy_dtype(contract.TARGET_CLASS):
        wanted = contract.triton_dtype(contract.TARGET_CLASS)
        raise RequestError(f"{contract.TARGET_CLASS} must be {wanted}, got {targets.dtype}")
    if targets.shape != (count, 1):
        raise RequestError(
            f"{contract.TARGET_CLASS} must have shape [{count}, 1] "
            f"(one target per frame), got {list(targets.shape)}"
        )
    bad = targets[(targets < contract.PREDICTED_CLASS) | (targets >= info.num_classes)]
    if bad.size:
        raise RequestError(
            f"{contract.TARGET_CLASS} {int(bad[0])} is out of range: use -1 (the predicted "
            f"class) or a class index from 0 to {info.num_classes - 1}"
        )


def decode_request(encoded: np.ndarray, decode: Decode) -> np.ndarray:
    """The frames of one request's encoded files, or RequestError naming the first bad one.

    All files are decoded in one call; only when that fails is each decoded alone, to find it.
    """
    try:
        return decode(encoded)
    except ValueError:
        pass
    frames = []
    for index in range(len(encoded)):
        try:
            frames.append(decode(encoded[index : index + 1]))
        except ValueError as error:
            size = len(encoded[index, 0])
            raise RequestError(
                f"{contract.ENCODED_FRAMES} frame {index} of this request ({size} bytes) is not "
                f"a decodable JPEG or PNG image: {error}"
            ) from None
    return np.concatenate(frames)


def run_requests(
    requests: list[RequestInputs], info: ModelInfo, run: RunBatch, decode: Decode | None = None
) -> list[Outputs | RequestError]:
    """One answer per request, in order: outputs, or the error that request caused."""
    answers: list[Outputs | RequestError] = []
    valid: list[int] = []
    pixels: list[np.ndarray] = []
    for index, request in enumerate(requests):
        try:
            validate(request, info)
            if request.encoded is None:
                pixels.append(request.frames)
            elif decode is None:
                raise RequestError(f"this model does not accept {contract.ENCODED_FRAMES}")
            else:
                pixels.append(decode_request(request.encoded, decode))
        except RequestError as error:
            answers.append(error)
            continue
        answers.append({})
        valid.append(index)
    if not valid:
        return answers

    frames = np.concatenate(pixels)
    targets = np.concatenate([requests[i].targets for i in valid])
    try:
        outputs = run(frames, targets)
    except Exception as error:  # the model failed: every request in the batch hears why
        failure = InferenceFailure(f"inference failed: {error}")
        for index in valid:
            answers[index] = failure
        return answers

    start = 0
    for index in valid:
        stop = start + requests[index].size
        answer = {name: value[start:stop] for name, value in outputs.items()}
        problem = non_finite(answer)
        answers[index] = InferenceFailure(problem) if problem else answer
        start = stop
    return answers


def non_finite(outputs: Outputs) -> str | None:
    """What is wrong if a float output of one request holds NaN or infinity, else None.

    Never sent on: a client normalising a map that holds +inf would erase every other value.
    """
    for name, value in outputs.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            frame = int(np.argwhere(~np.isfinite(value))[0][0])
            return (
                f"the model computed NaN or infinity in {name} for frame {frame} of this "
                "request (a fault of the served model, e.g. overflowing weights)"
            )
    return None
