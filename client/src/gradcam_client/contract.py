"""The tensor contract between a Grad-CAM model and its clients: one source of truth.

The exporter builds its serving signature from these names, the Triton config is generated from
them, and the client reads everything else it needs (input size, layers, methods, class names)
from the model config parameters that `ModelInfo` round-trips.

Per frame (Triton adds the batch dimension):

| tensor        | dtype | shape             | meaning                                           |
|---------------|-------|-------------------|---------------------------------------------------|
| FRAMES        | UINT8 | [H, W, 3]         | RGB frame at the model's input size               |
| TARGET_CLASS  | INT32 | [1]               | class to explain; -1 explains the predicted class |
| PROBABILITIES | FP32  | [num_classes]     | softmax probabilities                             |
| CLASS_INDEX   | INT32 | [1]               | the class that was explained                      |
| CAM__<layer>  | FP32  | [n_methods, h, w] | raw ReLU'd maps at the layer's resolution         |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FRAMES = "FRAMES"
TARGET_CLASS = "TARGET_CLASS"
PROBABILITIES = "PROBABILITIES"
CLASS_INDEX = "CLASS_INDEX"
CAM_PREFIX = "CAM__"

PREDICTED_CLASS = -1
"""Value of TARGET_CLASS that asks for the predicted (arg-max) class."""

INPUT_DTYPES = {FRAMES: "UINT8", TARGET_CLASS: "INT32"}
OUTPUT_DTYPES = {PROBABILITIES: "FP32", CLASS_INDEX: "INT32"}
CAM_DTYPE = "FP32"
_NUMPY_DTYPES = {"UINT8": np.uint8, "INT32": np.int32, "FP32": np.float32}


def triton_dtype(tensor: str) -> str:
    """The Triton dtype name ("UINT8", "INT32", "FP32") of a contract tensor, maps included."""
    if tensor.startswith(CAM_PREFIX):
        return CAM_DTYPE
    try:
        return {**INPUT_DTYPES, **OUTPUT_DTYPES}[tensor]
    except KeyError:
        raise KeyError(f"{tensor!r} is not a tensor of the Grad-CAM contract") from None


def numpy_dtype(tensor: str) -> np.dtype:
    """The numpy dtype of a contract tensor (TensorFlow takes it too: `tf.as_dtype`)."""
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
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def inputs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Input name -> (Triton dtype, per-frame shape)."""
        return {
            FRAMES: (INPUT_DTYPES[FRAMES], (self.input_height, self.input_width, 3)),
            TARGET_CLASS: (INPUT_DTYPES[TARGET_CLASS], (1,)),
        }

    def outputs(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Output name -> (Triton dtype, per-frame shape)."""
        specs = {
            PROBABILITIES: (OUTPUT_DTYPES[PROBABILITIES], (self.num_classes,)),
            CLASS_INDEX: (OUTPUT_DTYPES[CLASS_INDEX], (1,)),
        }
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
        return cls(
            name=name,
            input_height=height,
            input_width=width,
            class_names=class_names,
            layers=layers,
            methods=methods,
            max_batch_size=max_batch_size,
            description=description,
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
