"""The serving graph against a plain eager TensorFlow + numpy reference, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from served_models import ALL_METHODS, make_tiny_classifier

from gradcam_client.remote import contract
from gradcam_server.explainer import GradCamModule
from gradcam_server.preprocessing import caffe


def reference_maps(acts: np.ndarray, grads: np.ndarray) -> dict[str, np.ndarray]:
    """Textbook formulas on one frame: acts and grads are [h, w, k]."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    weighted = lambda w: relu(np.tensordot(acts, w, axes=([2], [0])))  # noqa: E731
    g2, g3 = grads**2, grads**3
    sum_a = acts.sum(axis=(0, 1))
    alpha = np.where(grads > 0, g2 / (2 * g2 + sum_a * g3 + 1e-6), 0)
    return {
        "gradcam": weighted(grads.mean(axis=(0, 1))),
        "gradcampp": weighted((alpha * relu(grads)).sum(axis=(0, 1))),
        "layercam": relu((relu(grads) * acts).sum(axis=2)),
        "hirescam": relu((grads * acts).sum(axis=2)),
        "xgradcam": weighted((grads * acts).sum(axis=(0, 1)) / (sum_a + 1e-7)),
    }


def eager_reference(model, layers, frame: np.ndarray, target: int):
    """The tutorial recipe: one GradientTape per frame, logits from the Dense weights."""
    import keras

    dense = model.get_layer("predictions")
    feature_model = keras.Model(
        model.inputs, [model.get_layer(n).output for n in layers] + [dense.input]
    )
    kernel, bias = (w.numpy() for w in dense.weights)
    x = caffe(tf.constant(frame[None].astype(np.float32)))
    with tf.GradientTape() as tape:
        *acts, features = feature_model(x)
        logits = tf.matmul(features, kernel) + bias
        cls = int(tf.argmax(logits[0])) if target < 0 else target
        score = logits[0, cls]
    grads = tape.gradient(score, acts)
    probs = tf.nn.softmax(logits)[0].numpy()
    maps = {
        name: reference_maps(a[0].numpy(), g[0].numpy())
        for name, a, g in zip(layers, acts, grads, strict=True)
    }
    return probs, cls, maps


@pytest.fixture(scope="module")
def tiny_model():
    return make_tiny_classifier()


def serve(module: GradCamModule, frames: np.ndarray, targets: list[int]):
    out = module.serve(tf.constant(frames), tf.constant(np.array(targets, np.int32)[:, None]))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("layers", [["conv2"], ["conv1", "conv2"]])
def test_every_method_matches_the_eager_reference(tiny_model, layers, rng):
    module = GradCamModule(tiny_model, caffe, layers, ALL_METHODS)
    frames = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    targets = [-1, 0, 3, -1]
    out = serve(module, frames, targets)
    informative = 0
    for i, (frame, target) in enumerate(zip(frames, targets, strict=True)):
        probs, cls, maps = eager_reference(tiny_model, layers, frame, target)
        np.testing.assert_allclose(out[contract.PROBABILITIES][i], probs, atol=1e-5)
        assert out[contract.CLASS_INDEX][i, 0] == cls
        for layer in layers:
            for m, method in enumerate(ALL_METHODS):
                expected = maps[layer][method]
                got = out[contract.cam_output_name(layer)][i, m]
                scale = max(float(expected.max()), 1e-12)
                assert np.abs(got - expected).max() / scale < 1e-4, (layer, method)
                informative += bool(expected.max() > 0)
    assert informative > len(frames) * len(layers) * len(ALL_METHODS) // 2, "maps mostly zero"


def test_outputs_follow_the_contract(tiny_model):
    module = GradCamModule(tiny_model, caffe, ["conv1", "conv2"], ["gradcam", "hirescam"])
    out = serve(module, np.zeros((2, 32, 32, 3), np.uint8), [-1, 1])
    assert out[contract.PROBABILITIES].shape == (2, 5)
    assert out[contract.CLASS_INDEX].dtype == np.int32
    assert out[contract.cam_output_name("conv1")].shape == (2, 2, 30, 30)
    assert out[contract.cam_output_name("conv2")].shape == (2, 2, 13, 13)
    assert all((v >= 0).all() for k, v in out.items() if k.startswith(contract.CAM_PREFIX))


def test_a_frame_is_explained_the_same_alone_or_in_any_batch(tiny_model, rng):
    module = GradCamModule(tiny_model, caffe, ["conv1", "conv2"], ALL_METHODS)
    frames = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    targets = [2, -1, 4, 0, -1, 1]
    batched = serve(module, frames, targets)
    for i in range(len(frames)):
        alone = serve(module, frames[i : i + 1], targets[i : i + 1])
        for name, value in alone.items():
            scale = max(float(np.abs(value).max()), 1e-12)
            assert np.abs(batched[name][i] - value[0]).max() / scale < 1e-5, name


@pytest.mark.parametrize("value", [0, 255])
def test_blank_and_saturated_frames_give_finite_outputs(tiny_model, value):
    module = GradCamModule(tiny_model, caffe, ["conv1", "conv2"], ALL_METHODS)
    out = serve(module, np.full((2, 32, 32, 3), value, np.uint8), [-1, 3])
    for name, array in out.items():
        assert np.isfinite(array).all(), name


def test_unknown_layer_names_the_choices(tiny_model):
    with pytest.raises(ValueError, match=r"conv9.*choose from \['conv1', 'pool1', 'conv2'\]"):
        GradCamModule(tiny_model, caffe, ["conv9"], ["gradcam"])


def test_unknown_method_names_the_choices(tiny_model):
    with pytest.raises(ValueError, match=r"scorecam.*choose from"):
        GradCamModule(tiny_model, caffe, ["conv2"], ["scorecam"])


def test_every_contract_method_is_implemented():
    from gradcam_server.cam_methods import CAM_METHODS

    assert list(CAM_METHODS) == list(contract.METHODS) == ALL_METHODS


def test_a_model_without_layers_only_predicts(tiny_model, rng):
    full = GradCamModule(tiny_model, caffe, ["conv2"], ["gradcam"])
    forward = GradCamModule(tiny_model, caffe, [], ["gradcam"])
    frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got, want = serve(forward, frames, [-1, 2, -1]), serve(full, frames, [-1, 2, -1])
    predictions = {
        contract.PROBABILITIES,
        contract.TOP_CLASSES,
        contract.TOP_PROBABILITIES,
        contract.CLASS_INDEX,
    }
    assert set(got) == predictions
    np.testing.assert_allclose(got[contract.PROBABILITIES], want[contract.PROBABILITIES], atol=1e-6)
    np.testing.assert_array_equal(got[contract.CLASS_INDEX], want[contract.CLASS_INDEX])
    np.testing.assert_array_equal(got[contract.TOP_CLASSES], want[contract.TOP_CLASSES])


def test_gradcampp_ignores_negative_gradients_even_where_its_denominator_vanishes(monkeypatch):
    """With sum(A) = 2 and a gradient of -1, 2g^2 + sum(A) g^3 = 0: that entry's alpha is
    1/0, which must not turn the map into NaN (inf * ReLU(-1) = inf * 0)."""
    from gradcam_server import cam_methods

    monkeypatch.setattr(cam_methods, "GRADCAMPP_EPSILON", 0.0)  # the vanishing denominator
    activations = tf.constant([[[[1.0], [1.0]]]])  # [batch 1, h 1, w 2, channels 1]
    gradients = tf.constant([[[[-1.0], [0.5]]]])
    cam = cam_methods.gradcampp(activations, gradients).numpy()
    # Only g = 0.5 counts: alpha = 0.25 / (0.5 + 2 * 0.125) = 1/3, weight = 1/3 * 0.5.
    np.testing.assert_allclose(cam, [[[1 / 6, 1 / 6]]], rtol=1e-6)
