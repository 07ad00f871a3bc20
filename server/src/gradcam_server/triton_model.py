"""Triton python-backend adapter: loads the SavedModel, converts tensors, nothing more.

The model version folder holds a two-line `model.py` that imports `TritonPythonModel` from
here; the batching logic lives in `gradcam_server.batching`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_client import contract
from gradcam_client.contract import ModelInfo
from gradcam_server.batching import InferenceFailure, RequestError, RequestInputs, run_requests

SAVEDMODEL_DIR = "model.savedmodel"


class SavedModelRunner:
    """Calls the SavedModel's serving signature on numpy arrays."""

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))
        self._signature = self._loaded.signatures["serving_default"]

    def __call__(self, frames: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        tf = self._tf
        outputs = self._signature(
            **{
                contract.FRAMES: tf.constant(frames, tf.uint8),
                contract.TARGET_CLASS: tf.constant(targets, tf.int32),
            }
        )
        return {name: value.numpy() for name, value in outputs.items()}


class TritonPythonModel:
    """The python backend's model class (see Triton's python_backend README)."""

    def initialize(self, args: dict[str, Any]) -> None:
        # Must be set before TensorFlow starts, or every instance takes all GPU memory.
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        config = json.loads(args["model_config"])
        self.info = ModelInfo.from_triton_config(config)
        model_dir = Path(args["model_repository"]) / args["model_version"] / SAVEDMODEL_DIR
        self.runner = SavedModelRunner(model_dir)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        inputs = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, contract.FRAMES).as_numpy()
            targets = pb_utils.get_input_tensor_by_name(request, contract.TARGET_CLASS).as_numpy()
            inputs.append(RequestInputs(frames, targets))

        responses = []
        for answer in run_requests(inputs, self.info, self.runner):
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
