"""Start the real Triton server from the nvidia-pytriton wheel through gradcam_server.launcher."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from served_models import TINY
from triton_server import (
    alive,
    assert_processes_gone,
    free_ports,
    new_triton,
    processes_mentioning,
    running_triton,
    write_add_one_model,
    write_failing_model,
)
from tritonclient.utils import InferenceServerException

from gradcam_server.launcher import LauncherError, TritonServer, admin_flags, check_ports_free

pytestmark = pytest.mark.integration

STUB = "triton_python_backend_stub"
T = TypeVar("T")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("repo")
    write_add_one_model(repository)
    return repository


@pytest.fixture(scope="module")
def triton(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(repo, log_dir=tmp_path_factory.mktemp("logs")) as server:
        yield server
    assert_processes_gone(processes_mentioning(repo))


def add_one(client: grpcclient.InferenceServerClient, values: list[float]) -> np.ndarray:
    data = np.asarray([values], dtype=np.float32)
    tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return client.infer("add_one", [tensor]).as_numpy("OUTPUT0")


def eventually(call: Callable[[], T], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except InferenceServerException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def process_names(pids: list[int]) -> list[str]:
    return sorted(psutil.Process(pid).name() for pid in alive(pids))


def test_serves_python_model_over_grpc(triton: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    assert client.is_server_ready()
    np.testing.assert_allclose(add_one(client, [1.0, 2.5, -3.0]), [[2.0, 3.5, -2.0]])
    # One tritonserver and one backend stub (one model instance), all in Triton's group.
    names = process_names(triton.pids())
    assert names == sorted(["tritonserver", STUB])


def test_index_metadata_and_metrics(triton: TritonServer) -> None:
    assert triton.model_index() == [{"name": "add_one", "version": "1", "state": "READY"}]
    assert triton.server_metadata()["name"] == "triton"
    with urllib.request.urlopen(triton.urls.metrics, timeout=10) as response:
        assert b"nv_inference_request_success" in response.read()
    assert "Started GRPCInferenceService" in triton.log_text()


def test_restart_on_same_ports_with_existing_client(triton: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    np.testing.assert_allclose(add_one(client, [0.0]), [[1.0]])
    grpc_url, old_pids = triton.urls.grpc, triton.pids()

    assert triton.stop() == 0
    assert_processes_gone(old_pids)
    assert not triton.is_running()
    with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
        add_one(client, [0.0])

    triton.start()
    triton.wait_ready(120)
    assert triton.urls.grpc == grpc_url
    # The failed call above left the channel in reconnect backoff (1 s growing by 1.6x with
    # default channel args): the same client object recovers on its own within a few seconds.
    np.testing.assert_allclose(eventually(lambda: add_one(client, [41.0])), [[42.0]])

    # Without a failed call in between, the client works again at once after a restart.
    triton.restart()
    np.testing.assert_allclose(add_one(client, [1.0, 2.0]), [[2.0, 3.0]])


def test_kill_leaves_nothing_and_server_comes_back(triton: TritonServer) -> None:
    pids = triton.pids()
    shm_before = set(os.listdir("/dev/shm"))
    assert triton.kill() == -signal.SIGKILL
    assert_processes_gone(pids)
    leaked = {n for n in set(os.listdir("/dev/shm")) - shm_before if "triton" in n}
    assert not leaked
    triton.start()
    triton.wait_ready(120)
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    np.testing.assert_allclose(add_one(client, [1.0]), [[2.0]])


def test_the_stubs_end_with_tritonserver(triton: TritonServer) -> None:
    """A SIGKILL of tritonserver alone: its supervisor ends the backend stub it forked."""
    pids = triton.pids()
    assert len(pids) == 2
    os.kill(triton.pid, signal.SIGKILL)
    assert_processes_gone(pids, timeout=5)  # without a call to stop()
    deadline = time.monotonic() + 5
    while triton.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)  # the supervisor ends right after them
    assert not triton.is_running()
    assert triton.stop() == -signal.SIGKILL
    assert not triton.pidfile.exists()
    triton.start()
    triton.wait_ready(120)


def test_a_second_start_names_the_running_server(triton: TritonServer, repo: Path) -> None:
    other = TritonServer(
        repo,
        grpc_port=free_ports(1)[0],
        http_port=triton.http_port,
        metrics_port=free_ports(1)[0],
        log_path=triton.log_path.with_suffix(".other.log"),  # beside the first one's
    )
    with pytest.raises(LauncherError) as error:
        other.start()
    assert str(error.value) == (
        f"Triton from an earlier start is still running: pid {triton.group} (tritonserver "
        f"{triton.pid}, started by pid {os.getpid()}), repository {repo}, ports gRPC "
        f"{triton.grpc_port}, HTTP {triton.http_port}, metrics {triton.metrics_port}, log "
        f"{triton.log_path}; stop it with: kill {triton.group}"
    )
    elsewhere = TritonServer(
        repo,
        grpc_port=free_ports(1)[0],
        http_port=triton.http_port,
        metrics_port=free_ports(1)[0],
        log_path=triton.log_path.parent / "elsewhere" / "other.log",  # no record there
    )
    with pytest.raises(LauncherError, match=f"port {triton.http_port} .*--http-port"):
        elsewhere.start()


def test_kill_pid_as_named_stops_the_server_and_its_stubs(repo: Path, tmp_path: Path) -> None:
    server = new_triton(repo, log_dir=tmp_path)
    server.start()
    try:
        server.wait_ready(120)
        pids = [server.group, *server.pids()]
        os.kill(server.group, signal.SIGTERM)  # `kill PID` with the PID the message names
        assert_processes_gone(pids, timeout=10)
        assert server.stop() == 0  # tritonserver stopped cleanly
        assert not server.pidfile.exists()
    finally:
        server.stop()


def test_the_admin_key_stays_off_the_log_and_the_supervisor(repo: Path, tmp_path: Path) -> None:
    """Triton needs the key on its own command line; nowhere else shows it."""
    with running_triton(repo, log_dir=tmp_path, extra_args=admin_flags("s3cret")) as server:
        supervisor = " ".join(psutil.Process(server.group).cmdline())
        triton = " ".join(psutil.Process(server.pid).cmdline())
    assert "s3cret" not in supervisor and "s3cret" in triton
    log = server.log_path.read_text()
    assert "s3cret" not in log
    assert log.startswith("$ ") and log.splitlines()[0].count("admin-key=***") == 2


def test_model_failing_to_load_is_reported(tmp_path: Path) -> None:
    repository = tmp_path / "broken_repo"
    write_add_one_model(repository)
    write_failing_model(repository, "weights file missing: /nowhere/w.h5")
    server = new_triton(repository, log_dir=tmp_path)
    server.start()
    with pytest.raises(LauncherError) as error:
        server.wait_ready(120)
    message = str(error.value)
    assert "failed to load 'broken'" in message
    assert "RuntimeError: weights file missing: /nowhere/w.h5" in message
    assert str(server.log_path) in message
    assert "\n" not in message
    assert not server.is_running()
    assert_processes_gone(processes_mentioning(repository))


def test_a_savedmodel_older_than_its_config_is_refused_by_name(
    model_repository: Path, tmp_path: Path
) -> None:
    """After an upgrade the committed config.pbtxt may declare outputs an older export lacks."""
    repository = tmp_path / "upgraded"
    shutil.copytree(model_repository / TINY, repository / TINY)
    config = repository / TINY / "config.pbtxt"
    config.write_text(
        config.read_text() + 'output {\n  name: "NEWER_OUTPUT"\n  data_type: TYPE_FP32\n'
        "  dims: [ 1 ]\n}\n"
    )
    server = new_triton(repository, log_dir=tmp_path)
    server.start()
    with pytest.raises(LauncherError) as error:
        server.wait_ready(120)
    message = str(error.value)
    assert f"failed to load '{TINY}'" in message
    assert "lacks NEWER_OUTPUT, which config.pbtxt declares" in message
    assert "export it again" in message
    assert_processes_gone(processes_mentioning(repository))


def test_context_manager_raises_and_cleans_up_on_failure(tmp_path: Path) -> None:
    repository = tmp_path / "only_broken"
    write_failing_model(repository, "boom in initialize")
    server = new_triton(repository, log_dir=tmp_path)
    with pytest.raises(LauncherError, match="boom in initialize"), server:
        pass  # pragma: no cover
    assert_processes_gone(processes_mentioning(repository))


# -- the foreground `serve` command --------------------------------------------------------


class ServeProcess:
    """`gradcam-server serve` running in a child Python, with its output collected."""

    def __init__(self, repository: Path, log_path: Path) -> None:
        self.ports = free_ports(3)
        grpc, http, metrics = map(str, self.ports)
        command = [sys.executable, "-m", "gradcam_server.cli", "serve",
                   "--repository", str(repository), "--grpc-port", grpc, "--http-port", http,
                   "--metrics-port", metrics, "--log-file", str(log_path)]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err = ""
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line)
            if line.startswith("Press Ctrl-C"):
                self._ready.set()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            assert self.proc.poll() is None, "serve exited early: " + self.proc.stderr.read()
            assert time.monotonic() < deadline, "serve not ready: " + "".join(self.out)

    def descendants(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        assert self.proc.stderr is not None
        self.err = self.proc.stderr.read()
        return code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(repo: Path, tmp_path: Path, signum: int) -> None:
    serving = ServeProcess(repo, tmp_path / "serve.log")
    try:
        serving.wait_ready()
        text = "".join(serving.out)
        grpc, http, metrics = serving.ports
        assert f"gRPC:    localhost:{grpc}" in text
        assert f"HTTP:    http://localhost:{http}" in text
        assert f"metrics: http://localhost:{metrics}/metrics" in text
        assert "add_one (version 1): READY" in text
        assert f"log:     {tmp_path / 'serve.log'}" in text
        children = serving.descendants()
        assert len(children) == 3  # the supervisor, tritonserver and its backend stub
        serving.proc.send_signal(signum)
        assert serving.finish() == 0, serving.err
        assert "Triton stopped" in "".join(serving.out)
        assert_processes_gone(children)
    finally:
        if serving.proc.poll() is None:
            serving.proc.kill()


def test_serve_fails_when_triton_dies(repo: Path, tmp_path: Path) -> None:
    serving = ServeProcess(repo, tmp_path / "serve.log")
    try:
        serving.wait_ready()
        children = serving.descendants()
        triton = next(p for p in children if psutil.Process(p).name() == "tritonserver")
        os.kill(triton, signal.SIGKILL)
        assert serving.finish() == 2
        assert "Triton exited with code -9 unexpectedly" in serving.err
        assert "Traceback" not in serving.err
        assert_processes_gone(children)
    finally:
        if serving.proc.poll() is None:
            serving.proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_nothing_outlives_serve_killed_or_hung_up(tmp_path: Path, signum: int) -> None:
    """SIGKILL of the launcher, or the SIGHUP of a closed terminal: within 5 s no tritonserver,
    no backend stub, and the ports are free."""
    repository = tmp_path / "repo"
    write_add_one_model(repository)
    serving = ServeProcess(repository, tmp_path / "serve.log")
    try:
        serving.wait_ready()
        children = serving.descendants()
        assert {"tritonserver", STUB} <= {psutil.Process(pid).name() for pid in children}
        serving.proc.send_signal(signum)
        gone_by = time.monotonic() + 5
        assert_processes_gone(children, timeout=5)
        assert not [p for p in processes_mentioning(repository) if p != serving.proc.pid]
        ports = dict(zip(["grpc-port", "http-port", "metrics-port"], serving.ports, strict=True))
        while True:
            try:
                check_ports_free(ports)
                break
            except LauncherError:
                assert time.monotonic() < gone_by, f"ports still taken: {serving.ports}"
                time.sleep(0.05)
        code = serving.finish()
    finally:
        if serving.proc.poll() is None:
            serving.proc.kill()
    if signum == signal.SIGHUP:  # handled: serve stopped Triton itself
        assert code == 0, serving.err
        assert "Triton stopped (exit code " in "".join(serving.out)
    else:
        assert code == -signal.SIGKILL
