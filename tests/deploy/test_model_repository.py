"""The committed model_repository/: the default model's config is what the exporter writes."""

from __future__ import annotations

import subprocess

from deploy_support import ROOT

from gradcam_server import cli


def test_committed_config_is_what_the_first_start_export_writes(tmp_path) -> None:
    committed = ROOT / "model_repository" / "efficientnet-lite0" / "config.pbtxt"
    export_args = cli.build_parser().parse_args(["serve"]).export_args
    env_file = (ROOT / "docker" / "triton.env").read_text()
    assert f"GRADCAM_EXPORT_ARGS={export_args}\n" in env_file
    code = cli.main(
        ["export", "--model", "efficientnet-lite0", "--repository", str(tmp_path),
         *export_args.split()]
    )  # fmt: skip
    assert code == 0
    assert (tmp_path / "efficientnet-lite0" / "config.pbtxt").read_text() == committed.read_text()
    assert oct((tmp_path / "efficientnet-lite0").stat().st_mode & 0o777) == "0o755"


def test_only_the_readme_and_the_default_config_are_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "model_repository"], capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    assert sorted(tracked) == [
        "model_repository/README.md",
        "model_repository/efficientnet-lite0/config.pbtxt",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "model_repository/efficientnet-lite0/1/model.py"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert ignored.returncode == 0
