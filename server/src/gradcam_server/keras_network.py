"""A Keras classifier as the serving graph's network: its 4-D layers, and logits."""

from __future__ import annotations

import keras
import tensorflow as tf

from gradcam_client.remote import contract
from gradcam_server.cam_methods import NEEDS_NONNEGATIVE_ACTIVATIONS
from gradcam_server.layer_signs import is_nonnegative
from gradcam_server.network import ExplainableLayer


def logits_model(model: keras.Model) -> keras.Model:
    """The same classifier with its last softmax removed, so scores are logits.

    Grad-CAM differentiates the class score before the softmax. A final Dense with a softmax
    activation gets a linear one; a final Softmax/Activation layer is skipped; anything else is
    taken to output logits already.
    """
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and activation is keras.activations.softmax
    ):
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    if activation is keras.activations.softmax:
        last.activation = keras.activations.linear
    return model


def conv_layer_names(model: keras.Model) -> list[str]:
    """Layers with a 4-D output ([batch, h, w, channels]) that Grad-CAM can explain."""
    names = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            names.append(layer.name)
    return names


def check_layer_signs(
    model: keras.Model, layers: tuple[str, ...], methods: tuple[str, ...]
) -> None:
    """Refuse methods that assume activations >= 0 on layers that can be negative."""
    picky = [m for m in methods if m in NEEDS_NONNEGATIVE_ACTIVATIONS]
    signed = [name for name in layers if not is_nonnegative(model.get_layer(name))]
    if not picky or not signed:
        return
    name = signed[0]
    layer = model.get_layer(name)
    explainable = conv_layer_names(model)
    before = [
        n for n in explainable[: explainable.index(name)] if is_nonnegative(model.get_layer(n))
    ]
    hint = f" (e.g. {before[-1]!r})" if before else ""
    shown = ", ".join(contract.METHODS[m] for m in picky)
    raise ValueError(
        f"{shown} assume activations >= 0, but layer {name!r} ({type(layer).__name__}, no "
        f"non-negative activation) can be negative; explain a post-activation layer{hint} or "
        f"leave out {','.join(picky)}"
    )


class KerasNetwork(tf.Module):
    """A Keras classifier (NHWC images in, scores out) with the layers chosen to explain."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(name="keras_network")
        self.model = logits_model(model)
        _, height, width, _ = self.model.inputs[0].shape
        if height is None or width is None:
            raise ValueError("the model needs a fixed input size (height and width)")
        self.input_size = (int(height), int(width))
        self.num_classes = int(self.model.output.shape[-1])
        self.layers: tuple[str, ...] = ()
        self.grad_model: keras.Model | None = None

    def explainable_layers(self) -> list[ExplainableLayer]:
        """Every layer with a 4-D output, in the model's order."""
        rows = []
        for name in conv_layer_names(self.model):
            layer = self.model.get_layer(name)
            h, w, c = (int(d) for d in layer.output.shape[1:])
            rows.append(ExplainableLayer(name, "spatial", (h, w), c, type(layer).__name__))
        return rows

    def select(self, layers: tuple[str, ...], methods: tuple[str, ...]) -> None:
        """Check the layers and the methods' assumptions on them, and build the graph."""
        explainable = conv_layer_names(self.model)
        unknown = [name for name in layers if name not in explainable]
        if unknown:
            raise ValueError(
                f"cannot explain layer(s) {unknown}: not 4-D layers of {self.model.name!r}; "
                f"choose from {explainable}"
            )
        check_layer_signs(self.model, layers, methods)
        self.layers = layers
        self.grad_model = keras.Model(
            self.model.inputs,
            [self.model.get_layer(name).output for name in layers] + [self.model.output],
            name="gradcam_outputs",
        )

    def layer_grid(self, name: str) -> tuple[int, int]:
        shape = self.model.get_layer(name).output.shape
        return int(shape[1]), int(shape[2])

    def __call__(self, images: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]:
        outputs = self.grad_model(images, training=False)
        if not isinstance(outputs, (list, tuple)):
            return [], outputs
        *activations, logits = outputs
        return list(activations), logits

    def to_grid(self, name: str, tensor: tf.Tensor) -> tf.Tensor:
        """Keras layers are [batch, h, w, channels] already."""
        return tensor
