"""The Grad-CAM serving graph: predictions and maps of every layer and method in one pass.

Three signatures: `serving_default` takes raw frames, `serving_encoded` takes JPEG or PNG
bytes (decoded and resized in the graph, as TF Serving's image-bytes inputs are), and
`decode_frames` is that decoding step alone, which the Triton adapter runs per request so that
one undecodable frame fails only its own request.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gradcam_client.remote import contract
from gradcam_server.cam_methods import CAM_METHODS, check_methods
from gradcam_server.keras_network import KerasNetwork
from gradcam_server.network import Network
from gradcam_server.preprocessing import Preprocess


def _dtype(tensor: str) -> tf.DType:
    """The TensorFlow dtype of a contract tensor."""
    return tf.as_dtype(contract.numpy_dtype(tensor))


def _as_contract(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The outputs in the contract's dtypes (a float64 model still serves FP32 maps)."""
    return {name: tf.cast(value, _dtype(name)) for name, value in outputs.items()}


class GradCamModule(tf.Module):
    """A tf.Module whose `serve` signature implements the tensor contract.

    `model` is a Keras classifier or a `Network` (an ONNX graph: `onnx_network.OnnxNetwork`).
    """

    def __init__(
        self,
        model: keras.Model | Network,
        preprocess: Preprocess,
        layers: list[str] | tuple[str, ...],
        methods: list[str] | tuple[str, ...],
        top_k: int | None = None,
    ) -> None:
        super().__init__(name="gradcam")
        network = KerasNetwork(model) if isinstance(model, keras.Model) else model
        self.layers = tuple(dict.fromkeys(layers))
        # No layers: a predictions-only model (the forward pass alone, e.g. as a baseline).
        self.methods = check_methods(methods) if self.layers else ()
        network.select(self.layers, self.methods)
        self.network = network
        self._preprocess = preprocess
        self.input_size = network.input_size
        self.num_classes = network.num_classes
        if top_k is None:  # the default, or every class of a model with fewer
            top_k = min(contract.DEFAULT_TOP_K, self.num_classes)
        if not 1 <= top_k <= self.num_classes:
            raise ValueError(f"top-k must be between 1 and the {self.num_classes} classes")
        self.top_k = top_k
        self.layer_shapes = {name: network.layer_grid(name) for name in self.layers}
        frames_spec = tf.TensorSpec(
            [None, *self.input_size, 3], _dtype(contract.FRAMES), contract.FRAMES
        )
        encoded_spec = tf.TensorSpec(
            [None, 1], _dtype(contract.ENCODED_FRAMES), contract.ENCODED_FRAMES
        )
        target_spec = tf.TensorSpec([None, 1], _dtype(contract.TARGET_CLASS), contract.TARGET_CLASS)
        self.serve = tf.function(self._serve, input_signature=[frames_spec, target_spec])
        self.serve_encoded = tf.function(
            self._serve_encoded, input_signature=[encoded_spec, target_spec]
        )
        self.decode_frames = tf.function(self._decode_frames, input_signature=[encoded_spec])

    def _decode_one(self, data: tf.Tensor) -> tf.Tensor:
        """One JPEG/PNG (or BMP, GIF: first frame) file to an RGB uint8 frame of the input size."""
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        height, width = self.input_size
        same_size = tf.reduce_all(tf.shape(image)[:2] == tf.constant([height, width]))

        def resized() -> tf.Tensor:
            # Antialiased bilinear: area-like when shrinking, as the client's own resize.
            scaled = tf.image.resize(image, [height, width], antialias=True)
            return tf.cast(tf.round(tf.clip_by_value(scaled, 0.0, 255.0)), tf.uint8)

        image = tf.cond(same_size, lambda: image, resized)
        return tf.ensure_shape(image, [height, width, 3])

    def _decode_frames(self, encoded_frames: tf.Tensor) -> dict[str, tf.Tensor]:
        frames = tf.map_fn(
            self._decode_one,
            tf.reshape(encoded_frames, [-1]),
            fn_output_signature=tf.TensorSpec([*self.input_size, 3], tf.uint8),
        )
        return {contract.FRAMES: frames}

    def _serve_encoded(
        self, encoded_frames: tf.Tensor, target_class: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        frames = self._decode_frames(encoded_frames)[contract.FRAMES]
        return self._serve(frames, target_class)

    def _predictions(self, logits: tf.Tensor, target: tf.Tensor) -> dict[str, tf.Tensor]:
        """Probabilities, the top-k and the explained class."""
        probabilities = tf.nn.softmax(logits, axis=-1)
        top = tf.math.top_k(probabilities, k=self.top_k)
        return {
            contract.PROBABILITIES: probabilities,
            contract.TOP_CLASSES: top.indices,
            contract.TOP_PROBABILITIES: top.values,
            contract.CLASS_INDEX: target[:, None],
        }

    def _serve(self, frames: tf.Tensor, target_class: tf.Tensor) -> dict[str, tf.Tensor]:
        images = self._preprocess(tf.cast(frames, tf.float32))
        if not self.layers:
            _, logits = self.network(images)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            target = tf.where(tf.reshape(target_class, [-1]) < 0, predicted, target_class[:, 0])
            return _as_contract(self._predictions(logits, target))
        with tf.GradientTape() as tape:
            # Records the pass even where no weight is a trainable variable (ONNX graphs).
            tape.watch(images)
            activations, logits = self.network(images)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            requested = tf.reshape(target_class, [-1])
            target = tf.where(requested < 0, predicted, requested)
            # Samples are independent, so the gradient of the sum is each sample's own gradient.
            score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
        gradients = tape.gradient(score, activations)
        outputs = self._predictions(logits, target)
        for name, acts, grads in zip(self.layers, activations, gradients, strict=True):
            # Taken where the graph consumes them, then both laid out as [batch, h, w, C].
            acts, grads = self.network.to_grid(name, acts), self.network.to_grid(name, grads)
            maps = [CAM_METHODS[method](acts, grads) for method in self.methods]
            outputs[contract.cam_output_name(name)] = tf.stack(maps, axis=1)
        return _as_contract(outputs)

    def save(self, path: str) -> None:
        """Write a SavedModel whose default signature is `serve` (raw frames)."""
        tf.saved_model.save(
            self,
            path,
            signatures={
                contract.RAW_SIGNATURE: self.serve,
                contract.ENCODED_SIGNATURE: self.serve_encoded,
                contract.DECODE_SIGNATURE: self.decode_frames,
            },
        )
