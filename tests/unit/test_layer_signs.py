"""Methods that assume activations >= 0 are refused on layers that can be negative."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from served_models import ALL_METHODS

from gradcam_server import cli
from gradcam_server import efficientnet_lite0 as lite0
from gradcam_server.explainer import GradCamModule
from gradcam_server.layer_signs import is_nonnegative
from gradcam_server.preprocessing import caffe


@pytest.fixture(scope="module")
def mixed_model() -> keras.Model:
    """Layers of every sign: ReLU convolutions, BatchNorm, residual Adds, pooling, tanh."""
    inputs = keras.Input((16, 16, 3))
    relu = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(inputs)
    linear = keras.layers.Conv2D(4, 3, padding="same", name="linear_conv")(inputs)
    norm = keras.layers.BatchNormalization(name="bn")(linear)
    relu6 = keras.layers.ReLU(6.0, name="relu6")(norm)
    leaky = keras.layers.LeakyReLU(name="leaky")(norm)
    tanh = keras.layers.Activation("tanh", name="tanh")(norm)
    positive_sum = keras.layers.Add(name="add_relus")([relu, relu6])
    signed_sum = keras.layers.Add(name="add_signed")([relu, norm])
    pooled = keras.layers.MaxPooling2D(name="pool")(positive_sum)
    joined = keras.layers.Concatenate(name="concat")([relu, relu6, leaky, tanh, signed_sum])
    features = keras.layers.Concatenate(name="features")(
        [
            keras.layers.GlobalAveragePooling2D()(pooled),
            keras.layers.GlobalAveragePooling2D()(joined),
        ]
    )
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(features)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("relu_conv", True),
        ("relu6", True),
        ("add_relus", True),
        ("pool", True),
        ("linear_conv", False),
        ("bn", False),
        ("leaky", False),
        ("tanh", False),
        ("add_signed", False),
        ("concat", False),
    ],
)
def test_which_layers_are_nonnegative(mixed_model, layer, expected):
    assert is_nonnegative(mixed_model.get_layer(layer)) is expected


def test_methods_that_need_nonnegative_activations_are_refused_on_signed_layers(mixed_model):
    with pytest.raises(ValueError) as refused:
        GradCamModule(mixed_model, caffe, ["relu_conv", "add_signed"], ALL_METHODS)
    message = str(refused.value)
    assert "Grad-CAM++, XGrad-CAM assume activations >= 0" in message
    assert "'add_signed' (Add" in message and "(e.g. 'add_relus')" in message
    assert "leave out gradcampp,xgradcam" in message


def test_signed_layers_still_get_the_methods_defined_for_any_sign(mixed_model):
    module = GradCamModule(mixed_model, caffe, ["bn", "add_signed"], ["gradcam", "hirescam"])
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    out = module.serve(tf.constant(frames), tf.constant([[-1], [1]], tf.int32))
    assert all(np.isfinite(v.numpy()).all() for v in out.values())


def test_the_efficientnet_presets_are_post_activation_layers():
    model = lite0.build_model(weights=None)
    for name in [*lite0.STAGE_ACTIVATIONS, lite0.HEAD_LAYER]:
        assert is_nonnegative(model.get_layer(name)), name
    assert not is_nonnegative(model.get_layer("block3_output"))


def test_vgg16_block_convolutions_are_post_relu():
    from gradcam_server.model_sources import VGG16_BLOCK_LAYERS

    model = keras.applications.VGG16(weights=None)
    assert all(is_nonnegative(model.get_layer(name)) for name in VGG16_BLOCK_LAYERS)


def test_export_refuses_in_one_line(tmp_path, capsys):
    code = cli.main(
        [
            "export",
            "--random-weights",
            "--layers",
            "block3_output",
            "--methods",
            "all",
            "--repository",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "layer 'block3_output'" in err and "(e.g. 'block3_dw_activation')" in err
    assert not any(tmp_path.iterdir())
