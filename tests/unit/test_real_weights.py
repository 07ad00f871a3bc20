"""The offline default model with its real ImageNet weights, and VGG16 with random ones."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from gradcam_client.remote import contract
from gradcam_server import model_sources
from gradcam_server.explainer import GradCamModule

BOXES = json.loads((Path(__file__).parents[1] / "data" / "boxes.json").read_text())
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat

pytestmark = pytest.mark.slow


def peak_in_image(cam: np.ndarray, image_shape: tuple[int, ...]) -> tuple[float, float]:
    """The map's arg-max, as (x, y) in the image's pixels."""
    iy, ix = np.unravel_index(np.argmax(cam), cam.shape)
    h, w = cam.shape
    return (ix + 0.5) / w * image_shape[1], (iy + 0.5) / h * image_shape[0]


def test_chelsea_is_a_cat_and_every_method_looks_at_its_face():
    source = model_sources.efficientnet_lite0()
    module = GradCamModule(
        source.model, source.preprocess, source.default_layers, list(contract.METHODS)
    )
    image = skimage.data.chelsea()
    frame = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)
    out = module.serve(tf.constant(frame[None]), tf.constant([[contract.PREDICTED_CLASS]]))
    probabilities = out[contract.PROBABILITIES].numpy()[0]
    predicted = int(out[contract.CLASS_INDEX].numpy()[0, 0])
    assert predicted in CAT_CLASSES, source.class_names[predicted]
    assert probabilities[list(CAT_CLASSES)].sum() > 0.9
    x0, y0, x1, y1 = BOXES["chelsea"]["cat_face"]["box"]
    maps = out[contract.cam_output_name(source.default_layers[0])].numpy()[0]
    for method, cam in zip(contract.METHODS, maps, strict=True):
        assert cam.max() > 0, method
        x, y = peak_in_image(cam, image.shape)
        assert x0 <= x <= x1 and y0 <= y <= y1, (method, x, y)


def test_vgg16_with_random_weights_explains_block5_conv3_by_default(tmp_path):
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import model_info_from_config, parse_config_text

    folder = export(model_sources.vgg16(weights=None), tmp_path, methods=["gradcam"])
    info = model_info_from_config(parse_config_text((folder / "config.pbtxt").read_text()))
    assert info.name == "vgg16"
    assert info.layers == (contract.LayerInfo("block5_conv3", 14, 14),)
    assert (info.input_height, info.input_width) == (224, 224)
    assert info.class_names[284] == "Siamese cat"


def test_vgg16_blocks_preset_is_the_last_convolution_of_each_block():
    source = model_sources.vgg16(weights=None)
    assert source.resolve_layers(["blocks"]) == model_sources.VGG16_BLOCK_LAYERS
    assert source.resolve_layers(["default", "block4_conv3"]) == ["block5_conv3", "block4_conv3"]


def test_vgg16_without_internet_names_the_offline_options(monkeypatch):
    import keras

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure: network is unreachable")

    monkeypatch.setattr(keras.applications, "VGG16", no_network)
    with pytest.raises(ValueError, match=r"--weights FILE.*--random-weights"):
        model_sources.vgg16("imagenet")
