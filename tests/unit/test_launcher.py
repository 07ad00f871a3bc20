"""Unit tests of gradcam_server.launcher that do not start Triton."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import pytest
from triton_server import free_ports, write_add_one_model

from gradcam_server import pidfile, serve_command, triton_files
from gradcam_server.launcher import (
    LauncherError,
    TritonServer,
    check_ports_free,
    find_models,
    summarize_log_errors,
)
from gradcam_server.triton_files import TritonDistribution, find_libpython, prepare_server_dir


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    write_add_one_model(repository)
    return repository


@pytest.fixture
def listening_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _server(repo: Path, **ports: int) -> TritonServer:
    grpc, http, metrics = free_ports(3)
    ports = {"grpc_port": grpc, "http_port": http, "metrics_port": metrics, **ports}
    return TritonServer(repo, log_path=repo.parent / "triton.log", **ports)


def test_defaults_and_urls(repo: Path) -> None:
    server = TritonServer(repo, log_path=repo.parent / "t.log")
    assert (server.grpc_port, server.http_port, server.metrics_port) == (8001, 8000, 8002)
    assert server.urls.grpc == "localhost:8001"
    assert server.urls.http == "http://localhost:8000"
    assert server.urls.http_hostport == "localhost:8000"
    assert server.urls.metrics == "http://localhost:8002/metrics"
    assert not server.is_running()
    assert server.stop() is None  # stopping a server never started is harmless
    assert server.pids() == []


@pytest.mark.parametrize("option", ["grpc_port", "http_port", "metrics_port"])
def test_port_taken_names_port_and_option(repo: Path, listening_port: int, option: str) -> None:
    server = _server(repo, **{option: listening_port})
    with pytest.raises(LauncherError) as error:
        server.start()
    message = str(error.value)
    assert f"port {listening_port}" in message
    assert f"--{option.replace('_', '-')}" in message
    assert "\n" not in message
    assert not server.is_running()


def test_duplicate_ports_rejected() -> None:
    port = free_ports(1)[0]
    with pytest.raises(LauncherError, match="both --grpc-port and --http-port"):
        check_ports_free({"grpc-port": port, "http-port": port})


def test_free_ports_pass() -> None:
    grpc, http, metrics = free_ports(3)
    check_ports_free({"grpc-port": grpc, "http-port": http, "metrics-port": metrics})


def test_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="does not exist"):
        _server(tmp_path / "nope").start()


def test_empty_repository(tmp_path: Path) -> None:
    (tmp_path / "repo" / "not_a_model").mkdir(parents=True)
    with pytest.raises(LauncherError, match="holds no model"):
        _server(tmp_path / "repo").start()


def test_find_models(tmp_path: Path, repo: Path) -> None:
    write_add_one_model(repo, "second")
    (repo / "stray").mkdir()
    assert find_models(repo) == ["add_one", "second"]
    assert find_models(tmp_path) == []


def test_pytriton_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton_files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LauncherError, match="nvidia-pytriton is not installed"):
        triton_files.find_triton_distribution()


def test_pytriton_distribution_found() -> None:
    dist = triton_files.find_triton_distribution()
    assert (dist.server_dir / "bin" / "tritonserver").is_file()
    assert dist.libs_dir.is_dir()
    assert dist.stub_path(f"{sys.version_info.major}.{sys.version_info.minor}").is_file()


def test_libpython_found() -> None:
    directory = find_libpython()
    assert list(directory.glob("libpython3*.so*"))


def test_libpython_missing_names_searched_dirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("GRADCAM_LIBPYTHON_DIR", raising=False)
    monkeypatch.setattr(triton_files.sysconfig, "get_config_var", lambda name: None)
    monkeypatch.setattr(triton_files.sys, "base_prefix", str(empty))
    monkeypatch.setattr(triton_files.sys, "base_exec_prefix", str(empty))
    with pytest.raises(LauncherError) as error:
        find_libpython()
    message = str(error.value)
    assert "libpython" in message
    assert str(empty / "lib") in message
    assert "GRADCAM_LIBPYTHON_DIR" in message


def test_libpython_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (tmp_path / f"libpython{version}.so.1.0").touch()
    monkeypatch.setenv("GRADCAM_LIBPYTHON_DIR", str(tmp_path))
    assert find_libpython() == tmp_path


def test_environment_and_command(repo: Path) -> None:
    server = TritonServer(
        repo,
        grpc_port=1,
        http_port=2,
        metrics_port=3,
        log_verbose=1,
        extra_args=["--model-control-mode=explicit"],
        env={"EXTRA_VAR": "x"},
        log_path=repo.parent / "t.log",
    )
    dist = triton_files.find_triton_distribution()
    env = server.environment(dist)
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert libs[:2] == [str(dist.libs_dir), str(find_libpython())]
    assert env["PATH"].split(":")[0] == str(Path(sys.prefix) / "bin")
    assert env["EXTRA_VAR"] == "x"
    command = server.command(Path("/work"))
    assert command[0] == "/work/bin/tritonserver"
    for arg in (
        f"--model-repository={repo.resolve()}",
        "--backend-directory=/work/backends",
        "--grpc-port=1",
        "--http-port=2",
        "--metrics-port=3",
        "--log-verbose=1",
        "--model-control-mode=explicit",
    ):
        assert arg in command


# -- preparation of the server folder ------------------------------------------------------


def _fake_distribution(tmp_path: Path) -> TritonDistribution:
    server_dir = tmp_path / "site" / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (server_dir / "bin").mkdir(parents=True)
    (server_dir / "bin" / "tritonserver").write_bytes(b"binary" * 10000)
    (server_dir / "backends" / "python").mkdir(parents=True)
    (server_dir / "backends" / "python" / "libtriton_python.so").write_bytes(b"so")
    for v in (version, "3.8"):
        stub = server_dir / "python_backend_stubs" / v / triton_files.STUB_NAME
        stub.parent.mkdir(parents=True)
        stub.write_text(v)
    libs = tmp_path / "site" / "nvidia_pytriton.libs"
    libs.mkdir()
    return TritonDistribution(version="9.9.9", server_dir=server_dir, libs_dir=libs)


def test_prepare_copies_server_and_matching_stub(tmp_path: Path) -> None:
    dist = _fake_distribution(tmp_path)
    cache = tmp_path / "cache"
    prepared = prepare_server_dir(dist, cache)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert prepared == cache / f"triton-9.9.9-py{version}"
    assert (prepared / "backends" / "python" / triton_files.STUB_NAME).read_text() == version
    assert (prepared / "backends" / "python" / "libtriton_python.so").is_file()
    assert not (prepared / "python_backend_stubs").exists()
    # A second call reuses the folder as is.
    marker = prepared / "bin" / "tritonserver"
    mtime = marker.stat().st_mtime_ns
    assert prepare_server_dir(dist, cache) == prepared
    assert marker.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in cache.iterdir()) == [prepared.name]


def test_prepare_concurrently(tmp_path: Path) -> None:
    dist = _fake_distribution(tmp_path)
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        try:
            results.append(prepare_server_dir(dist, cache))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert sorted(p.name for p in cache.iterdir()) == [results[0].name]  # no temp leftovers
    assert triton_files._is_prepared(results[0])


def test_prepare_replaces_broken_leftover(tmp_path: Path) -> None:
    dist = _fake_distribution(tmp_path)
    cache = tmp_path / "cache"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    leftover = cache / f"triton-9.9.9-py{version}"
    (leftover / "bin").mkdir(parents=True)  # half a copy, no marker
    prepared = prepare_server_dir(dist, cache)
    assert prepared == leftover
    assert triton_files._is_prepared(prepared)
    assert sorted(p.name for p in cache.iterdir()) == [prepared.name]


def test_prepare_without_stub_for_this_python(tmp_path: Path) -> None:
    dist = _fake_distribution(tmp_path)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist.stub_path(version)
    stub.unlink()
    stub.parent.rmdir()
    with pytest.raises(LauncherError, match=rf"no python backend stub for Python {version}"):
        prepare_server_dir(dist, tmp_path / "cache")


# -- log summaries -------------------------------------------------------------------------

BROKEN_LOG = "\n".join(
    [
        'W1127 16:05:21.436117 4073 pinned_memory_manager.cc:273] "Unable to allocate pinned"',
        'E1127 16:05:21.436312 4073 server.cc:241] "CudaDriverHelper has not been initialized."',
        'I1127 16:05:21.438359 4073 model_lifecycle.cc:472] "loading: broken:1"',
        r'I1127 16:05:22.764930 4073 pb_stub.cc:366] "Failed to initialize Python stub: '
        r'RuntimeError: weights file missing\n\nAt:\n  /r/broken/1/model.py(3): initialize\n"',
        r'E1127 16:05:23.017874 4073 backend_model.cc:692] "ERROR: Failed to create instance: '
        r'RuntimeError: weights file missing\n\nAt:\n  /r/broken/1/model.py(3): initialize\n"',
        "E1127 16:05:23.018075 4073 model_lifecycle.cc:642] \"failed to load 'broken' version 1: "
        r'Internal: RuntimeError: weights file missing\n\nAt:\n  /r/broken/1/model.py(3): init\n"',
        "+---------+---------+--------+",
        "| broken  | 1       | UNAVAILABLE: Internal: RuntimeError: weights file missing |",
        "Error: Failed to initialize NVML",
        'W1127 16:05:23.019013 4073 metrics.cc:798] "DCGM unable to start: DCGM init error"',
        "error: creating server: Internal - failed to load all models",
    ]
)


def test_summarize_prefers_model_load_failures() -> None:
    assert summarize_log_errors(BROKEN_LOG) == [
        "failed to load 'broken' version 1: Internal: RuntimeError: weights file missing"
    ]


def test_summarize_other_errors() -> None:
    log = (
        'E1127 16:05:23.0 1 server.cc:241] "CudaDriverHelper has not been initialized."\n'
        'E1127 16:05:23.1 1 grpc_server.cc:1] "failed to start GRPC service: Unavailable"\n'
        "error: creating server: Internal - failed to start\n"
        "tritonserver: error while loading shared libraries: libfoo.so: cannot open\n"
    )
    assert summarize_log_errors(log) == [
        "failed to start GRPC service: Unavailable",
        "error: creating server: Internal - failed to start",
        "tritonserver: error while loading shared libraries: libfoo.so: cannot open",
    ]
    assert summarize_log_errors("I1127 16:05:23.0 1 a.cc:1] fine\n") == []


def test_failure_message_falls_back_to_log_tail(repo: Path) -> None:
    server = _server(repo)
    server.log_path.write_text("line one\n+---+\n| table |\nsomething odd happened\n")
    message = server._failure_message("exited before it was ready")
    assert message.startswith("Triton exited before it was ready (full log: ")
    assert "something odd happened" in message
    assert "| table |" not in message


def test_serve_reports_bad_repository(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="does not exist"):
        serve_command.serve(tmp_path / "nope", *free_ports(3))


# -- the record beside the log -----------------------------------------------------------------


def _record(server: TritonServer, pid: int, ports: dict[str, int]) -> pidfile.ServerRecord:
    record = pidfile.ServerRecord.of(pid, pid + 1, server.repository, ports, server.log_path)
    pidfile.write_record(pidfile.record_path(server.log_path, ports["gRPC"]), record)
    return record


@pytest.fixture
def earlier_server():
    """A live process standing for the supervisor of a server started earlier."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def test_a_server_recorded_beside_the_log_is_named_with_how_to_stop_it(
    repo: Path, earlier_server: int
) -> None:
    server = _server(repo)
    earlier = {"gRPC": free_ports(1)[0], "HTTP": server.http_port, "metrics": free_ports(1)[0]}
    _record(server, earlier_server, earlier)
    with pytest.raises(LauncherError) as error:
        server.start()
    message = str(error.value)
    assert message.startswith("Triton from an earlier start is still running: ")
    assert f"pid {earlier_server} " in message and f"repository {repo}, " in message
    assert f"gRPC {earlier['gRPC']}, HTTP {server.http_port}, metrics {earlier['metrics']}" in (
        message
    )
    assert message.endswith(f"stop it with: kill {earlier_server}")
    assert not server.is_running()


def test_records_of_ended_servers_are_removed_and_ignored(repo: Path, listening_port: int) -> None:
    server = _server(repo, metrics_port=listening_port)
    ports = {"gRPC": server.grpc_port, "HTTP": server.http_port, "metrics": listening_port}
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True).stdout  # fmt: skip
    _record(server, int(ended), ports)
    reused = _record(server, os.getpid(), {**ports, "gRPC": free_ports(1)[0]})
    reused_path = pidfile.record_path(server.log_path, reused.ports["gRPC"])
    reused_path.write_text(json.dumps({**asdict(reused), "started": 1}))  # pid reused since
    with pytest.raises(LauncherError, match=f"port {listening_port} .*already in use"):
        server.start()  # not refused for either record, but for the port a socket holds
    assert not server.pidfile.exists() and not reused_path.exists()
