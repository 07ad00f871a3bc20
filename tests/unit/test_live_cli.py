"""`gradcam-video` with a live source: what it refuses before touching the network."""

from __future__ import annotations

import pytest
from client_runs import run_cli

from gradcam_client.cli import build_parser, live_settings_from, settings_from
from gradcam_client.errors import InputError
from gradcam_client.live.job import LiveSettings

NOWHERE = "127.0.0.1:1"


def test_a_live_run_without_any_output_is_refused(capsys):
    run = run_cli(capsys, "udp://127.0.0.1:23456", "--url", NOWHERE)
    assert run.code == 1
    assert run.error == "a live run needs somewhere to go: -o, --predictions or --restream"


def test_raw_maps_are_for_files(capsys, tmp_path):
    run = run_cli(
        capsys, "udp://127.0.0.1:23456", "-o", tmp_path / "o.mp4", "--maps", tmp_path / "m.npz",
        "--url", NOWHERE,
    )  # fmt: skip
    assert run.code == 1 and "--maps is for files" in run.error


def test_a_file_still_needs_an_output(capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "cat.mp4", "--url", NOWHERE)
    assert exited.value.code == 2
    assert "give an INPUT and -o OUTPUT" in capsys.readouterr().err


def test_a_recording_must_be_an_mp4(capsys, tmp_path):
    run = run_cli(capsys, "udp://127.0.0.1:23456", "-o", tmp_path / "o.mkv", "--url", NOWHERE)
    assert run.code == 1 and run.error.endswith("a live recording is an MP4; name an .mp4 output")


def test_a_bad_restream_address_is_named(capsys, tmp_path):
    run = run_cli(
        capsys, "udp://127.0.0.1:23456", "--restream", "/tmp/x.ts", "--url", NOWHERE,
    )  # fmt: skip
    assert run.code == 1 and "cannot re-stream to this kind of address" in run.error


def test_a_live_recording_is_encoded_ultrafast_unless_a_preset_is_named():
    default = build_parser().parse_args(["udp://127.0.0.1:23456", "-o", "live.mp4"])
    assert live_settings_from(default).encoder_preset == "ultrafast"
    assert settings_from(default).encoder_preset == "superfast"  # files keep theirs
    named = build_parser().parse_args(["udp://127.0.0.1:23456", "-o", "o.mp4", "--preset", "fast"])
    assert live_settings_from(named).encoder_preset == "fast"
    assert settings_from(named).encoder_preset == "fast"


def test_an_unknown_live_preset_is_named():
    with pytest.raises(InputError, match="unknown encoder preset 'warp'; choose from ultrafast"):
        LiveSettings(encoder_preset="warp")
