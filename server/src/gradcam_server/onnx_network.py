"""An ONNX classifier (`onnx_graph.OnnxGraph`) as the serving graph's network.

Layers are the graph's own tensors, named as in the ONNX file. A spatial tensor (N, C, H, W)
is explained as it is (channels-last where the graph stores it so); a token sequence
(N, T, C) drops its leading non-patch tokens (a class token, DeiT's distillation token) and
is laid out on its patch grid; a Swin-style (N, H, W, C) tensor is spatial already.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import tensorflow as tf

from gradcam_client.remote import contract
from gradcam_server.cam_methods import NEEDS_NONNEGATIVE_ACTIVATIONS
from gradcam_server.layer_signs import onnx_is_nonnegative
from gradcam_server.network import ExplainableLayer
from gradcam_server.onnx_graph import OnnxGraph, OnnxModelError, TensorInfo

_RELAYING = frozenset({"Transpose", "Identity", "Dropout"})
"""Operators that pass a map on with its values unchanged."""

_LUMA = (0.299, 0.587, 0.114)
"""RGB weights of a grey frame for a one-channel model (ITU-R BT.601, as PIL and torchvision)."""


class OnnxNetwork(tf.Module):
    """An ONNX graph with a fixed input size, its explainable tensors and its logits."""

    def __init__(
        self,
        graph: OnnxGraph,
        input_size: tuple[int, int] | None = None,
        token_grid: tuple[int, int] | None = None,
        source: str = "the model",
    ) -> None:
        super().__init__(name="onnx_network")
        if graph.input_size is None and input_size is None:
            raise OnnxModelError(
                f"{source} takes images of any size (its input {graph.input_name!r} has a "
                "dynamic height or width); give the size it was trained for with --input-size HxW"
            )
        if graph.input_size and input_size and tuple(input_size) != graph.input_size:
            height, width = graph.input_size
            raise OnnxModelError(
                f"{source} takes {height}x{width} images only; leave out --input-size or give "
                f"{height}x{width}"
            )
        self.graph = graph
        self.source = source
        self.input_size = tuple(graph.input_size or input_size)
        self.infos = graph.tensor_infos(self.input_size, token_grid)
        by_name = {info.name: info for info in self.infos}
        output = by_name.get(graph.output_name)
        if output is None or len(output.shape) != 1:
            shape = "a constant" if output is None else f"shape (batch, {output.shape})"
            raise OnnxModelError(
                f"{source}'s output {graph.output_name!r} is {shape}, not (batch, classes) "
                "scores of an image classifier"
            )
        self.num_classes = output.shape[0]
        self._infos = {info.name: info for info in self.infos if info.kind}
        if not self._infos:
            raise OnnxModelError(
                f"{source} has no layer a map can come from (no spatial feature map or token "
                "sequence with a patch grid)"
            )
        self.layers: tuple[str, ...] = ()

    def explainable_layers(self) -> list[ExplainableLayer]:
        """Spatial maps and token sequences, in topological order."""
        return [
            ExplainableLayer(i.name, i.kind, i.grid, i.channels, i.op, i.prefix)
            for i in self._infos.values()
        ]

    def select(self, layers: tuple[str, ...], methods: tuple[str, ...]) -> None:
        """Check the layers and the methods' assumptions on them."""
        for name in layers:
            if name not in self._infos:
                raise OnnxModelError(self._unknown_layer(name))
        picky = [m for m in methods if m in NEEDS_NONNEGATIVE_ACTIVATIONS]
        signed = [name for name in layers if not onnx_is_nonnegative(self.graph, name)]
        if picky and signed:
            name = signed[0]
            order = list(self._infos)
            before = [n for n in order[: order.index(name)] if onnx_is_nonnegative(self.graph, n)]
            hint = f" (e.g. {before[-1]!r})" if before else ""
            shown = ", ".join(contract.METHODS[m] for m in picky)
            raise OnnxModelError(
                f"{shown} assume activations >= 0, but layer {name!r} "
                f"({self._infos[name].op}, no non-negative activation) can be negative; explain "
                f"a post-activation layer{hint} or leave out {','.join(picky)}"
            )
        self.layers = tuple(layers)

    def _unknown_layer(self, name: str) -> str:
        others = {info.name: info for info in self.infos}
        if name in others:
            shape = ", ".join(str(d) for d in ("batch", *others[name].shape))
            return (
                f"layer {name!r} of {self.source} is a ({shape}) tensor, not a spatial map or "
                "a token sequence with a patch grid (gradcam-server layers lists the ones that are)"
            )
        nearest = difflib.get_close_matches(name, list(self._infos), n=3, cutoff=0.5)
        hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
        return f"no layer {name!r} in {self.source}{hint} (gradcam-server layers lists them)"

    def layer_grid(self, name: str) -> tuple[int, int]:
        return self._infos[name].grid

    def preprocess_channels(self, images: tf.Tensor) -> tf.Tensor:
        """RGB frames to the model's channels (grey for a one-channel model)."""
        if self.graph.input_channels == 3:
            return images
        weights = tf.constant(_LUMA, dtype=images.dtype)
        return tf.reduce_sum(images * weights, axis=-1, keepdims=True)

    @tf.autograph.experimental.do_not_convert
    def __call__(self, images: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]:
        """The selected layers' tensors (as the graph consumes them) and the logits for
        preprocessed channels-last RGB images."""
        kept, logits = self.graph.run(
            self.preprocess_channels(images), self.layers, channels_last=True
        )
        return [kept[name] for name in self.layers], logits

    def to_grid(self, name: str, tensor: tf.Tensor) -> tf.Tensor:
        """[batch, h, w, channels]: patch tokens on their grid; spatial maps channels-last."""
        info = self._infos[name]
        if info.kind == "tokens":
            h, w = info.grid
            return tf.reshape(tensor[:, info.prefix :, :], [-1, h, w, info.channels])
        return tensor  # channels-last already: `run(channels_last=True)`, or Swin's (N, H, W, C)

    def default_layer(self, preprocess=None) -> str:
        """The layer `--layers default` explains.

        For a CNN (a model whose last explainable layer is a spatial map, Swin's (N, H, W, C)
        blocks included), that last spatial map, named by the layer computing it rather than a
        transpose of it. For a token model, the last token sequence whose patch tokens still
        get a non-zero gradient from the predicted class (measured once, on random images): a
        class-token ViT's last block passes only the class token on, so this is its last
        block's first LayerNorm (LayerNorm outputs are preferred when there are any).
        """
        layers = list(self._infos.values())
        if layers[-1].kind == "spatial":
            return self._computed_by(layers[-1].name)
        tokens = [i for i in layers if i.kind == "tokens"]
        candidates = [i for i in tokens if i.op == "LayerNormalization"] or tokens
        reached = self._patch_gradients(candidates, preprocess)
        usable = [info.name for info, ok in zip(candidates, reached, strict=True) if ok]
        if usable:
            return usable[-1]
        spatial = [i for i in self._infos.values() if i.kind == "spatial"]
        if spatial:
            return spatial[-1].name
        raise OnnxModelError(
            f"no token sequence of {self.source} passes gradient from its patch tokens to the "
            "prediction; choose a layer with --layers"
        )

    def _computed_by(self, name: str) -> str:
        """The layer whose values spatial layer `name` only re-lays (through a Transpose or
        Identity), else `name`."""
        node = self.graph.producer(name)
        while node is not None and node.op_type in _RELAYING:
            source = self._infos.get(node.input[0])
            if source is None or (source.kind, source.grid) != ("spatial", self._infos[name].grid):
                break
            name = source.name
            node = self.graph.producer(name)
        return name

    def _patch_gradients(self, infos: Sequence[TensorInfo], preprocess) -> list[bool]:
        """Whether the predicted class's logit has a non-zero gradient on each sequence's
        patch tokens."""
        height, width = self.input_size
        frames = tf.random.stateless_uniform([2, height, width, 3], seed=(0, 1), maxval=255.0)
        images = preprocess(frames) if preprocess else frames
        names = [info.name for info in infos]
        images = self.preprocess_channels(images)
        with tf.GradientTape() as tape:
            tape.watch(images)
            kept, logits = self.graph.run(images, names, channels_last=True)
            score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
        gradients = tape.gradient(score, [kept[name] for name in names])
        return [
            grad is not None and bool(tf.reduce_any(grad[:, info.prefix :, :] != 0))
            for info, grad in zip(infos, gradients, strict=True)
        ]
