"""scripts/demo.py (`make demo`): runs end to end, keeps serving on request, stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from deploy_support import DEPLOY_MODEL, ROOT
from triton_server import assert_processes_gone, free_ports, processes_mentioning

DEMO = ROOT / "scripts" / "demo.py"
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def demo_command(repository: Path, out: Path, ports: list[int], *extra: str) -> list[str]:
    grpc, http, metrics, dashboard = ports
    return [
        sys.executable,
        str(DEMO),
        "--repository",
        str(repository),
        "--model",
        DEPLOY_MODEL,
        "--out",
        str(out),
        "--grpc-port",
        str(grpc),
        "--http-port",
        str(http),
        "--metrics-port",
        str(metrics),
        "--dashboard-port",
        str(dashboard),
        *extra,
    ]


def answers(url: str) -> bool:
    try:
        with _LOCAL.open(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def check_outputs(out: Path) -> int:
    """The demo's three files exist; returns the number of frames of the heat-map video."""
    import av

    clip, video = out / "chelsea_pan.mp4", out / "chelsea_pan_gradcam.mp4"
    predictions = out / "chelsea_pan_predictions.jsonl"
    assert clip.stat().st_size > 10_000 and video.stat().st_size > 10_000
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert frames > 0 and len(records) == frames
    assert [r["frame"] for r in records] == list(range(frames))
    # The offline default sees the scikit-image cat.
    assert all("cat" in r["class_name"] or r["class_name"] == "tabby" for r in records[:5])
    return frames


def stray_processes(repository: Path, dashboard_port: int) -> list[int]:
    """Triton, its backend stubs (both name the repository) and Streamlit on that port."""
    return processes_mentioning(repository) + processes_mentioning(
        f"--server.port={dashboard_port}"
    )


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_end_to_end_and_stops(deploy_repository, tmp_path) -> None:
    out = tmp_path / "out"
    ports = free_ports(4)
    result = subprocess.run(
        demo_command(deploy_repository, out, ports, "--no-dashboard"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check_outputs(out)
    assert f"gRPC localhost:{ports[0]}" in result.stdout
    assert "Dashboard: not started (--no-dashboard)" in result.stdout
    assert "Stopped." in result.stdout
    assert_processes_gone(stray_processes(deploy_repository, ports[3]))
    assert not answers(f"http://127.0.0.1:{ports[1]}/v2/health/live")


@pytest.mark.integration
@pytest.mark.slow
def test_keep_running_serves_until_ctrl_c(deploy_repository, tmp_path) -> None:
    """With --keep-running the servers stay up after the clip; Ctrl-C stops all of them,
    the dashboard included."""
    out = tmp_path / "out"
    ports = free_ports(4)
    process = subprocess.Popen(
        demo_command(deploy_repository, out, ports, "--keep-running"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Serving until Ctrl-C" in line or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "Serving until Ctrl-C" in text, text
        check_outputs(out)
        assert answers(f"http://127.0.0.1:{ports[1]}/v2/health/ready")
        assert f"Dashboard: http://localhost:{ports[3]}" in text, text
        assert answers(f"http://127.0.0.1:{ports[3]}/_stcore/health")
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + rest
    assert "Stopped." in rest
    assert_processes_gone(stray_processes(deploy_repository, ports[3]))
    assert not answers(f"http://127.0.0.1:{ports[3]}/_stcore/health")


def test_port_in_use_is_a_clear_error(tmp_path) -> None:
    from triton_server import write_add_one_model

    repository = tmp_path / "repo"
    write_add_one_model(repository, name=DEPLOY_MODEL)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        ports = [*free_ports(1), *free_ports(2), taken]  # the dashboard's port is taken
        started = time.monotonic()
        result = subprocess.run(
            demo_command(repository, tmp_path / "out", ports),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "--dashboard-port" in message, result.stdout + result.stderr
    assert f"port {taken}" in message and "already in use" in message
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out" / "chelsea_pan.mp4").exists()


def test_missing_model_says_how_to_export(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        demo_command(tmp_path / "empty", tmp_path / "out", free_ports(4), "--no-dashboard"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"has no model '{DEPLOY_MODEL}'" in result.stderr and "make export" in result.stderr


def test_ports_default_to_the_make_variables(demo, monkeypatch) -> None:
    monkeypatch.setenv("GRPC_PORT", "9101")
    monkeypatch.setenv("DASHBOARD_PORT", "9501")
    monkeypatch.delenv("HTTP_PORT", raising=False)
    monkeypatch.delenv("METRICS_PORT", raising=False)
    args = demo.build_parser().parse_args([])
    assert (args.grpc_port, args.http_port, args.metrics_port, args.dashboard_port) == (
        9101,
        8000,
        8002,
        9501,
    )


def test_stopping_the_dashboard_stops_its_children(demo, tmp_path) -> None:
    """The dashboard runs in a process group of its own: stopping it leaves nothing behind."""
    spawner = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "time.sleep(600)"
    )
    dashboard = demo.start_dashboard(
        [sys.executable, "-c", spawner],
        1,
        "localhost:1",
        "http://localhost:2/metrics",
        tmp_path / "dashboard.log",
    )
    deadline = time.monotonic() + 30
    while len(dashboard.process.members()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    family = [dashboard.process.group, *dashboard.process.members()]
    assert len(family) == 3  # the supervisor, the dashboard and its child
    assert not dashboard.wait_healthy(0.5)
    dashboard.stop(timeout=5)
    assert_processes_gone(family)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_nothing_outlives_the_demo(deploy_repository, tmp_path, signum) -> None:
    """SIGKILL of the demo, or a closed terminal's SIGHUP, while Triton and the dashboard run:
    within 5 s no Triton, backend stub or Streamlit is left and the ports are free."""
    from gradcam_server.launcher import LauncherError, check_ports_free

    ports = free_ports(4)
    process = subprocess.Popen(
        demo_command(deploy_repository, tmp_path / "out", ports, "--keep-running"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the dashboard starts before the clip is written
            lines.append(line)
            if line.startswith("wrote the sample clip"):
                break
        assert lines and lines[-1].startswith("wrote the sample clip"), "".join(lines)
        family = stray_processes(deploy_repository, ports[3])
        assert len(family) >= 3, "".join(lines)  # Triton, its stub, the dashboard
        process.send_signal(signum)
        gone_by = time.monotonic() + 5
        assert_processes_gone(family, timeout=5)
        options = ["grpc-port", "http-port", "metrics-port", "dashboard-port"]
        named = dict(zip(options, ports, strict=True))
        while True:
            try:
                check_ports_free(named)
                break
            except LauncherError as error:
                assert time.monotonic() < gone_by, str(error)
                time.sleep(0.05)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if signum == signal.SIGHUP:  # handled: the demo stopped its servers itself
        assert "Stopped." in rest, "".join(lines) + rest
