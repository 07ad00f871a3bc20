"""The container stack under test: images built by `scripts/compose.sh`, `docker-compose up` on
docker-compose.cpu.yml under a project name of its own, ports on 127.0.0.1 only, and a copy of
`model_repository/` as the mounted repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.cpu.yml"
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
    """One `docker-compose` project of docker-compose.cpu.yml."""

    project: str
    models: Path
    ports: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
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
        command = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return run(command, timeout=timeout, check=check, env=self.env, cwd=ROOT)

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

    def up(self) -> float:
        """`up -d`, then the seconds from the command to both services healthy."""
        start = time.monotonic()
        self.compose("up", "-d")
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


def fresh_repository(target: Path) -> Path:
    """A copy of the committed model_repository/ (README and the default model's config only)."""
    target.mkdir(parents=True)
    tracked = run(["git", "ls-files", "model_repository"], cwd=ROOT).stdout.split()
    for name in tracked:
        destination = target / Path(name).relative_to("model_repository")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    return target
