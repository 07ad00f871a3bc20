"""`make compose-up` (scripts/compose.sh) names what is missing in one line: no Docker, no
engine for this user, a port already taken. A stand-in `docker` on PATH plays the engine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from deploy_support import ROOT

SCRIPT = ROOT / "scripts" / "compose.sh"
FAKE_DOCKER = """#!/bin/sh
# Stand-in for the docker CLI: `info` answers as $FAKE_ENGINE says, nothing runs.
case "$1" in
  info) [ "$FAKE_ENGINE" = up ] ;;
  compose) exit 1 ;;
  *) exit 0 ;;
esac
"""
FAKE_COMPOSE = "#!/bin/sh\nexit 0\n"


def bin_dir(tmp_path: Path, docker: bool = True) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("bash", "sh", "grep", "sed", "awk", "id", "dirname", "mkdir", "cat", "ls", "stat"):
        os.symlink(shutil.which(name), folder / name)
    if docker:
        for name, text in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE)):
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
    return folder


def compose_up(
    path: Path, user: int | None = None, script: Path = SCRIPT, **env: str
) -> subprocess.CompletedProcess:
    command = ["bash", str(script), "up"]
    if user is not None:
        command = [
            shutil.which("setpriv"),
            f"--reuid={user}",
            f"--regid={user}",
            "--clear-groups",
            *command,
        ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={"PATH": str(path), **env}
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_no_docker_is_one_line(tmp_path) -> None:
    line = one_error_line(compose_up(bin_dir(tmp_path, docker=False)))
    assert "Docker is not installed" in line


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_no_engine_for_this_user_is_one_line() -> None:
    shared = Path(tempfile.mkdtemp(prefix="compose-script-"))  # readable by the other user
    try:
        shared.chmod(0o755)
        script = shared / "scripts" / "compose.sh"
        script.parent.mkdir()
        shutil.copy(SCRIPT, script)
        result = compose_up(bin_dir(shared), user=65534, script=script, FAKE_ENGINE="down")
        line = one_error_line(result)
    finally:
        shutil.rmtree(shared)
    assert "no Docker engine answers to this user" in line and "'docker' group" in line


def test_a_port_taken_is_one_line(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = compose_up(bin_dir(tmp_path), FAKE_ENGINE="up", GRADCAM_GRPC_PORT=str(port))
    line = one_error_line(result)
    assert f"port {port} (gRPC) is already in use" in line and "GRADCAM_GRPC_PORT" in line


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_the_image_runs_tritonserver_arguments_through_serve() -> None:
    """What NVIDIA's Helm chart and KServe pass (`tritonserver FLAGS`) becomes `gradcam-server
    serve` on that repository, the other flags going to Triton (entry point run as a user)."""
    shared = Path(tempfile.mkdtemp(prefix="entrypoint-"))
    try:
        shared.chmod(0o755)
        entrypoint = shared / "entrypoint.sh"
        shutil.copy(ROOT / "docker" / "triton-entrypoint.sh", entrypoint)
        folder = bin_dir(shared, docker=False)
        (folder / "gradcam-server").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
        (folder / "gradcam-server").chmod(0o755)
        command = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                   "sh", str(entrypoint), "tritonserver", "--model-repository=/srv/models",
                   "--grpc-port=9001", "--log-verbose=1"]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=30, env={"PATH": str(folder)}
        )
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "serve", "--repository", "/srv/models", "--echo-log", "--log-file",
        "/tmp/tritonserver.log", "--", "--grpc-port=9001", "--log-verbose=1",
    ]  # fmt: skip
