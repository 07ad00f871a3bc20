"""Fixtures of the container tests: a Docker engine, and one running stack started as the README
says (`make compose-up`) in a fresh clone with no wheelhouse and no project images.

These tests need root (to start `dockerd`), Debian's docker.io, docker-compose and debootstrap
(`scripts/system-deps.sh` installs them). Where they are missing the tests skip;
under CI a skip fails the run (tests/skip_policy.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import ROOT, Stack, run, shell_path
from triton_server import free_ports

SCRIPTS = ROOT / "scripts"


def _unavailable(reason: str) -> None:
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A Docker engine: the running one, or one started here and stopped at the end."""
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (scripts/system-deps.sh)")
    answers = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not answers and (os.geteuid() != 0 or shutil.which("dockerd") is None):
        _unavailable("no Docker engine runs and this user cannot start one")
    run(["bash", str(SCRIPTS / "docker-engine.sh"), "start"], timeout=120)
    yield
    if not answers:
        run(["bash", str(SCRIPTS / "docker-engine.sh"), "stop"], timeout=120)


PROJECT_IMAGES = ("gradcam-triton:cpu", "gradcam-dashboard:latest")


@pytest.fixture(scope="session")
def stack(docker_engine, tmp_path_factory) -> Iterator[Stack]:
    """The README's `make compose-up` in a fresh clone of this repository (its committed HEAD):
    no wheelhouse, no project images, so this host's pip fills the wheelhouse and the images
    build from scratch with no network. Free ports of 127.0.0.1, a project of its own;
    `down` at the end. The base image is made with debootstrap where none can be pulled."""
    work = tmp_path_factory.mktemp("compose")
    clone = work / "gradcam"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], timeout=300)
    assert not list((clone / "wheelhouse").glob("*.whl"))
    run(["docker", "image", "rm", "--force", *PROJECT_IMAGES], check=False)
    grpc, http, metrics, dashboard = free_ports(4)
    stack = Stack(
        project=f"gradcamtest{uuid.uuid4().hex[:8]}",
        clone=clone,
        models=clone / "model_repository",
        ports={"grpc": grpc, "http": http, "metrics": metrics, "dashboard": dashboard},
        path=shell_path(work / "bin"),
    )
    try:
        stack.timings["first up"] = stack.up("make compose-up")
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)


def artifacts() -> Path:
    folder = ROOT / "test-artifacts" / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
