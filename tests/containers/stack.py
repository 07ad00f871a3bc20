"""The container stack under test: a fresh clone of this repository, started by the README's own
commands (`make compose-up`, plain `docker compose up`) under a project name of its own, ports
on 127.0.0.1 only, and a copy of `model_repository/` as the mounted repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DOCKER_COMPOSE_SHIM = """#!/bin/sh
# `docker compose ...` (Compose v2) as docker-compose 1.x where the v2 plugin is missing.
if [ "$1" = compose ] && ! REAL compose version >/dev/null 2>&1; then
  shift
  exec docker-compose "$@"
fi
exec REAL "$@"
"""


def shell_path(folder: Path) -> str:
    """PATH for the README's commands: this virtualenv's commands (gradcam-video) and a `docker`
    that runs `docker compose` as docker-compose where Compose v2 is not installed."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "docker"
    shim.write_text(DOCKER_COMPOSE_SHIM.replace("REAL", shutil.which("docker") or "docker"))
    shim.chmod(0o755)
    return os.pathsep.join([str(folder), str(Path(sys.executable).parent), os.environ["PATH"]])


def run(command: list[str], timeout: float = 600, check: bool = True, **kwargs):
    """Run a command; on failure raise with its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def http_ok(url: str) -> bool:
    try:
        with _LOCAL.open(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class Stack:
    """One Compose project of the CPU stack (docker-compose.yml) in a clone of the repository."""

    project: str
    clone: Path
    models: Path
    ports: dict[str, int]
    path: str = field(default_factory=lambda: os.environ.get("PATH", "/usr/bin:/bin"))
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What the README's commands run with: where the stack's ports and models are."""
        return {
            "PATH": self.path,
            "HOME": os.environ.get("HOME", "/root"),
            "COMPOSE_PROJECT_NAME": self.project,
            # `make compose-down` stops only an engine it started: not the tests' one
            "GRADCAM_DOCKERD_DIR": str(self.clone.parent / "dockerd"),
            "GRADCAM_URL": self.grpc_url,
            "GRADCAM_MODELS": str(self.models),
            "GRADCAM_BIND": "127.0.0.1",
            "GRADCAM_GRPC_PORT": str(self.ports["grpc"]),
            "GRADCAM_HTTP_PORT": str(self.ports["http"]),
            "GRADCAM_METRICS_PORT": str(self.ports["metrics"]),
            "GRADCAM_DASHBOARD_PORT": str(self.ports["dashboard"]),
        }

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    def compose(self, *args: str, timeout: float = 900, check: bool = True):
        """docker-compose on the clone's docker-compose.yml, in this project."""
        command = ["docker-compose", "-p", self.project, *args]
        return run(command, timeout=timeout, check=check, env=self.env, cwd=self.clone)

    def shell(self, command: str, timeout: float = 3600) -> subprocess.CompletedProcess:
        """One of the README's commands, as a user types it, in the clone; its seconds are
        kept in `timings`."""
        start = time.monotonic()
        result = run(["bash", "-c", command], timeout=timeout, env=self.env, cwd=self.clone)
        self.timings[command] = round(time.monotonic() - start, 1)
        self.outputs[command] = result.stdout + result.stderr
        return result

    def image_ids(self) -> dict[str, str]:
        """The image each service's container runs."""
        return {
            service: json.loads(run(["docker", "inspect", self.container(service)]).stdout)[0][
                "Image"
            ]
            for service in ("triton", "dashboard")
        }

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def health(self, service: str) -> str:
        container = self.container(service)
        if not container:
            return "absent"
        state = json.loads(run(["docker", "inspect", container]).stdout)[0]["State"]
        return state.get("Health", {}).get("Status", state["Status"])

    def wait_healthy(self, services=("triton", "dashboard"), timeout: float = 600) -> float:
        """Seconds until every service reports healthy; fails with the logs otherwise."""
        start = time.monotonic()
        while True:
            states = {service: self.health(service) for service in services}
            if all(state == "healthy" for state in states.values()):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"not healthy after {timeout:.0f} s: {states}\n{self.logs()}")
            time.sleep(1)

    def up(self, command: str) -> float:
        """A README command that starts the stack, then the seconds from it to both services
        healthy."""
        start = time.monotonic()
        self.shell(command)
        self.wait_healthy()
        return time.monotonic() - start

    def logs(self, service: str = "") -> str:
        result = self.compose("logs", "--no-color", *([service] if service else []), check=False)
        return result.stdout + result.stderr

    def tritonserver_pid(self) -> int:
        """Host PID of the tritonserver process inside the Triton container."""
        rows = run(["docker", "top", self.container("triton"), "-eo", "pid,comm"]).stdout
        for line in rows.splitlines()[1:]:
            pid, command = line.split(None, 1)
            if command.strip() == "tritonserver":
                return int(pid)
        raise AssertionError(f"no tritonserver process in the container:\n{rows}")

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, command in (
            ("containers", ["docker", "ps", "-aq", "--filter", label]),
            ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
            ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
        ):
            found[kind] = run(command).stdout.split()
        return found
