"""The tensor contract between a Grad-CAM model and its clients: one source of truth.

The exporter builds its serving signature from these names, the Triton config is generated from
them, and the client reads everything else it needs (input size, layers, methods, class names)
from the model config parameters that `ModelInfo` round-trips.

Per frame (Triton adds the batch dimension):

| tensor            | dtype | shape             | meaning                                   |
|-------------------|-------|-------------------|-------------------------------------------|
| FRAMES            | UINT8 | [H, W, 3]         | RGB frame at the model's input size       |
| ENCODED_FRAMES    | BYTES | [1]               | the frame as a JPEG or PNG file, any size |
| TARGET_CLASS      | INT32 | [1]               | class to explain; -1: the predicted class |
| PROBABILITIES     | FP32  | [num_classes]     | softmax probabilities                     |
| TOP_CLASSES       | INT32 | [top_k]           | the top-k classes, most probable first    |
| TOP_PROBABILITIES | FP32  | [top_k]           | their probabilities                       |
| CLASS_INDEX       | INT32 | [1]               | the class that was explained              |
| CAM__<layer>      | FP32  | [n_methods, h, w] | raw ReLU'd maps at the layer's resolution |

A request carries exactly one of FRAMES and ENCODED_FRAMES (both are optional in the Triton
config), plus TARGET_CLASS. Encoded frames are decoded and resized to the input size in the
SavedModel's graph, so a remote client sends 15-25 KB of JPEG instead of 150 KB of pixels.
Triton's dynamic batcher merges only requests carrying the same set of inputs: raw requests
batch with raw ones and encoded with encoded ones; the model serves both kinds of batches.
A client asks only for the outputs it reads: TOP_CLASSES and TOP_PROBABILITIES (5 numbers
each) instead of the 1,000 of PROBABILITIES, when it needs no more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FRAMES = "FRAMES"
ENCODED_FRAMES = "ENCODED_FRAMES"
TARGET_CLASS = "TARGET_CLASS"
PROBABILITIES = "PROBABILITIES"
TOP_CLASSES = "TOP_CLASSES"
TOP_PROBABILITIES = "TOP_PROBABILITIES"
CLASS_INDEX = "CLASS_INDEX"
CAM_PREFIX = "CAM__"

FRAME_INPUTS = (FRAMES, ENCODED_FRAMES)
"""The optional inputs: a request carries exactly one of them."""

DEFAULT_TOP_K = 5

RAW_SIGNATURE = "serving_default"
ENCODED_SIGNATURE = "serving_encoded"
DECODE_SIGNATURE = "decode_frames"
"""The SavedModel's signatures: raw frames, encoded frames, and the decoding step alone."""

PREDICTED_CLASS = -1
"""Value of TARGET_CLASS that asks for the predicted (arg-max) class."""

INPUT_DTYPES = {FRAMES: "UINT8", ENCODED_FRAMES: "BYTES", TARGET_CLASS: "INT32"}
OUTPUT_DTYPES = {
    PROBABILITIES: "FP32",
    TOP_CLASSES: "INT32",
    TOP_PROBABILITIES: "FP32",
    CLASS_INDEX: "INT32",
}
CAM_DTYPE = "FP32"
_NUMPY_DTYPES = {"UINT8": np.uint8, "INT32": np.int32, "FP32": np.float32, "BYTES": np.object_}


def triton_dtype(tensor: str) -> str:
    """The Triton dtype name ("UINT8", "BYTES", "INT32", "FP32") of a contract tensor."""
    if tensor.startswith(CAM_PREFIX):
        return CAM_DTYPE
    try:
        return {**INPUT_DTYPES, **OUTPUT_DTYPES}[tensor]
    except KeyError:
        raise KeyError(f"{tensor!r} is not a tensor of the Grad-CAM contract") from None


def numpy_dtype(tensor: str) -> np.dtype:
    """The numpy dtype of a contract tensor (TensorFlow takes it too: `tf.as_dtype`; BYTES is
    numpy's object dtype, TensorFlow's string)."""
    return np.dtype(_NUMPY_DTYPES[triton_dtype(tensor)])


METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "layercam": "Layer-CAM",
    "hirescam": "HiResCAM",
    "xgradcam": "XGrad-CAM",
}
"""Method ids (as used in the config and on command lines) and their display names."""

PARAMETER_PREFIX = "gradcam."


def cam_output_name(layer: str) -> str:
    """Name of the output tensor holding the maps of one layer."""
    return f"{CAM_PREFIX}{layer}"


@dataclass(frozen=True)
class LayerInfo:
    """A layer that is explained, with the resolution of its maps."""

    name: str
    height: int
    width: int

    @property
    def output_name(self) -> str:
        return cam_output_name(self.name)


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to know about a served Grad-CAM model."""

    name: str
    input_height: int
    input_width: int
    class_names: tuple[str, ...]
    layers: tuple[LayerInfo, ...]
    methods: tuple[str, ...]
    max_batch_size: int = 16
    description: str = ""
    top_k: int = 0  # 0: a model exported without the top-k outputs
    encoded_frames: bool = False  # whether it accepts ENCODED_FRAMES
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def inputs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Input name -> (Triton dtype, per-frame shape)."""
        specs = {FRAMES: (INPUT_DTYPES[FRAMES], (self.input_height, self.input_width, 3))}
        if self.encoded_frames:
            specs[ENCODED_FRAMES] = (INPUT_DTYPES[ENCODED_FRAMES], (1,))
        specs[TARGET_CLASS] = (INPUT_DTYPES[TARGET_CLASS], (1,))
        return specs

    def optional_inputs(self) -> tuple[str, ...]:
        """The inputs a request may leave out (it carries exactly one of these)."""
        return FRAME_INPUTS if self.encoded_frames else ()

    def outputs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Output name -> (Triton dtype, per-frame shape)."""
        specs = {PROBABILITIES: (OUTPUT_DTYPES[PROBABILITIES], (self.num_classes,))}
        if self.top_k:
            specs[TOP_CLASSES] = (OUTPUT_DTYPES[TOP_CLASSES], (self.top_k,))
            specs[TOP_PROBABILITIES] = (OUTPUT_DTYPES[TOP_PROBABILITIES], (self.top_k,))
        specs[CLASS_INDEX] = (OUTPUT_DTYPES[CLASS_INDEX], (1,))
        for layer in self.layers:
            specs[layer.output_name] = (CAM_DTYPE, (len(self.methods), layer.height, layer.width))
        return specs

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model {self.name!r} explains no layer {name!r}; it has {self.layer_names}")

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def to_parameters(self) -> dict[str, str]:
        """The metadata as Triton model-config parameters (string values)."""
        params = {
            "input_size": f"{self.input_height},{self.input_width}",
            "layers": json.dumps([[lay.name, lay.height, lay.width] for lay in self.layers]),
            "methods": ",".join(self.methods),
            "class_names": json.dumps(list(self.class_names)),
            "description": self.description,
        }
        if self.top_k:
            params["top_k"] = str(self.top_k)
        if self.encoded_frames:
            params["encoded_frames"] = "jpeg,png"
        params.update(self.extra)
        return {PARAMETER_PREFIX + key: value for key, value in params.items()}

    @classmethod
    def from_parameters(
        cls, name: str, parameters: dict[str, str], max_batch_size: int = 16
    ) -> ModelInfo:
        """Rebuild the metadata from config parameters written by `to_parameters`."""
        own = {
            key[len(PARAMETER_PREFIX) :]: value
            for key, value in parameters.items()
            if key.startswith(PARAMETER_PREFIX)
        }
        missing = {"input_size", "layers", "methods", "class_names"} - own.keys()
        if missing:
            raise ValueError(
                f"model {name!r} is not a Grad-CAM model: its config lacks {sorted(missing)}"
            )
        height, width = (int(v) for v in own.pop("input_size").split(","))
        layers = tuple(LayerInfo(n, int(h), int(w)) for n, h, w in json.loads(own.pop("layers")))
        methods = tuple(m for m in own.pop("methods").split(",") if m)
        class_names = tuple(json.loads(own.pop("class_names")))
        description = own.pop("description", "")
        top_k = int(own.pop("top_k", "0"))
        encoded_frames = bool(own.pop("encoded_frames", ""))
        return cls(
            name=name,
            input_height=height,
            input_width=width,
            class_names=class_names,
            layers=layers,
            methods=methods,
            max_batch_size=max_batch_size,
            description=description,
            top_k=top_k,
            encoded_frames=encoded_frames,
            extra=own,
        )

    @classmethod
    def from_triton_config(cls, config: dict[str, Any]) -> ModelInfo:
        """From a Triton model config as JSON (`get_model_config(..., as_json=True)`)."""
        config = config.get("config", config)
        parameters = {
            key: value.get("string_value", "")
            for key, value in config.get("parameters", {}).items()
        }
        return cls.from_parameters(
            config["name"], parameters, int(config.get("max_batch_size", 0)) or 1
        )
