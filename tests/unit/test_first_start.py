"""What `gradcam-server serve --export-missing` exports on a first start, and what it leaves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gradcam_server import cli
from gradcam_server.export_format import EXPORT_FORMAT, FORMAT_FILE, write_format
from gradcam_server.first_start import (
    FirstStartError,
    export_command,
    export_missing,
    missing_models,
)


def model(repository: Path, name: str, version: bool = True) -> None:
    (repository / name).mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    if version:
        (repository / name / "1").mkdir()
        write_format(repository / name / "1")


def test_a_model_is_missing_until_it_has_a_version_folder(tmp_path) -> None:
    assert missing_models(tmp_path, ["efficientnet-lite0"]) == ["efficientnet-lite0"]
    model(tmp_path, "efficientnet-lite0", version=False)  # as committed: the config only
    assert missing_models(tmp_path, ["efficientnet-lite0", "vgg16"]) == [
        "efficientnet-lite0",
        "vgg16",
    ]
    (tmp_path / "efficientnet-lite0" / "1").mkdir()
    write_format(tmp_path / "efficientnet-lite0" / "1")
    assert missing_models(tmp_path, ["efficientnet-lite0"]) == []


def test_an_export_by_an_older_version_is_exported_again(tmp_path) -> None:
    model(tmp_path, "efficientnet-lite0", version=False)
    version = tmp_path / "efficientnet-lite0" / "1"
    version.mkdir()  # exported before format files were written
    assert missing_models(tmp_path, ["efficientnet-lite0"]) == ["efficientnet-lite0"]
    (version / FORMAT_FILE).write_text(f"{EXPORT_FORMAT - 1}\n")
    assert missing_models(tmp_path, ["efficientnet-lite0"]) == ["efficientnet-lite0"]
    said = []
    exported = export_missing(tmp_path, ["efficientnet-lite0"], run=lambda _: 0, log=said.append)
    assert exported == ["efficientnet-lite0"]
    assert said == [
        f"exporting efficientnet-lite0 into {tmp_path / 'efficientnet-lite0'} (an older export) ..."
    ]


def test_export_if_outdated_leaves_a_current_export_alone(tmp_path, capsys) -> None:
    model(tmp_path, "efficientnet-lite0")
    argv = ["export", "--repository", str(tmp_path), "--if-outdated"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'efficientnet-lite0'} is up to date\n"
    assert sorted(p.name for p in (tmp_path / "efficientnet-lite0").iterdir()) == [
        "1",
        "config.pbtxt",
    ]


def test_only_missing_models_are_exported_and_others_are_left_alone(tmp_path) -> None:
    model(tmp_path, "efficientnet-lite0", version=False)
    model(tmp_path, "my-model")
    model(tmp_path, "vgg16")
    commands = []

    def run(command: list[str]) -> int:
        commands.append(command)
        return 0

    exported = export_missing(tmp_path, ["efficientnet-lite0", "vgg16"], "--methods all", run)
    assert exported == ["efficientnet-lite0"]
    assert commands == [export_command("efficientnet-lite0", tmp_path, "--methods all")]
    assert commands[0][:3] == [sys.executable, "-m", "gradcam_server.cli"]
    assert commands[0][-3:] == ["--overwrite", "--methods", "all"]
    assert export_missing(tmp_path, [], run=run) == []


def test_a_failed_export_and_an_unknown_model_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FirstStartError, match=r"exporting vgg16 into .* failed"):
        export_missing(tmp_path, ["vgg16"], run=lambda command: 1, log=lambda _: None)
    with pytest.raises(FirstStartError, match="cannot export resnet: built-in models are"):
        export_missing(tmp_path, ["resnet"], run=lambda command: 0)


def test_serve_reads_its_container_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GRADCAM_EXPORT_MODELS", "efficientnet-lite0,vgg16")
    monkeypatch.setenv("GRADCAM_EXPORT_ARGS", "--methods gradcam")
    monkeypatch.setenv("GRADCAM_ADMIN_KEY", "k")
    monkeypatch.setenv("GRADCAM_RESTRICTED_APIS", "logging")
    monkeypatch.setenv("GRADCAM_ADDRESS", "127.0.0.1")
    args = cli.build_parser().parse_args(["serve"])
    assert args.export_missing == ["efficientnet-lite0", "vgg16"]
    assert args.export_args == "--methods gradcam"
    assert (args.admin_key, args.restricted_apis, args.address) == ("k", ["logging"], "127.0.0.1")
    for name in ("GRADCAM_EXPORT_MODELS", "GRADCAM_ADMIN_KEY", "GRADCAM_RESTRICTED_APIS"):
        monkeypatch.delenv(name)
    args = cli.build_parser().parse_args(["serve", "--restricted-apis", ""])
    assert (args.export_missing, args.admin_key, args.restricted_apis) == ([], None, [])


def test_serve_reports_a_failed_first_export_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("gradcam_server.first_start.subprocess.call", lambda command: 1)
    code = cli.main(["serve", "--repository", str(tmp_path), "--export-missing", "vgg16"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("gradcam-server serve: error: exporting vgg16 into") and err[-1] == "\n"
    assert err.count("\n") == 1
