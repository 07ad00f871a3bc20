"""Helpers of the deployment tests: paths, compose files read as data, scripts as modules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACKS = {
    "cpu": [ROOT / "docker-compose.yml"],
    "gpu": [ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml"],
}
"""The compose files of each stack: the CPU one alone, and with the GPU override."""
DEPLOY_MODEL = "efficientnet-lite0"


def docker_compose() -> str:
    """The docker-compose command, or skip the test with the reason."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("docker-compose is not on PATH (scripts/system-deps.sh installs it)")
    return found


def compose_config(files: Path | list[Path], cwd: Path | None = None) -> str:
    """`docker-compose config` of one file or of a file and its overrides (none: what plain
    `docker-compose config` reads in `cwd`): validated, merged, interpolated, normalised YAML."""
    files = [files] if isinstance(files, Path) else files
    flags = [arg for path in files for arg in ("-f", str(path))]
    result = subprocess.run(
        [docker_compose(), *flags, "config"],
        capture_output=True,
        text=True,
        cwd=cwd or files[0].parent,
        timeout=120,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},  # no GRADCAM_* overrides from the caller
    )
    names = " + ".join(path.name for path in files) or f"the default files of {cwd}"
    assert result.returncode == 0, f"docker-compose rejects {names}:\n{result.stderr}"
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
