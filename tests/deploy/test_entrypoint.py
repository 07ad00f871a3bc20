"""The Triton image's entry point: what it exports on first start and how it runs Triton."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def settings_for(entrypoint, repository: Path, **overrides: str) -> dict[str, str]:
    settings = entrypoint.load_settings({})
    settings["GRADCAM_MODEL_REPOSITORY"] = str(repository)
    settings.update(overrides)
    return settings


def fake_model(repository: Path, name: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n')


def test_settings_come_from_env_file_and_environment(entrypoint) -> None:
    defaults = entrypoint.load_settings({})
    assert defaults["GRADCAM_MODEL_REPOSITORY"] == "/models"
    assert defaults["GRADCAM_EXPORT_MODEL"] == "auto"
    assert defaults["GRADCAM_ADMIN_KEY"] == ""
    changed = entrypoint.load_settings(
        {"GRADCAM_EXPORT_MODEL": "vgg16", "GRADCAM_GRPC_PORT": "", "GRADCAM_ADMIN_KEY": "k"}
    )
    assert changed["GRADCAM_EXPORT_MODEL"] == "vgg16"
    assert changed["GRADCAM_GRPC_PORT"] == defaults["GRADCAM_GRPC_PORT"]  # empty: the default
    assert changed["GRADCAM_ADMIN_KEY"] == "k"


@pytest.mark.parametrize(
    ("choice", "online", "weights", "plan"),
    [
        ("auto", True, "", ["vgg16", "efficientnet-lite0"]),
        ("auto", False, "", ["efficientnet-lite0"]),
        ("auto", False, "/w/vgg16.h5", ["vgg16", "efficientnet-lite0"]),
        ("vgg16", False, "", ["vgg16"]),
        ("efficientnet-lite0", True, "", ["efficientnet-lite0"]),
        ("none", True, "", []),
    ],
)
def test_export_plan(entrypoint, choice, online, weights, plan) -> None:
    assert entrypoint.export_plan(choice, weights, online=lambda: online) == plan


def test_unknown_export_choice_is_refused(entrypoint) -> None:
    with pytest.raises(ValueError, match=r"resnet50.*auto, vgg16, efficientnet-lite0, none"):
        entrypoint.export_plan("resnet50")


def test_export_command_runs_gradcam_server_on_this_python(entrypoint, tmp_path) -> None:
    settings = settings_for(entrypoint, tmp_path, GRADCAM_VGG16_WEIGHTS="/w/v.h5")
    command = entrypoint.export_command("vgg16", settings)
    assert command[:4] == [sys.executable, "-m", "gradcam_server.cli", "export"]
    assert command[4:8] == ["--model", "vgg16", "--repository", str(tmp_path)]
    assert command[-2:] == ["--weights", "/w/v.h5"]
    assert "--methods" in command  # GRADCAM_EXPORT_ARGS
    assert "--weights" not in entrypoint.export_command("efficientnet-lite0", settings)


def test_falls_back_to_the_offline_model(entrypoint, tmp_path) -> None:
    settings = settings_for(entrypoint, tmp_path / "models")
    tried = []

    def run(command: list[str]) -> int:
        model = command[command.index("--model") + 1]
        tried.append(model)
        return 1 if model == "vgg16" else 0

    assert entrypoint.ensure_repository(settings, run=run, online=lambda: True) == (
        "efficientnet-lite0"
    )
    assert tried == ["vgg16", "efficientnet-lite0"]


def test_existing_repository_is_left_alone(entrypoint, tmp_path) -> None:
    fake_model(tmp_path, "vgg16")
    settings = settings_for(entrypoint, tmp_path)
    assert entrypoint.ensure_repository(settings, run=pytest.fail, online=pytest.fail) is None


def test_failures_are_reported(entrypoint, tmp_path) -> None:
    settings = settings_for(entrypoint, tmp_path, GRADCAM_EXPORT_MODEL="none")
    with pytest.raises(RuntimeError, match="holds no model and GRADCAM_EXPORT_MODEL=none"):
        entrypoint.ensure_repository(settings, run=pytest.fail)
    settings["GRADCAM_EXPORT_MODEL"] = "efficientnet-lite0"
    with pytest.raises(RuntimeError, match="could not export any of efficientnet-lite0"):
        entrypoint.ensure_repository(settings, run=lambda command: 1)


def test_repository_layout_matches_the_launcher(entrypoint, tmp_path) -> None:
    """The entry point sees a repository as `gradcam-server serve` does."""
    from gradcam_server.launcher import find_models

    fake_model(tmp_path, "b")
    fake_model(tmp_path, "a")
    (tmp_path / ".a.tmp123").mkdir()  # the exporter's staging folder, not a model
    (tmp_path / "notes").mkdir()
    assert entrypoint.models_in(tmp_path) == find_models(tmp_path) == ["a", "b"]
    assert entrypoint.models_in(tmp_path / "missing") == []


def test_triton_command_defaults(entrypoint) -> None:
    settings = entrypoint.load_settings({})
    command = entrypoint.triton_command(settings, admin_key="s3cret")
    assert command[0] == "tritonserver"
    assert "--model-repository=/models" in command
    assert "--model-control-mode=none" in command
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(command)
    restricted = settings["GRADCAM_RESTRICTED_APIS"]
    assert f"--grpc-restricted-protocol={restricted}:admin-key=s3cret" in command
    assert f"--http-restricted-api={restricted}:admin-key=s3cret" in command
    for api in ("inference", "health", "model-config", "model-repository", "statistics"):
        assert api not in restricted.split(",")  # what gradcam-video and the dashboard use


def test_triton_command_random_key_and_overrides(entrypoint) -> None:
    settings = entrypoint.load_settings({"GRADCAM_TRITON_ARGS": "--grpc-port=9001 --log-verbose=1"})
    first = entrypoint.triton_command(settings)
    second = entrypoint.triton_command(settings)
    key = [a for a in first if a.startswith("--http-restricted-api")]
    assert key != [a for a in second if a.startswith("--http-restricted-api")]  # random
    command = entrypoint.triton_command(settings, ["--model-repository=/mnt/models"])
    assert "--model-repository=/models" not in command
    assert command.count("--grpc-port=9001") == 1 and "--grpc-port=8001" not in command
    assert command[-3:] == ["--grpc-port=9001", "--log-verbose=1", "--model-repository=/mnt/models"]
    no_restriction = dict(settings, GRADCAM_RESTRICTED_APIS="")
    assert not any("restricted" in a for a in entrypoint.triton_command(no_restriction))


def test_logged_command_hides_the_key(entrypoint) -> None:
    settings = entrypoint.load_settings({})
    shown = entrypoint.describe(entrypoint.triton_command(settings, admin_key="s3cret"))
    assert "s3cret" not in shown and "admin-key=***" in shown


def test_main_exports_only(entrypoint, tmp_path, monkeypatch) -> None:
    """`export` fills the repository and exits without starting Triton."""
    fake_model(tmp_path, "efficientnet-lite0")
    monkeypatch.setenv("GRADCAM_MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setattr(entrypoint.os, "execvp", pytest.fail)
    assert entrypoint.main(["export"]) == 0
    monkeypatch.setenv("GRADCAM_MODEL_REPOSITORY", str(tmp_path / "empty"))
    monkeypatch.setenv("GRADCAM_EXPORT_MODEL", "none")
    assert entrypoint.main(["export"]) == 1
