"""Fixtures of the container tests: a Docker engine, the base image, the wheelhouse, both images
built with no network, and one running stack of docker-compose.cpu.yml.

These tests need root (to start `dockerd`), Debian's docker.io, docker-compose and debootstrap
(`scripts/system-deps.sh --containers` installs them). Where they are missing the tests skip,
unless GRADCAM_REQUIRE_DOCKER=1 (as in CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import ROOT, Stack, fresh_repository, run
from triton_server import free_ports

SCRIPTS = ROOT / "scripts"


def _unavailable(reason: str) -> None:
    if os.environ.get("GRADCAM_REQUIRE_DOCKER") == "1":
        pytest.fail(f"container tests required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    """A Docker engine: the running one, or one started here and stopped at the end."""
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (scripts/system-deps.sh --containers)")
    answers = subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not answers and (os.geteuid() != 0 or shutil.which("dockerd") is None):
        _unavailable("no Docker engine runs and this user cannot start one")
    run(["bash", str(SCRIPTS / "docker-engine.sh"), "start"], timeout=120)
    yield
    if not answers:
        run(["bash", str(SCRIPTS / "docker-engine.sh"), "stop"], timeout=120)


@pytest.fixture(scope="session")
def images(docker_engine) -> dict[str, float]:
    """Both images built as a user builds them (scripts/compose.sh build, offline from the
    wheelhouse); returns the seconds each step took."""
    timings = {}
    if run(["docker", "image", "inspect", "debian:bookworm-slim"], check=False).returncode:
        if shutil.which("debootstrap") is None:
            _unavailable("no debian:bookworm-slim image and no debootstrap to build it")
        start = time.monotonic()
        run(["bash", str(SCRIPTS / "docker-base-image.sh")], timeout=900)
        timings["base image"] = time.monotonic() - start
    if not list((ROOT / "wheelhouse").glob("*.whl")):
        start = time.monotonic()
        run(["bash", str(SCRIPTS / "wheelhouse.sh")], timeout=1800)
        timings["wheelhouse"] = time.monotonic() - start
    start = time.monotonic()
    env = {**os.environ, "GRADCAM_COMPOSE_FILE": "docker-compose.cpu.yml"}
    result = run(["bash", str(SCRIPTS / "compose.sh"), "build"], timeout=1800, env=env)
    assert "with no network" in result.stdout, result.stdout
    timings["build"] = time.monotonic() - start
    return timings


@pytest.fixture(scope="session")
def stack(images, tmp_path_factory) -> Iterator[Stack]:
    """docker-compose.cpu.yml up and healthy, on free ports of 127.0.0.1, serving a fresh copy
    of model_repository/; `down -v` at the end."""
    grpc, http, metrics, dashboard = free_ports(4)
    models = fresh_repository(tmp_path_factory.mktemp("stack") / "model_repository")
    stack = Stack(
        project=f"gradcamtest{uuid.uuid4().hex[:8]}",
        models=models,
        ports={"grpc": grpc, "http": http, "metrics": metrics, "dashboard": dashboard},
    )
    try:
        stack.timings["first up"] = stack.up()
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)
        shutil.rmtree(models, ignore_errors=True)


def artifacts() -> Path:
    folder = ROOT / "test-artifacts" / "containers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
