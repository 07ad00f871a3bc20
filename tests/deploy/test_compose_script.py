"""`make compose-up` (scripts/compose.sh) picks the stack for this host, has this host's pip fill
wheelhouse/ before building, builds on every start (so a `git pull` is never left unbuilt), and
names what is missing in one line: no Docker, no engine for this user, a port already taken.
Stand-ins for `docker`, `docker-compose` and `wheelhouse.sh` play the engine and the downloads
and write down what they were asked (`docker-compose config` is the real one)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from deploy_support import ROOT, docker_compose

SCRIPT = ROOT / "scripts" / "compose.sh"
FAKE_DOCKER = """#!/bin/sh
# Stand-in for the docker CLI: `info` answers as $FAKE_ENGINE says (with $FAKE_RUNTIMES as its
# runtimes), every image is there, nothing runs.
case "$1" in
  info) [ "$FAKE_ENGINE" = up ] || exit 1; case "$*" in *Runtimes*) echo "$FAKE_RUNTIMES";; esac ;;
  compose) exit 1 ;;
  *) exit 0 ;;
esac
"""
FAKE_COMPOSE = """#!/bin/sh
# Stand-in for docker-compose: the real `config`, and a line in $FAKE_LOG for build and up.
case "$1" in
  config) exec REAL "$@" ;;
  ps) exit 0 ;;
  *) echo "compose $COMPOSE_FILE network=${GRADCAM_BUILD_NETWORK:-default} $*" >>"$FAKE_LOG" ;;
esac
"""
FAKE_WHEELHOUSE = """#!/bin/sh
echo "wheelhouse $TENSORFLOW $*" >>"$FAKE_LOG"
mkdir -p wheelhouse/debs && touch wheelhouse/a.whl wheelhouse/debs/a.deb
"""
TOOLS = ("bash", "sh", "grep", "sed", "awk", "id", "dirname", "mkdir", "cat", "ls", "stat", "touch")


def bin_dir(tmp_path: Path, docker: bool = True) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in TOOLS:
        os.symlink(shutil.which(name), folder / name)
    if docker:
        compose = FAKE_COMPOSE.replace("REAL", shutil.which("docker-compose") or "false")
        for name, text in (("docker", FAKE_DOCKER), ("docker-compose", compose)):
            (folder / name).write_text(text)
            (folder / name).chmod(0o755)
    return folder


def checkout(tmp_path: Path) -> Path:
    """The files compose.sh reads, with wheelhouse.sh played by a stand-in; no wheelhouse/."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copytree(ROOT / "docker", repo / "docker")
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        shutil.copy(ROOT / name, repo)
    shutil.copy(SCRIPT, repo / "scripts")
    (repo / "scripts" / "wheelhouse.sh").write_text(FAKE_WHEELHOUSE)
    return repo


def run_up(tmp_path: Path, gpu: bool = False, python: str = sys.executable) -> list[str]:
    """`compose.sh up` in a checkout on this host (with or without an NVIDIA GPU); what the
    stand-ins were asked, in order."""
    docker_compose()  # the real `config` is needed
    folder = bin_dir(tmp_path)
    if gpu:
        (folder / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100'\n")
        (folder / "nvidia-smi").chmod(0o755)
    log = tmp_path / "asked.log"
    result = compose_up(
        folder,
        script=checkout(tmp_path) / "scripts" / "compose.sh",
        FAKE_ENGINE="up",
        FAKE_RUNTIMES='{"nvidia":{},"runc":{}}' if gpu else '{"runc":{}}',
        FAKE_LOG=str(log),
        PYTHON=python,
        **{f"GRADCAM_{name}_PORT": str(free_port()) for name in ("GRPC", "HTTP", "METRICS")},
        GRADCAM_DASHBOARD_PORT=str(free_port()),
    )
    assert result.returncode == 0, result.stderr
    return [*log.read_text().splitlines(), f"stdout: {result.stdout}"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_a_gpu_up_fills_the_wheelhouse_then_builds_the_cpu_stack(tmp_path) -> None:
    asked = run_up(tmp_path)
    tensorflow = "tensorflow-cpu==2.21.0"
    assert asked[:3] == [
        f"wheelhouse {tensorflow} --if-needed",
        "compose docker-compose.yml network=none build",  # every image is there: built anyway
        "compose docker-compose.yml network=default up -d",
    ]
    assert "building from wheelhouse/ with no network" in asked[-1]
    assert "Logs:      docker-compose logs -f triton" in asked[-1]


def test_with_an_nvidia_gpu_up_adds_the_gpu_override(tmp_path) -> None:
    asked = run_up(tmp_path, gpu=True)
    files = "docker-compose.yml:docker-compose.gpu.yml"
    assert asked[:3] == [
        "wheelhouse tensorflow[and-cuda]==2.21.0 --if-needed",
        f"compose {files} network=none build",
        f"compose {files} network=default up -d",
    ]
    assert "docker-compose -f docker-compose.yml -f docker-compose.gpu.yml logs" in asked[-1]


def test_a_host_without_pip_lets_the_build_download(tmp_path) -> None:
    asked = run_up(tmp_path, python="/nonexistent/python3")
    assert asked[:2] == [
        "compose docker-compose.yml network=default build",
        "compose docker-compose.yml network=default up -d",
    ]
    assert "no pip on this host (/nonexistent/python3)" in asked[-1]


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
