"""Helpers of the deployment tests: paths, compose files read as data, scripts as modules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = {"gpu": ROOT / "docker-compose.yml", "cpu": ROOT / "docker-compose.cpu.yml"}
DEPLOY_MODEL = "efficientnet-lite0"


def docker_compose() -> str:
    """The docker-compose command, or skip the test with the reason."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("docker-compose is not on PATH (scripts/system-deps.sh installs it)")
    return found


def compose_config(path: Path) -> str:
    """`docker-compose config` of one file: validated, interpolated and normalised YAML."""
    result = subprocess.run(
        [docker_compose(), "-f", str(path), "config"],
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=120,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},  # no GRADCAM_* overrides from the caller
    )
    assert result.returncode == 0, f"docker-compose rejects {path.name}:\n{result.stderr}"
    return result.stdout


def parse_yaml(text: str) -> Any:
    """YAML as Python data (PyYAML, a development requirement)."""
    import yaml

    return yaml.safe_load(text)


def load_script(path: Path, name: str):
    """Import a script of the repository (not a package module) by its path."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
