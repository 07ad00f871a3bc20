"""The exporter, the Triton config and the client agree on the tensor contract."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format

from gradcam_client.remote import contract
from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_server import model_sources
from gradcam_server.exporter import ExportError, export
from gradcam_server.triton_config import (
    ServingOptions,
    model_info_from_config,
    parse_config_text,
)

DTYPES = {"UINT8": tf.uint8, "INT32": tf.int32, "FP32": tf.float32, "BYTES": tf.string}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_keras_file):
    source = model_sources.keras_file(tiny_keras_file, "caffe")
    repo = tmp_path_factory.mktemp("repo")
    folder = export(
        source,
        repo,
        name="tiny",
        layers=["conv1", "conv2"],
        methods=["gradcam", "layercam"],
        options=ServingOptions(max_batch_size=8, max_queue_size=10),
    )
    return folder


def test_model_folder_layout(exported):
    assert (exported / "config.pbtxt").is_file()
    assert (exported / "1" / "model.py").is_file()
    assert (exported / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")], "staging left"


def test_savedmodel_signature_config_and_client_agree(exported):
    config = parse_config_text((exported / "config.pbtxt").read_text())
    info = model_info_from_config(config)
    # The client reads the config as JSON from the server; it must see the same metadata.
    as_json = json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))
    assert ModelInfo.from_triton_config({"config": as_json}) == info
    assert info.layers == (LayerInfo("conv1", 30, 30), LayerInfo("conv2", 13, 13))
    assert info.methods == ("gradcam", "layercam")
    assert info.num_classes == 5 and info.max_batch_size == 8
    assert info.top_k == contract.DEFAULT_TOP_K and info.encoded_frames

    config_inputs = {i.name: (i.data_type, tuple(i.dims)) for i in config.input}
    config_outputs = {o.name: (o.data_type, tuple(o.dims)) for o in config.output}
    # model_config.proto DataType values (BYTES is TYPE_STRING there)
    to_proto = {"UINT8": 2, "INT32": 8, "FP32": 11, "BYTES": 13}
    assert config_inputs == {k: (to_proto[d], s) for k, (d, s) in info.inputs().items()}
    assert config_outputs == {k: (to_proto[d], s) for k, (d, s) in info.outputs().items()}
    assert {i.name for i in config.input if i.optional} == set(contract.FRAME_INPUTS)

    signatures = tf.saved_model.load(str(exported / "1" / "model.savedmodel")).signatures
    # Each serving signature takes the required inputs plus one way of giving the frames.
    for signature_name, frames in (
        (contract.RAW_SIGNATURE, contract.FRAMES),
        (contract.ENCODED_SIGNATURE, contract.ENCODED_FRAMES),
    ):
        signature = signatures[signature_name]
        sig_inputs = signature.structured_input_signature[1]
        wanted = {k: v for k, v in info.inputs().items() if k in (frames, contract.TARGET_CLASS)}
        assert set(sig_inputs) == set(wanted)
        for name, (dtype, shape) in wanted.items():
            assert sig_inputs[name].dtype == DTYPES[dtype]
            assert tuple(sig_inputs[name].shape[1:]) == shape
        sig_outputs = signature.structured_outputs
        assert set(sig_outputs) == set(info.outputs())
        for name, (dtype, shape) in info.outputs().items():
            assert sig_outputs[name].dtype == DTYPES[dtype]
            assert tuple(sig_outputs[name].shape[1:]) == shape
    decode = signatures[contract.DECODE_SIGNATURE]
    assert set(decode.structured_input_signature[1]) == {contract.ENCODED_FRAMES}
    (frames_out,) = decode.structured_outputs.values()
    assert frames_out.dtype == DTYPES[info.inputs()[contract.FRAMES][0]]
    assert tuple(frames_out.shape[1:]) == info.inputs()[contract.FRAMES][1]


def test_every_tensor_has_one_dtype_in_the_contract(exported):
    from tritonclient.utils import triton_to_np_dtype

    info = model_info_from_config(parse_config_text((exported / "config.pbtxt").read_text()))
    for name, (dtype, _) in {**info.inputs(), **info.outputs()}.items():
        assert contract.triton_dtype(name) == dtype
        assert contract.numpy_dtype(name) == triton_to_np_dtype(dtype)
        assert tf.as_dtype(contract.numpy_dtype(name)) == DTYPES[dtype]
    with pytest.raises(KeyError, match="not a tensor of the Grad-CAM contract"):
        contract.triton_dtype("HEATMAP")


def test_config_batches_queues_and_warms_up(exported):
    config = parse_config_text((exported / "config.pbtxt").read_text())
    assert config.backend == "python"
    assert config.dynamic_batching.priority_levels == 2
    policy = config.dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 10
    # Live requests may shorten the queue time-out (Triton lets them only shorten it): an
    # hour for the others, and a late request is rejected, not run.
    assert policy.allow_timeout_override
    assert policy.default_timeout_microseconds == 3_600_000_000
    assert policy.timeout_action == policy.REJECT
    assert config.model_warmup[0].batch_size == 1
    assert set(config.model_warmup[0].inputs) == {contract.FRAMES, contract.TARGET_CLASS}
    assert len(config.model_warmup) == 1


def test_parameters_round_trip():
    info = ModelInfo(
        name="m",
        input_height=224,
        input_width=160,
        class_names=("a, b", 'say "c"', "d"),
        layers=(LayerInfo("x", 7, 5),),
        methods=("gradcam", "xgradcam"),
        max_batch_size=4,
        description="demo",
        top_k=3,
        encoded_frames=True,
    )
    assert ModelInfo.from_parameters("m", info.to_parameters(), 4) == info
    older = replace(info, top_k=0, encoded_frames=False)  # exported before either existed
    assert "gradcam.top_k" not in older.to_parameters()
    assert ModelInfo.from_parameters("m", older.to_parameters(), 4) == older
    assert set(older.inputs()) == {contract.FRAMES, contract.TARGET_CLASS}
    assert set(older.outputs()) == {contract.PROBABILITIES, contract.CLASS_INDEX, "CAM__x"}


def test_a_config_without_gradcam_parameters_is_refused():
    with pytest.raises(ValueError, match="not a Grad-CAM model"):
        ModelInfo.from_triton_config({"name": "other", "max_batch_size": 8})


def test_export_refuses_to_overwrite_unless_asked(exported, tiny_keras_file):
    source = model_sources.keras_file(tiny_keras_file, "caffe")
    with pytest.raises(ExportError, match="--overwrite"):
        export(source, exported.parent, name="tiny")
    export(source, exported.parent, name="tiny2")
    folder = export(source, exported.parent, name="tiny2", overwrite=True)
    info = model_info_from_config(parse_config_text((folder / "config.pbtxt").read_text()))
    assert info.layer_names == ["conv2"], "a Keras file defaults to its last 4-D layer"


def test_exported_model_runs_like_the_module(exported, rng):
    signature = tf.saved_model.load(str(exported / "1" / "model.savedmodel")).signatures[
        "serving_default"
    ]
    frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = signature(FRAMES=tf.constant(frames), TARGET_CLASS=tf.constant([[-1], [1], [4]]))
    assert out[contract.CLASS_INDEX].numpy()[1:, 0].tolist() == [1, 4]
    np.testing.assert_allclose(out[contract.PROBABILITIES].numpy().sum(axis=1), 1, atol=1e-5)


def test_encoded_frames_give_what_raw_frames_give(exported, rng):
    """PNG is lossless: the encoded signature answers exactly as the raw one; a larger JPEG is
    resized in the graph; the top-k are the most probable classes."""
    import cv2

    signatures = tf.saved_model.load(str(exported / "1" / "model.savedmodel")).signatures
    frames = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    targets = tf.constant([[-1], [1], [4]])
    png = [cv2.imencode(".png", f[..., ::-1])[1].tobytes() for f in frames]
    raw = signatures[contract.RAW_SIGNATURE](FRAMES=tf.constant(frames), TARGET_CLASS=targets)
    encoded = signatures[contract.ENCODED_SIGNATURE](
        ENCODED_FRAMES=tf.constant([[p] for p in png]), TARGET_CLASS=targets
    )
    for name in raw:
        np.testing.assert_array_equal(encoded[name].numpy(), raw[name].numpy(), err_msg=name)
    probabilities = raw[contract.PROBABILITIES].numpy()
    top = raw[contract.TOP_CLASSES].numpy()
    assert top.tolist() == np.argsort(-probabilities, axis=1)[:, : contract.DEFAULT_TOP_K].tolist()
    np.testing.assert_array_equal(
        raw[contract.TOP_PROBABILITIES].numpy(), np.take_along_axis(probabilities, top, 1)
    )

    smooth = cv2.GaussianBlur(frames[0], (0, 0), 3)  # a photo-like frame, JPEG's kind of input
    large = cv2.resize(smooth, (96, 64), interpolation=cv2.INTER_LINEAR)
    jpeg = cv2.imencode(".jpg", large[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    decoded = signatures[contract.DECODE_SIGNATURE](ENCODED_FRAMES=tf.constant([[jpeg]]))
    expected = cv2.resize(large, (32, 32), interpolation=cv2.INTER_AREA)
    (pixels,) = decoded.values()
    assert pixels.shape == (1, 32, 32, 3)
    assert np.abs(pixels.numpy()[0].astype(int) - expected).mean() < 3
