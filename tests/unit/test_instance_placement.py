"""Each Triton model instance runs its TensorFlow work on the GPU Triton gave it."""

from __future__ import annotations

import pytest

from gradcam_server.triton_model import instance_gpu, place_on_device


class FakeConfig:
    """The part of `tf.config` that placement uses, recording what it was told."""

    def __init__(self, gpus: int) -> None:
        self.gpus = [f"GPU:{i}" for i in range(gpus)]
        self.visible: list[str] | None = None
        self.growth: list[str] = []
        self.experimental = self

    def list_physical_devices(self, kind: str) -> list[str]:
        assert kind == "GPU"
        return self.gpus

    def set_visible_devices(self, devices: list[str], kind: str) -> None:
        assert kind == "GPU"
        self.visible = devices

    def set_memory_growth(self, device: str, enable: bool) -> None:
        assert enable
        self.growth.append(device)


class FakeTF:
    def __init__(self, gpus: int) -> None:
        self.config = FakeConfig(gpus)


@pytest.mark.parametrize(
    ("args", "gpu"),
    [
        ({"model_instance_kind": "GPU", "model_instance_device_id": "2"}, 2),
        ({"model_instance_kind": "GPU", "model_instance_device_id": "0"}, 0),
        ({"model_instance_kind": "CPU", "model_instance_device_id": "0"}, None),
        ({}, None),
    ],
)
def test_the_instance_device_comes_from_triton(args, gpu) -> None:
    assert instance_gpu(args) == gpu


def test_each_instance_sees_only_its_own_gpu() -> None:
    for index in range(3):
        tf = FakeTF(gpus=3)
        place_on_device(tf, index)
        assert tf.config.visible == [f"GPU:{index}"]
        assert tf.config.growth == [f"GPU:{index}"]


def test_a_cpu_instance_hides_the_gpus_and_a_cpu_host_is_left_alone() -> None:
    tf = FakeTF(gpus=2)
    place_on_device(tf, None)
    assert tf.config.visible == [] and tf.config.growth == []
    tf = FakeTF(gpus=0)
    place_on_device(tf, None)
    assert tf.config.visible is None


def test_a_device_tensorflow_does_not_see_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="GPU 3; TensorFlow sees 2"):
        place_on_device(FakeTF(gpus=2), 3)
