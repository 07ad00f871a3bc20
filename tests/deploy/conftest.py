"""Fixtures of the deployment tests: compose files read as data, a repository with a real model,
the demo script as a module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_support import ROOT, STACKS, compose_config, load_script, parse_yaml


@pytest.fixture(scope="session")
def compose() -> dict[str, dict[str, Any]]:
    """Both stacks as `docker-compose config` resolves them: {"cpu": ..., "gpu": ...}."""
    return {name: parse_yaml(compose_config(files)) for name, files in STACKS.items()}


@pytest.fixture(scope="session")
def deploy_repository(tmp_path_factory) -> Path:
    """A model repository holding the offline default model with its real weights."""
    from gradcam_server import model_sources
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    repository = tmp_path_factory.mktemp("deploy_repository")
    export(
        model_sources.efficientnet_lite0(),
        repository,
        options=ServingOptions(max_batch_size=16, max_queue_delay_us=5000),
    )
    return repository


@pytest.fixture(scope="session")
def demo():
    """scripts/demo.py, the one-command local run."""
    return load_script(ROOT / "scripts" / "demo.py", "gradcam_demo")
