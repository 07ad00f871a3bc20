"""Triton python-backend adapter: loads the SavedModel, converts tensors, nothing more.

The model version folder holds a two-line `model.py` that imports `TritonPythonModel` from
here; the batching logic lives in `gradcam_server.batching`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_client.remote import contract
from gradcam_client.remote.contract import ModelInfo
from gradcam_server.batching import InferenceFailure, RequestError, RequestInputs, run_requests

SAVEDMODEL_DIR = "model.savedmodel"


def instance_gpu(args: Mapping[str, Any]) -> int | None:
    """The GPU Triton gave this model instance (`KIND_GPU`, one instance group per GPU when the
    config names no kind), or None for a CPU instance."""
    if args.get("model_instance_kind") != "GPU":
        return None
    return int(args.get("model_instance_device_id") or 0)


def place_on_device(tf: Any, gpu: int | None) -> None:
    """Let TensorFlow in this instance's process see only its own GPU (none for a CPU instance),
    with memory growth, so instances on several GPUs do not all crowd onto GPU 0.

    Each instance is a process of its own (the backend stub), so this holds for the instance.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpu is not None and not 0 <= gpu < len(gpus):
        raise RuntimeError(f"Triton placed this instance on GPU {gpu}; TensorFlow sees {len(gpus)}")
    visible = [gpus[gpu]] if gpu is not None else []
    if gpus:
        tf.config.set_visible_devices(visible, "GPU")
    for device in visible:
        tf.config.experimental.set_memory_growth(device, True)


class SavedModelRunner:
    """Calls the SavedModel's signatures on numpy arrays."""

    def __init__(self, path: str | Path, gpu: int | None = None) -> None:
        import tensorflow as tf

        place_on_device(tf, gpu)
        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))
        self._signature = self._loaded.signatures[contract.RAW_SIGNATURE]
        self._decode = self._loaded.signatures.get(contract.DECODE_SIGNATURE)
        self.output_names = frozenset(self._signature.structured_outputs)

    @property
    def decodes(self) -> bool:
        """Whether the SavedModel has the decoding step (models exported before it have not)."""
        return self._decode is not None

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """Encoded frames [n, 1] -> frames [n, H, W, 3] uint8; ValueError naming the problem."""
        tf = self._tf
        try:
            out = self._decode(**{contract.ENCODED_FRAMES: tf.constant(encoded, tf.string)})
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(op_error(error.message)) from None
        return out[contract.FRAMES].numpy()

    def __call__(self, frames: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        tf = self._tf
        outputs = self._signature(
            **{
                name: tf.constant(value, tf.as_dtype(contract.numpy_dtype(name)))
                for name, value in ((contract.FRAMES, frames), (contract.TARGET_CLASS, targets))
            }
        )
        return {name: value.numpy() for name, value in outputs.items()}


_TRACE_LINES = ("Graph execution error", "Detected at node", "<stack traces", "[[")


def op_error(message: str) -> str:
    """What a TensorFlow op said, without the graph trace around it."""
    lines = [line.strip() for line in message.splitlines()]
    said = [line for line in lines if line and not line.startswith(_TRACE_LINES)]
    return said[-1].rstrip(".") if said else "undecodable"


def _optional_input(pb_utils: Any, request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def check_outputs(config: dict[str, Any], saved: frozenset[str], model_dir: Path) -> None:
    """Refuse a SavedModel that lacks outputs its config.pbtxt declares (an older export)."""
    missing = sorted({output["name"] for output in config.get("output", [])} - saved)
    if missing:
        raise RuntimeError(
            f"{model_dir} lacks {', '.join(missing)}, which config.pbtxt declares: it was "
            "exported by an older version; export it again (make export, or gradcam-server "
            "export --overwrite)"
        )


class TritonPythonModel:
    """The python backend's model class (see Triton's python_backend README)."""

    def initialize(self, args: dict[str, Any]) -> None:
        # Must be set before TensorFlow starts, or every instance takes all GPU memory.
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        config = json.loads(args["model_config"])
        self.info = ModelInfo.from_triton_config(config)
        model_dir = Path(args["model_repository"]) / args["model_version"] / SAVEDMODEL_DIR
        self.runner = SavedModelRunner(model_dir, instance_gpu(args))
        check_outputs(config, self.runner.output_names, model_dir)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        inputs = [
            RequestInputs(
                frames=_optional_input(pb_utils, request, contract.FRAMES),
                targets=_optional_input(pb_utils, request, contract.TARGET_CLASS),
                encoded=_optional_input(pb_utils, request, contract.ENCODED_FRAMES),
            )
            for request in requests
        ]
        decode = self.runner.decode if self.runner.decodes else None
        responses = []
        for answer in run_requests(inputs, self.info, self.runner, decode):
            if isinstance(answer, RequestError):
                code = (
                    pb_utils.TritonError.INTERNAL
                    if isinstance(answer, InferenceFailure)
                    else pb_utils.TritonError.INVALID_ARG
                )
                error = pb_utils.TritonError(str(answer), code)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                tensors = [pb_utils.Tensor(name, value) for name, value in answer.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
