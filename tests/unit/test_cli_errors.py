"""`gradcam-video` reports every failure on one line with a meaningful exit code."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import media
import pytest
from client_runs import run_cli

from gradcam_client import cli
from gradcam_client.errors import ServerUnavailable

NOWHERE = "localhost:1"  # nothing listens there; these errors come before any request


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.write_clip(tmp_path_factory.mktemp("cli") / "clip.mp4", size=(32, 24), n_frames=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give an INPUT and -o OUTPUT (or --list-models)"),
        (["--layout", "mosaic"], "argument --layout: invalid choice: 'mosaic'"),
        (["--scope", "forever"], "argument --scope: invalid choice: 'forever'"),
        (["--batch-size", "many"], "argument --batch-size: invalid int value: 'many'"),
        (["--alpha", "2"], "alpha must be in [0, 1]; got 2.0"),
        (["--smoothing", "1"], "smoothing alpha must be in [0, 1) (0 = off); got 1.0"),
        (["--colormap", "rainbow-ish"], "argument --colormap: invalid choice: 'rainbow-ish'"),
        (["--encoder", "h264_vaapi"], "argument --encoder: invalid choice: 'h264_vaapi'"),
        (
            ["--private-key", "k.pem", "--certificate-chain", "c.pem"],
            "--private-key and --certificate-chain need --ssl",
        ),
        (["--root-certificates", "ca.pem"], "--root-certificates needs --ssl"),
        (
            ["--ssl", "--private-key", "k.pem"],
            "mutual TLS needs both --private-key and --certificate-chain",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(clip, tmp_path, capsys, args, message):
    files = [str(clip), "-o", str(tmp_path / "out.mp4")] if args else []
    try:
        run = run_cli(capsys, *files, "--url", NOWHERE, *args)
    except SystemExit as exit_:  # argparse exits
        captured = capsys.readouterr()
        code, err = exit_.code, captured.err
    else:
        code, err = run.code, run.err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gradcam-video: error: ")
    assert message in err


def test_side_by_side_may_be_spelt_with_dashes():
    args = cli.build_parser().parse_args(["in.mp4", "-o", "out.mp4", "--layout", "side-by-side"])
    assert cli.settings_from(args).composition.layout.value == "side_by_side"


def test_settings_that_must_be_positive(clip, tmp_path, capsys):
    run = run_cli(capsys, clip, "-o", tmp_path / "o.mp4", "--url", NOWHERE, "--batch-size", 0)
    assert run.code == 1 and run.error == "batch size and requests in flight must be at least 1"


def test_a_hardware_encoder_that_does_not_open_is_one_line_before_any_request(
    clip, tmp_path, capsys
):
    from gradcam_client.media.writer import usable_encoder

    if usable_encoder("h264_nvenc"):
        pytest.skip("NVENC opens on this machine")
    run = run_cli(
        capsys, clip, "-o", tmp_path / "o.mp4", "--url", NOWHERE, "--encoder", "h264_nvenc"
    )
    assert run.code == 1
    assert run.error == (
        "the h264_nvenc encoder does not open on this machine (no device or driver for it); "
        "use the encoder auto or libx264"
    )
    assert not (tmp_path / "o.mp4").exists()


def test_a_missing_certificate_is_reported(clip, tmp_path, capsys):
    run = run_cli(capsys, clip, "-o", tmp_path / "o.mp4", "--ssl", "--root-certificates",
                  tmp_path / "ca.pem")  # fmt: skip
    assert run.code == 1
    assert (
        run.error
        == f"cannot read certificate file {tmp_path / 'ca.pem'}: No such file or directory"
    )


def test_a_multi_line_message_is_printed_on_one_line(clip, tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        error = ServerUnavailable("no answer\n  (details on a second line)")
        error.add_note("3 of 9 frames were done")
        raise error

    monkeypatch.setattr(cli, "process_media", fail)
    run = run_cli(capsys, clip, "-o", tmp_path / "o.mp4")
    assert run.code == 1
    assert run.error == "no answer (details on a second line) (3 of 9 frames were done)"


def test_an_unexpected_failure_is_one_line_unless_debugging(clip, tmp_path, capsys, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(cli, "process_media", crash)
    run = run_cli(capsys, clip, "-o", tmp_path / "o.mp4")
    assert run.code == 3
    assert run.error == (
        "unexpected RuntimeError: something nobody planned for (run with --debug for details)"
    )
    with pytest.raises(RuntimeError):
        run_cli(capsys, clip, "-o", tmp_path / "o.mp4", "--debug")


def test_an_interrupt_exits_130_without_output(clip, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "process_media", interrupted)
    run = run_cli(capsys, clip, "-o", tmp_path / "o.mp4")
    assert run.code == 130
    assert run.err == "gradcam-video: interrupted; no output was written\n"


def test_the_installed_command_prints_no_traceback(tmp_path):
    """The real entry point in a fresh process, on a file that is not a video."""
    text = media.write_text_file(tmp_path / "notes.mp4")
    script = Path(sys.executable).parent / "gradcam-video"
    command = [str(script), str(text), "-o", str(tmp_path / "o.mp4"), "--url", NOWHERE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == f"gradcam-video: error: {text}: is a text file, not a video or image\n"


def closed_port() -> int:
    """A port of 127.0.0.1 on which nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_is_not_there_is_said_at_once_whatever_the_deadline(clip, tmp_path):
    """The installed command against a closed port with the default 120 s deadline: within
    seconds one line names the address, the reason and what the client does next."""
    url = f"127.0.0.1:{closed_port()}"
    script = Path(sys.executable).parent / "gradcam-video"
    command = [str(script), str(clip), "-o", str(tmp_path / "o.mp4"), "--url", url]
    started = time.monotonic()
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            said = select.select([process.stderr], [], [], 20)[0]
            assert said, "nothing said within 20 s"
            line = process.stderr.readline()
            took = time.monotonic() - started
            assert process.poll() is None, "the client gave up instead of retrying"
        finally:
            process.kill()
    assert line == (
        f"gradcam-video: no server answers at {url} (connection refused); "
        "retrying for up to 120 s (--retry-deadline)\n"
    )
    assert took < 15  # the interpreter's start included; the first attempt fails in ms
    assert not (tmp_path / "o.mp4").exists()


def test_a_short_deadline_ends_in_the_error_line_alone(clip, tmp_path):
    url = f"127.0.0.1:{closed_port()}"
    script = Path(sys.executable).parent / "gradcam-video"
    command = [str(script), str(clip), "-o", str(tmp_path / "o.mp4"), "--url", url,
               "--retry-deadline", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith(f"gradcam-video: error: reading model 'efficientnet-lite0': "
                                  f"no answer for 0 s ({url}: UNAVAILABLE")  # fmt: skip
    assert done.stderr.count("\n") == 1
