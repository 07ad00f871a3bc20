"""Run the Triton Inference Server bundled in the `nvidia-pytriton` wheel on a model repository.

`TritonServer` is the programmatic handle (a context manager). It starts `tritonserver` from the
copy `gradcam_server.triton_files` prepares, with `LD_LIBRARY_PATH` = the wheel's libraries + the
folder holding `libpython3.X.so.1.0`, and `PATH` starting with this environment's `bin` (the stub
follows `PATH` to find `python3` and therefore this environment's site-packages). It

* runs it under a supervisor (`gradcam_server.supervisor`) that leads its process group, so
  that neither tritonserver nor the backend stubs it forks (one per model instance) outlive the
  launcher, whatever ends it, and the stubs end with tritonserver;
* leaves a record beside the log (`gradcam_server.pidfile`), so that a later start on the same
  ports names the running server and how to stop it.

The foreground command `gradcam-server serve` is `gradcam_server.serve_command`.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import secrets
import shlex
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcam_server import pidfile
from gradcam_server.errors import LauncherError
from gradcam_server.supervisor import Supervised, group_pids, spawn
from gradcam_server.triton_files import (
    STUB_NAME,
    TritonDistribution,
    find_libpython,
    find_triton_distribution,
    prepare_server_dir,
)

__all__ = [
    "LauncherError",
    "TritonServer",
    "TritonUrls",
    "check_ports_free",
    "find_models",
    "summarize_log_errors",
]

_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_GLOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]]*\] ?(.*)$")
# Error-level lines Triton prints on every CPU-only start; they are not the reason for a failure.
_HARMLESS = ("CudaDriverHelper", "NVML", "DCGM", "pinned memory", "CUDA driver")


_PORT_LABELS = {"grpc-port": "gRPC", "http-port": "HTTP", "metrics-port": "metrics"}
ADMIN_HEADER = "admin-key"
# Admin APIs closed unless a request carries `admin-key: KEY` (gRPC metadata:
# `triton-grpc-protocol-admin-key`). Model loading and unloading are refused anyway: Triton's
# default model control mode is "none". Inference, metadata, the repository index and statistics
# stay open: clients use them.
RESTRICTED_APIS = ("shared-memory", "trace", "logging")
_WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class TritonUrls:
    """Where a running server listens, as seen from this host."""

    grpc: str  # "localhost:8001", as tritonclient.grpc expects
    http: str  # "http://localhost:8000"
    metrics: str  # "http://localhost:8002/metrics"

    @property
    def http_hostport(self) -> str:
        """The HTTP endpoint without scheme ("localhost:8000"), as tritonclient.http expects."""
        return self.http.removeprefix("http://")


def find_models(repository: Path) -> list[str]:
    """Names of the model folders (subfolders holding a config.pbtxt) in a repository."""
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


def check_ports_free(ports: Mapping[str, int]) -> None:
    """Raise LauncherError if a port is repeated or cannot be bound; `ports` maps option -> port."""
    seen: dict[int, str] = {}
    for option, port in ports.items():
        if not 0 < port < 65536:
            raise LauncherError(f"invalid port {port} for --{option}")
        if port in seen:
            raise LauncherError(
                f"port {port} is given for both --{seen[port]} and --{option}; use distinct ports"
            )
        seen[port] = option
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Triton listens with SO_REUSEADDR too, so leftover TIME_WAIT sockets are no obstacle;
            # a listening socket still makes this bind fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError as error:
                label = _PORT_LABELS.get(option, option)
                raise LauncherError(
                    f"port {port} ({label}) is already in use ({error.strerror}); "
                    f"choose another one with --{option}"
                ) from None


def _clean_message(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    text = text.replace("\\n", "\n").replace('\\"', '"')
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def summarize_log_errors(log: str, limit: int = 5) -> list[str]:
    """The relevant error messages in a Triton log, first lines only, most specific first."""
    messages: list[str] = []
    for line in log.splitlines():
        match = _GLOG_LINE.match(line)
        if match:
            if match.group(1) not in "EF":
                continue
            text = _clean_message(match.group(2))
        elif line.lower().startswith("error") or "error while loading shared libraries" in line:
            text = line.strip()
        else:
            continue
        if text and not any(h in text for h in _HARMLESS) and text not in messages:
            messages.append(text)
    failed = [m for m in messages if m.startswith("failed to load '")]
    return (failed or messages)[:limit]


def _log_tail(log: str, lines: int = 15) -> list[str]:
    kept = [ln for ln in log.splitlines() if ln.strip() and ln[:1] not in "+|"]
    return kept[-lines:]


def _stub_shm_regions(pids: Iterable[int]) -> list[str]:
    """Shared-memory regions used by backend stubs (argv[2]); SIGKILL leaves them in /dev/shm."""
    regions = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[0].endswith(STUB_NAME.encode()):
            name = argv[2].decode(errors="replace")
            if name and "/" not in name:
                regions.append(name)
    return regions


_RUNNING: set[TritonServer] = set()  # started and not yet stopped; killed at interpreter exit


@atexit.register
def _kill_leftover_servers() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.kill()


class TritonServer:
    """A `tritonserver` process serving one model repository.

    >>> with TritonServer("model_repository", grpc_port=8001) as server:  # doctest: +SKIP
    ...     client = tritonclient.grpc.InferenceServerClient(server.urls.grpc)
    """

    def __init__(
        self,
        repository: str | os.PathLike[str],
        *,
        grpc_port: int = 8001,
        http_port: int = 8000,
        metrics_port: int = 8002,
        address: str = "0.0.0.0",
        extra_args: Sequence[str] | str = (),
        log_verbose: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        require_models: bool = True,
        cache_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.repository = Path(repository).expanduser().resolve()
        self.address = address
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        if isinstance(extra_args, str):
            extra_args = shlex.split(extra_args)
        self.extra_args = list(extra_args)
        self.log_verbose = log_verbose
        self.env = dict(env or {})
        self.require_models = require_models
        self.cache_root = Path(cache_root) if cache_root else None
        self._log_path = Path(log_path) if log_path is not None else None
        self._run: Supervised | None = None
        self._log_offset = 0
        self._shm_regions: set[str] = set()
        self.returncode: int | None = None

    # -- information -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Where this host reaches the server: localhost when Triton listens everywhere."""
        if self.address in _WILDCARD_ADDRESSES:
            return "localhost"
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def _http_base(self) -> str:
        """The HTTP endpoint for this process's own probes (IPv4 loopback when Triton listens
        everywhere, so no time is lost on ::1)."""
        host = "127.0.0.1" if self.address in _WILDCARD_ADDRESSES else self.host
        return f"http://{host}:{self.http_port}"

    @property
    def urls(self) -> TritonUrls:
        """The gRPC, HTTP and metrics endpoints."""
        return TritonUrls(
            grpc=f"{self.host}:{self.grpc_port}",
            http=f"http://{self.host}:{self.http_port}",
            metrics=f"http://{self.host}:{self.metrics_port}/metrics",
        )

    @property
    def log_path(self) -> Path:
        """File receiving Triton's output (default: a new `tritonserver-<grpc port>-*.log` in
        the temp folder, created on first use). Each start appends to it."""
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"tritonserver-{self.grpc_port}-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id of `tritonserver` while started."""
        return self._run.pid if self._run else None

    @property
    def group(self) -> int | None:
        """Process group (its supervisor's pid) of `tritonserver` and its stubs while started."""
        return self._run.group if self._run else None

    @property
    def pidfile(self) -> Path:
        """The record of the running server, beside the log."""
        return pidfile.record_path(self.log_path, self.grpc_port)

    def pids(self) -> list[int]:
        """Live processes of this server: `tritonserver` and its backend stubs."""
        return self._run.members() if self._run else []

    def is_running(self) -> bool:
        """True while the `tritonserver` process is alive."""
        return self._run is not None and not self._has_exited()

    def log_text(self) -> str:
        """Triton's output since the last start."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def command(self, server_dir: Path) -> list[str]:
        """The `tritonserver` command line for a prepared server folder."""
        args = [
            str(server_dir / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={server_dir / 'backends'}",
            f"--cache-directory={server_dir / 'caches'}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
        ]
        if self.address not in _WILDCARD_ADDRESSES:
            args += [
                f"--grpc-address={self.address}",
                f"--http-address={self.address}",
                f"--metrics-address={self.address}",
            ]
        if self.log_verbose:
            args.append(f"--log-verbose={self.log_verbose}")
        return args + self.extra_args

    def environment(self, dist: TritonDistribution) -> dict[str, str]:
        """Environment for `tritonserver`: library path and this Python's `bin` first on PATH."""
        env = dict(os.environ)
        env.update(self.env)
        libs = [str(dist.libs_dir), str(find_libpython())]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        bin_dirs = [str(Path(sys.prefix) / "bin"), os.path.dirname(sys.executable)]
        path = [d for i, d in enumerate(bin_dirs) if d and d not in bin_dirs[:i]]
        env["PATH"] = os.pathsep.join([*path, env.get("PATH", os.defpath)])
        return env

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def _ports(self) -> dict[str, int]:
        return {
            "grpc-port": self.grpc_port,
            "http-port": self.http_port,
            "metrics-port": self.metrics_port,
        }

    def start(self) -> None:
        """Check the inputs and start `tritonserver` under its supervisor (returns at once).

        Refuses, naming it, a server recorded beside the log that still runs on one of the
        ports; a port taken by anything else is refused too.
        """
        if self.is_running():
            raise LauncherError(f"Triton is already running (pid {self.pid})")
        if self._run is not None:
            self._finish()
        if not self.repository.is_dir():
            raise LauncherError(f"model repository {self.repository} does not exist")
        if self.require_models and not find_models(self.repository):
            raise LauncherError(
                f"model repository {self.repository} holds no model "
                "(expected subfolders with a config.pbtxt)"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        ours = set(self._ports.values())
        for earlier in pidfile.running_servers(self.log_path.parent):
            if ours & set(earlier.ports.values()):
                raise LauncherError(earlier.still_running())
        check_ports_free(self._ports)
        dist = find_triton_distribution()
        env = self.environment(dist)
        server_dir = prepare_server_dir(dist, self.cache_root)
        command = self.command(server_dir)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"$ {hide_secrets(command)}\n".encode())
            log.flush()
            try:
                self._run = spawn(command, log=log, env=env, cwd=server_dir, pidfile=self.pidfile)
            except OSError as error:
                raise LauncherError(f"cannot start {command[0]}: {error}") from None
        ports = {_PORT_LABELS[option]: port for option, port in self._ports.items()}
        record = pidfile.ServerRecord.of(
            self._run.group, self._run.pid, self.repository, ports, self.log_path
        )
        pidfile.write_record(self.pidfile, record)
        self.returncode = None
        self._shm_regions.clear()
        _RUNNING.add(self)

    def wait_ready(self, timeout: float = 120.0, cancel: Callable[[], bool] | None = None) -> bool:
        """Poll `/v2/health/ready` until Triton and all its models are ready.

        Raises LauncherError (with the relevant lines of Triton's log) if the process exits or
        the timeout passes. Returns False if `cancel()` became true first.
        """
        if self._run is None:
            raise LauncherError("Triton is not started")
        url = f"{self._http_base}/v2/health/ready"
        deadline = time.monotonic() + timeout
        while True:
            if self._has_exited():
                self._finish()
                raise LauncherError(self._failure_message("exited before it was ready"))
            if self._probe(url):
                self._remember_shm()  # every stub runs now: their regions, in case of a crash
                return True
            if cancel is not None and cancel():
                return False
            if time.monotonic() > deadline:
                raise LauncherError(self._failure_message(f"was not ready after {timeout:g} s"))
            time.sleep(0.1)

    @staticmethod
    def _probe(url: str) -> bool:
        try:
            with _LOCAL_HTTP.open(url, timeout=2) as response:
                return response.status == 200
        except (OSError, http.client.HTTPException):
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM Triton, wait up to `timeout`, then SIGKILL its whole process group.

        Returns Triton's exit code (None if it was never started). Safe to call repeatedly.
        """
        if self._run is None:
            return self.returncode
        if not self._has_exited():
            self._remember_shm()
            self._run.terminate()
            deadline = time.monotonic() + timeout
            while not self._has_exited() and time.monotonic() < deadline:
                time.sleep(0.05)
        return self._finish()

    def kill(self) -> int | None:
        """SIGKILL Triton and its backend stubs at once (a crash, for fault tests)."""
        if self._run is None:
            return self.returncode
        return self._finish()

    def restart(self, timeout: float = 120.0) -> None:
        """Stop and start again on the same ports, and wait until ready."""
        self.stop()
        self.start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def model_index(self) -> list[dict[str, Any]]:
        """Models of the repository with their state (`POST /v2/repository/index`)."""
        request = urllib.request.Request(
            f"{self._http_base}/v2/repository/index", data=b"{}", method="POST"
        )
        with _LOCAL_HTTP.open(request, timeout=10) as response:
            return json.loads(response.read() or b"[]")

    def server_metadata(self) -> dict[str, Any]:
        """Triton's name, version and extensions (`GET /v2`)."""
        with _LOCAL_HTTP.open(f"{self._http_base}/v2", timeout=10) as response:
            return json.loads(response.read())

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _has_exited(self) -> bool:
        """Whether `tritonserver` (and so its supervisor) ended; its group id stays reserved."""
        assert self._run is not None
        return self._run.has_exited()

    def _remember_shm(self) -> None:
        if self._run is not None:
            self._shm_regions.update(_stub_shm_regions(self._run.members()))

    def _finish(self) -> int | None:
        """SIGKILL whatever is left of the process group, reap it, remove stub leftovers."""
        assert self._run is not None
        run, self._run = self._run, None
        self._shm_regions.update(_stub_shm_regions(run.members()))
        run.kill()
        self.returncode = run.wait()
        deadline = time.monotonic() + 10
        while group_pids(run.group) and time.monotonic() < deadline:
            time.sleep(0.02)  # orphaned stubs are reaped by init
        for region in self._shm_regions:
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{region}")
        self._shm_regions.clear()
        pidfile.remove_record(self.pidfile, run.group)
        _RUNNING.discard(self)
        return self.returncode

    def _failure_message(self, what: str) -> str:
        log = self.log_text()
        code = f" with code {self.returncode}" if self.returncode is not None else ""
        what = what.replace("exited", f"exited{code}", 1)
        errors = summarize_log_errors(log)
        if errors:
            return f"Triton {what}: {'; '.join(errors)} (full log: {self.log_path})"
        tail = "\n".join(f"  {line}" for line in _log_tail(log))
        return f"Triton {what} (full log: {self.log_path}); last lines:\n{tail}"


def admin_flags(admin_key: str | None, apis: Sequence[str] = RESTRICTED_APIS) -> list[str]:
    """tritonserver flags that close `apis` to requests without the header `admin-key: KEY`.

    Without a key, a random one that nobody knows: the APIs are closed to everyone.
    """
    if not apis:
        return []
    key = admin_key or secrets.token_urlsafe(24)
    joined = ",".join(apis)
    return [
        f"--grpc-restricted-protocol={joined}:{ADMIN_HEADER}={key}",
        f"--http-restricted-api={joined}:{ADMIN_HEADER}={key}",
    ]


def hide_secrets(command: Sequence[str]) -> str:
    """A command line for logs, with the keys of restricted APIs replaced by ***."""
    shown = []
    for arg in command:
        if "-restricted-" in arg and "=" in arg.split(":", 1)[-1]:
            arg = arg.rsplit("=", 1)[0] + "=***"
        shown.append(arg)
    return shlex.join(shown)
