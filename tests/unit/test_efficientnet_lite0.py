"""EfficientNet-Lite0: the legacy PyTorch reader and the Keras model with real weights."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from gradcam_server import efficientnet_lite0 as lite0
from gradcam_server.torch_legacy import load_state_dict

WEIGHTS = lite0.imagenet_weights_path()

# Logits of the reference PyTorch implementation (efficientnet_lite_pytorch with
# the same .pth) on the images below, resized to 224x224 with cv2.INTER_AREA.
TORCH_LOGITS = {
    "chelsea": {281: 8.1917, 282: 8.45094, 283: 1.41443, 284: 2.76293, 285: 10.53639},
    "coffee": {967: 10.81999, 968: 7.44955},
}


def _image(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    return cv2.resize(img, lite0.INPUT_SIZE[::-1], interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return load_state_dict(WEIGHTS)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return lite0.build_model()


@pytest.fixture(scope="module")
def logits(model: keras.Model) -> dict[str, np.ndarray]:
    names = ("chelsea", "coffee")
    batch = np.stack([_image(n) for n in names]).astype(np.float32)
    out = model(lite0.preprocess(tf.constant(batch)), training=False).numpy()
    return dict(zip(names, out, strict=True))


# -- legacy reader -------------------------------------------------------------------------


def test_state_dict_tensors(state: dict[str, np.ndarray]) -> None:
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._expand_conv.weight"].shape == (1152, 192, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.bias"].shape == (1000,)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in state.values())


def test_not_a_pickle_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x00\x01 definitely not a pickle" * 10)
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        load_state_dict(bad)


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pth"
    cut.write_bytes(WEIGHTS.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=r"cut\.pth.*truncated"):
        load_state_dict(cut)


def test_zip_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="zip-format"):
        load_state_dict(path)


def test_foreign_globals_are_refused_not_run(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"w": Boom()}, f, protocol=2)
    with pytest.raises(ValueError, match=r"evil\.pth.*refusing to load global"):
        load_state_dict(path)
    assert not (tmp_path / "pwned").exists()


# -- Keras model ---------------------------------------------------------------------------


def test_layer_names_and_shapes() -> None:
    model = lite0.build_model(weights=None)
    assert model.input_shape == (None, *lite0.INPUT_SIZE, 3)
    assert model.output_shape == (None, 1000)
    assert model.get_layer(lite0.HEAD_LAYER).output.shape == (None, 7, 7, 1280)
    assert model.get_layer("stem_activation").output.shape == (None, 112, 112, 32)
    for n in range(16):
        model.get_layer(f"block{n}_output")
    sizes = [model.get_layer(name).output.shape[1:] for name in lite0.STAGE_ACTIVATIONS]
    assert sizes == [
        (112, 112, 32),
        (56, 56, 144),
        (28, 28, 240),
        (14, 14, 480),
        (14, 14, 672),
        (7, 7, 1152),
        (7, 7, 1152),
    ]
    assert all(isinstance(model.get_layer(n), keras.layers.ReLU) for n in lite0.STAGE_ACTIVATIONS)
    assert isinstance(model.get_layer("logits"), keras.layers.Dense)
    assert model.count_params() == 4_694_024  # every float tensor of the .pth


def test_preprocess() -> None:
    out = lite0.preprocess(tf.constant([[0.0, 127.0, 255.0]]))
    np.testing.assert_allclose(out.numpy(), [[-127 / 128, 0.0, 1.0]])


@pytest.mark.slow
def test_weights_from_path_match_imagenet(model: keras.Model) -> None:
    other = lite0.build_model(weights=str(WEIGHTS))
    for name in ("stem_conv", "block5_dwconv", "logits"):
        for a, b in zip(
            model.get_layer(name).get_weights(), other.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_logits_match_pytorch(logits: dict[str, np.ndarray]) -> None:
    for name, expected in TORCH_LOGITS.items():
        got = [logits[name][i] for i in expected]
        np.testing.assert_allclose(got, list(expected.values()), atol=1e-3)


@pytest.mark.slow
def test_chelsea_is_a_cat(logits: dict[str, np.ndarray]) -> None:
    probs = tf.nn.softmax(logits["chelsea"]).numpy()
    top3 = np.argsort(probs)[::-1][:3]
    assert 281 <= top3[0] <= 285
    # Egyptian cat, tiger cat, tabby
    assert list(top3) == [285, 282, 281]
    np.testing.assert_allclose(probs[top3], [0.781, 0.097, 0.075], atol=0.03)


@pytest.mark.slow
def test_coffee_is_espresso(logits: dict[str, np.ndarray]) -> None:
    probs = tf.nn.softmax(logits["coffee"]).numpy()
    assert int(np.argmax(probs)) == 967
    assert probs[967] > 0.9
