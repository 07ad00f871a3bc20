"""A user's own ONNX image classifier as a source model for the exporter."""

from __future__ import annotations

from pathlib import Path

import onnx
import tensorflow as tf

from gradcam_server.model_sources import SourceModel, class_names_for
from gradcam_server.onnx_graph import OnnxGraph, OnnxModelError
from gradcam_server.onnx_network import OnnxNetwork
from gradcam_server.preprocessing import get_preprocessing


def parse_size(text: str, what: str = "--input-size") -> tuple[int, int]:
    """ "224x224" (or "224") as (height, width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"{what} takes HEIGHTxWIDTH, e.g. 224x224; got {text!r}")
    return sizes[0], sizes[1]


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """The ONNX model in `path` (weights in external data files beside it are read too)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"no ONNX model file at {path}")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf and onnx raise many types for a bad file
        raise OnnxModelError(f"{path} is not an ONNX model ({type(error).__name__})") from error
    if not model.graph.node:
        raise OnnxModelError(f"{path} is not an ONNX model (it holds no graph)")
    return model


def onnx_network(
    path: str | Path,
    input_size: tuple[int, int] | None = None,
    token_grid: tuple[int, int] | None = None,
    dtype: tf.DType = tf.float32,
) -> OnnxNetwork:
    """The network of an ONNX file, ready for `GradCamModule`."""
    path = Path(path)
    graph = OnnxGraph(load_onnx(path), dtype)
    return OnnxNetwork(graph, input_size, token_grid, source=path.name)


def onnx_file(
    path: str | Path,
    preprocessing: str = "none",
    class_names_file: str | Path | None = None,
    input_size: tuple[int, int] | None = None,
    token_grid: tuple[int, int] | None = None,
) -> SourceModel:
    """A user's own ONNX classifier, with its preprocessing named (default none: float RGB
    pixels 0..255 in the model's own layout, for models that normalise by themselves)."""
    path = Path(path)
    preprocess = get_preprocessing(preprocessing)
    network = onnx_network(path, input_size, token_grid)
    return SourceModel(
        name=path.stem.replace("_", "-").lower(),
        model=network,
        preprocess=preprocess,
        class_names=class_names_for(network.num_classes, class_names_file),
        default_layers=[network.default_layer(preprocess)],
        description=f"ONNX model {path.name}",
    )
