"""gRPC over TLS end to end: a real Triton with certificates of a CA the test makes itself.

One server asks for TLS, another for mutual TLS (a client certificate signed by the same CA).
A video goes through both; an untrusted server certificate fails at once with one line; a
server that closes every connection (a client certificate missing, TLS expected) is named as
the likely reason once the retry deadline passes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import media
import pytest
from client_runs import read_jsonl, run_cli
from served_models import TINY
from tls_certs import TlsFiles, triton_tls_args, write_tls_files
from triton_server import running_triton

from gradcam_server import model_sources
from gradcam_server.exporter import export

pytestmark = pytest.mark.integration

N_FRAMES = 4


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TlsFiles:
    return write_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> Path:
    return write_tls_files(tmp_path_factory.mktemp("other"), ca_name="Another CA").ca


@pytest.fixture(scope="module")
def repository(tmp_path_factory, tiny_keras_file) -> Path:
    repository = tmp_path_factory.mktemp("repo")
    export(model_sources.keras_file(tiny_keras_file, "caffe"), repository, name=TINY)
    return repository


@pytest.fixture(scope="module")
def tls_server(repository, tls, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    with running_triton(repository, log_dir=logs, extra_args=triton_tls_args(tls)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(repository, tls, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    args = triton_tls_args(tls, mutual=True)
    with running_triton(repository, log_dir=logs, extra_args=args) as server:
        yield server


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return media.write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=N_FRAMES)


def cli_process(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`gradcam-video` in its own process: stderr as a user sees it (gRPC's own logs too)."""
    command = [sys.executable, "-m", "gradcam_client.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_a_video_over_tls(tls_server, tls, clip, tmp_path, capsys):
    output, predictions = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    run = run_cli(capsys, clip, "-o", output, "--url", tls_server.urls.grpc, "--model", TINY,
                  "--ssl", "--root-certificates", tls.ca, "--predictions", predictions)  # fmt: skip
    assert run.code == 0, run.err
    assert output.stat().st_size > 0
    assert [r["frame"] for r in read_jsonl(predictions)] == list(range(N_FRAMES))


def test_a_video_over_mutual_tls(mtls_server, tls, clip, tmp_path, capsys):
    output = tmp_path / "out.mp4"
    run = run_cli(capsys, clip, "-o", output, "--url", mtls_server.urls.grpc, "--model", TINY,
                  "--ssl", "--root-certificates", tls.ca, "--private-key", tls.client_key,
                  "--certificate-chain", tls.client_cert)  # fmt: skip
    assert run.code == 0, run.err
    assert output.stat().st_size > 0


@pytest.mark.parametrize("server", ["tls_server", "mtls_server"])
def test_a_wrong_ca_fails_at_once_with_one_line(request, server, tls, other_ca, clip, tmp_path):
    url = request.getfixturevalue(server).urls.grpc
    output = tmp_path / "out.mp4"
    started = time.monotonic()
    done = cli_process(clip, "-o", output, "--url", url, "--model", TINY, "--ssl",
                       "--root-certificates", other_ca, "--private-key", tls.client_key,
                       "--certificate-chain", tls.client_cert)  # fmt: skip
    assert done.returncode == 1
    assert time.monotonic() - started < 30  # not the 120 s retry deadline
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        f"gradcam-video: error: TLS handshake with {url} failed (CERTIFICATE_VERIFY_FAILED: "
    )
    assert (
        "): the server's certificate is not trusted; pass the CA that signed it with "
        "--root-certificates" in done.stderr
    )
    assert not output.exists()


def test_the_system_cas_do_not_trust_a_private_ca(tls_server, clip, tmp_path):
    done = cli_process(clip, "-o", tmp_path / "out.mp4", "--url", tls_server.urls.grpc,
                       "--model", TINY, "--ssl")  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr


@pytest.mark.parametrize(
    ("server", "options", "hint"),
    [
        ("mtls_server", ["--ssl", "--root-certificates", "{ca}"], "may require a client "
         "certificate (--private-key and --certificate-chain)"),
        ("tls_server", [], "may expect TLS (--ssl)"),
    ],
)  # fmt: skip
def test_a_server_closing_every_connection_names_the_likely_reason(
    request, server, options, hint, tls, clip, tmp_path
):
    url = request.getfixturevalue(server).urls.grpc
    options = [o.format(ca=tls.ca) for o in options]
    done = cli_process(clip, "-o", tmp_path / "out.mp4", "--url", url, "--model", TINY,
                       "--retry-deadline", 1, *options)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "Socket closed" in done.stderr and hint in done.stderr


def test_a_client_certificate_of_another_ca_is_refused(mtls_server, tls, tmp_path):
    other = write_tls_files(tmp_path / "client", ca_name="Client CA")
    done = cli_process("--list-models", "--url", mtls_server.urls.grpc, "--ssl",
                       "--root-certificates", tls.ca, "--private-key", other.client_key,
                       "--certificate-chain", other.client_cert, "--retry-deadline", 1)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "listing models: no answer for 1 s" in done.stderr
