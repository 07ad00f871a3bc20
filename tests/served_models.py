"""The models the tests export: a tiny CNN for exact checks, and the real offline default."""

from __future__ import annotations

from pathlib import Path

ALL_METHODS = ["gradcam", "gradcampp", "layercam", "hirescam", "xgradcam"]
TINY = "tiny"
EFFNET = "efficientnet-lite0"
SMALL_224 = "tiny224"


def make_tiny_classifier(size: int = 32, classes: int = 5, seed: int = 0):
    """A small CNN ending in a softmax Dense, the shape of a typical Keras classifier."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def make_small_224_classifier():
    """224x224 in, 1,000 classes out, a 7x7 layer ("conv") to explain: EfficientNet-Lite0's
    shapes (so requests and answers have its sizes) at a small fraction of its cost."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1000, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=SMALL_224)


def export_small_224(repository: Path) -> Path:
    """Export `tiny224` (Grad-CAM on "conv", batches of up to 16) into `repository`."""
    from gradcam_server import model_sources
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    repository.mkdir(parents=True, exist_ok=True)
    path = repository.parent / f"{SMALL_224}.keras"
    make_small_224_classifier().save(path)
    export(
        model_sources.keras_file(path, "unit"),
        repository,
        name=SMALL_224,
        layers=["conv"],
        methods=["gradcam"],
        options=ServingOptions(max_batch_size=16),
    )
    return repository


def export_test_models(repository: Path, tiny_keras_file: Path) -> Path:
    """Export `tiny` (two layers, every method) and `efficientnet-lite0` (real weights)."""
    from gradcam_server import model_sources
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    export(
        model_sources.keras_file(tiny_keras_file, "caffe"),
        repository,
        name=TINY,
        layers=["conv1", "conv2"],
        methods=ALL_METHODS,
        options=ServingOptions(max_batch_size=16, max_queue_delay_us=20000),
    )
    export(model_sources.efficientnet_lite0(), repository, methods=ALL_METHODS)
    return repository
