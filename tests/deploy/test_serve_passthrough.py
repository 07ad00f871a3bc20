"""`gradcam-server serve ... -- FLAGS` hands extra flags to tritonserver (restricted admin APIs,
TLS), so the pip-installed server can be locked down like the container."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
from triton_server import (
    assert_processes_gone,
    free_ports,
    processes_mentioning,
    write_add_one_model,
)

from gradcam_server import cli

_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with _LOCAL.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_flags_after_double_dash_reach_the_launcher(monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(
        "gradcam_server.serve_command.serve", lambda repository, **kwargs: seen.update(kwargs) or 0
    )
    flags = ["--model-control-mode=none", "--http-restricted-api=logging:admin-key=k"]
    assert cli.main(["serve", "--repository", "r", "--", *flags]) == 0
    assert seen["extra_args"] == flags
    assert cli.main(["serve", "--repository", "r"]) == 0
    assert seen["extra_args"] == []


@pytest.mark.integration
def test_serve_with_restricted_apis(tmp_path) -> None:
    repository = tmp_path / "repo"
    write_add_one_model(repository)
    grpc, http, metrics = free_ports(3)
    restricted = "shared-memory,trace,logging:admin-key=k"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gradcam_server.cli",
            "serve",
            "--repository",
            str(repository),
            "--grpc-port",
            str(grpc),
            "--http-port",
            str(http),
            "--metrics-port",
            str(metrics),
            "--",
            "--model-control-mode=none",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 120
        while status(f"{base}/v2/health/ready") != 200:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.2)
        assert status(f"{base}/v2/logging") == 403
        assert status(f"{base}/v2/logging", {"admin-key": "k"}) == 200
        assert status(f"{base}/v2/models/add_one/stats") == 200
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "Triton stopped" in output
    assert_processes_gone(processes_mentioning(repository))


def _serve(repository, ports, *args: str, env: dict[str, str] | None = None):
    grpc, http, metrics = ports
    command = [sys.executable, "-m", "gradcam_server.cli", "serve", "--repository",
               str(repository), "--grpc-port", str(grpc), "--http-port", str(http),
               "--metrics-port", str(metrics), *args]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GRADCAM_")}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**environ, **(env or {})},
    )  # fmt: skip


def _wait_ready(process, url: str) -> None:
    deadline = time.monotonic() + 120
    while status(url) != 200:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.2)


def _stop(process) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


@pytest.mark.integration
def test_serve_closes_admin_apis_by_default_and_binds_an_address(tmp_path) -> None:
    repository = tmp_path / "repo"
    write_add_one_model(repository)
    ports = free_ports(3)
    http = ports[1]
    process = _serve(repository, ports, "--address", "127.0.0.1", "--echo-log")
    try:
        _wait_ready(process, f"http://127.0.0.1:{http}/v2/health/ready")
        assert status(f"http://127.0.0.1:{http}/v2/logging") == 403
        assert status(f"http://127.0.0.1:{http}/v2/logging", {"admin-key": ""}) == 403
        assert status(f"http://127.0.0.1:{http}/v2/systemsharedmemory/status") == 403
        assert status(f"http://127.0.0.1:{http}/v2/models/add_one/stats") == 200
        listening = {
            (conn.laddr.ip.removeprefix("::ffff:"), conn.laddr.port)  # gRPC: IPv4-mapped
            for conn in psutil.net_connections("tcp")
            if conn.laddr and conn.status == psutil.CONN_LISTEN
        }
        for port in ports:
            assert ("127.0.0.1", port) in listening and ("0.0.0.0", port) not in listening
    finally:
        output = _stop(process)
    assert "Admin APIs shared-memory, trace, logging are closed" in output
    assert "Started Triton" in output and "successfully loaded 'add_one'" in output  # echoed log
    assert "admin-key=" not in output.replace("admin-key=***", "")


@pytest.mark.integration
def test_serve_opens_admin_apis_with_the_key_from_the_environment(tmp_path) -> None:
    repository = tmp_path / "repo"
    write_add_one_model(repository)
    ports = free_ports(3)
    base = f"http://127.0.0.1:{ports[1]}"
    process = _serve(repository, ports, env={"GRADCAM_ADMIN_KEY": "s3cret"})
    try:
        _wait_ready(process, f"{base}/v2/health/ready")
        assert status(f"{base}/v2/logging") == 403
        assert status(f"{base}/v2/logging", {"admin-key": "wrong"}) == 403
        assert status(f"{base}/v2/logging", {"admin-key": "s3cret"}) == 200
    finally:
        output = _stop(process)
    assert "need the header admin-key" in output and "s3cret" not in output
