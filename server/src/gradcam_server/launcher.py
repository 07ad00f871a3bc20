"""Run the Triton Inference Server bundled in the `nvidia-pytriton` wheel on a model repository.

The wheel ships `pytriton/tritonserver/` (the `tritonserver` binary, the python backend and one
backend stub per Python version) and its shared libraries in `nvidia_pytriton.libs/`. To serve an
ordinary model repository with it we:

* copy `tritonserver/` once into a cache folder and put the stub matching the running Python at
  `backends/python/triton_python_backend_stub` (done in a temporary folder, then renamed, so two
  processes preparing at once do not see half-copied files);
* start `tritonserver` with `LD_LIBRARY_PATH` = the wheel's libraries + the folder holding
  `libpython3.X.so.1.0`, and `PATH` starting with this environment's `bin` (the stub follows `PATH`
  to find `python3` and therefore this environment's site-packages);
* run it under a supervisor (`gradcam_server.supervisor`) that leads its process group, so
  that neither tritonserver nor the backend stubs it forks (one per model instance) outlive the
  launcher, whatever ends it, and the stubs end with tritonserver;
* leave a record beside the log (`gradcam_server.pidfile`), so that a later start on the same
  ports names the running server and how to stop it.

`TritonServer` is the programmatic handle (a context manager); `serve()` is the foreground command
used by `gradcam-server serve`.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gradcam_server import pidfile
from gradcam_server.supervisor import Supervised, group_pids, spawn

__all__ = [
    "LauncherError",
    "TritonDistribution",
    "TritonServer",
    "TritonUrls",
    "check_ports_free",
    "find_libpython",
    "find_models",
    "find_triton_distribution",
    "prepare_server_dir",
    "serve",
    "summarize_log_errors",
]

STUB_NAME = "triton_python_backend_stub"
_MARKER = ".prepared.json"
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
# After a closed terminal's SIGHUP nobody waits for a clean stop: Triton gets this long to end,
# then its group is killed (the launcher removes the stubs' shared memory itself).
HANGUP_STOP_SECONDS = 2.0


class LauncherError(Exception):
    """A problem starting or running Triton, with a message meant for the user (no traceback)."""


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


@dataclass(frozen=True)
class TritonDistribution:
    """The Triton files inside an installed nvidia-pytriton wheel."""

    version: str  # version of the nvidia-pytriton package
    server_dir: Path  # .../pytriton/tritonserver
    libs_dir: Path  # .../nvidia_pytriton.libs

    def stub_path(self, python_version: str) -> Path:
        """The python backend stub built for `python_version` ("3.11")."""
        return self.server_dir / "python_backend_stubs" / python_version / STUB_NAME


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_triton_distribution() -> TritonDistribution:
    """Locate the Triton server shipped by nvidia-pytriton in this environment."""
    spec = importlib.util.find_spec("pytriton")
    hint = f"install it into this environment ({sys.prefix}): pip install nvidia-pytriton"
    if spec is None or not spec.submodule_search_locations:
        raise LauncherError(f"nvidia-pytriton is not installed; {hint}")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    server_dir = package_dir / "tritonserver"
    if not (server_dir / "bin" / "tritonserver").is_file():
        raise LauncherError(
            f"nvidia-pytriton at {package_dir} has no bundled server "
            f"({server_dir / 'bin' / 'tritonserver'} is missing); {hint}"
        )
    libs_dir = package_dir.parent / "nvidia_pytriton.libs"
    if not libs_dir.is_dir():  # an editable (source) install keeps them here
        libs_dir = server_dir / "external_libs"
    try:
        version = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return TritonDistribution(version=version, server_dir=server_dir, libs_dir=libs_dir)


def find_libpython() -> Path:
    """Return the folder holding the shared libpython the backend stub links against.

    Searched: `$GRADCAM_LIBPYTHON_DIR`, sysconfig LIBDIR, `<base prefix>/lib` and `/lib64`,
    for sysconfig INSTSONAME / LDLIBRARY / `libpython3.X.so.1.0`.
    """
    version = _python_version()
    names = [f"libpython{version}.so.1.0"]
    for var in ("INSTSONAME", "LDLIBRARY"):
        value = sysconfig.get_config_var(var)
        if value and ".so" in value and value not in names:
            names.append(value)
    dirs: list[Path] = []
    override = os.environ.get("GRADCAM_LIBPYTHON_DIR")
    if override:
        dirs.append(Path(override))
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        dirs.append(Path(libdir))
    for prefix in (sys.base_prefix, sys.base_exec_prefix):
        dirs += [Path(prefix) / "lib", Path(prefix) / "lib64"]
    searched: list[Path] = []
    for directory in dirs:
        if directory in searched:
            continue
        searched.append(directory)
        if any((directory / name).exists() for name in names):
            return directory
    raise LauncherError(
        f"cannot find the shared Python library ({' or '.join(names)}) needed by Triton's python "
        f"backend; searched {', '.join(map(str, searched))}. Use a Python built with "
        "--enable-shared, or set GRADCAM_LIBPYTHON_DIR to the folder holding it"
    )


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradcam-server"


def _is_prepared(path: Path) -> bool:
    return (
        (path / _MARKER).is_file()
        and (path / "bin" / "tritonserver").is_file()
        and (path / "backends" / "python" / STUB_NAME).is_file()
    )


def prepare_server_dir(
    dist: TritonDistribution | None = None, cache_root: Path | None = None
) -> Path:
    """Return a ready-to-run copy of the bundled server, preparing it on first use.

    The copy lives in `<cache_root>/triton-<version>-py<X.Y>` (default cache root:
    `$XDG_CACHE_HOME/gradcam-server`, falling back to the temp folder if that is not writable).
    """
    dist = dist or find_triton_distribution()
    python_version = _python_version()
    stub = dist.stub_path(python_version)
    if not stub.is_file():
        available = sorted(p.name for p in stub.parent.parent.glob("*") if p.is_dir())
        raise LauncherError(
            f"nvidia-pytriton {dist.version} has no python backend stub for Python "
            f"{python_version} ({stub} is missing; available: {', '.join(available) or 'none'})"
        )
    roots = [cache_root] if cache_root else [_cache_root(), Path(tempfile.gettempdir())]
    last_error: OSError | None = None
    for root in roots:
        try:
            return _prepare_in(root, dist, stub, python_version)
        except OSError as error:
            last_error = error
    raise LauncherError(f"cannot prepare the Triton server folder: {last_error}")


def _prepare_in(root: Path, dist: TritonDistribution, stub: Path, python_version: str) -> Path:
    final = root / f"triton-{dist.version}-py{python_version}"
    if _is_prepared(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        shutil.copytree(
            dist.server_dir,
            tmp,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("python_backend_stubs", STUB_NAME, "__pycache__"),
        )
        shutil.copy2(stub, tmp / "backends" / "python" / STUB_NAME)
        marker = {"source": str(dist.server_dir), "version": dist.version, "python": python_version}
        (tmp / _MARKER).write_text(json.dumps(marker))
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if _is_prepared(final):  # another process won the race: use its copy
                return final
            stale = final.with_name(f".{final.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
            os.rename(final, stale)  # a broken leftover: move it aside, then retry once
            shutil.rmtree(stale, ignore_errors=True)
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


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


def _follow_log(path: Path, out: IO[str], stop: threading.Event) -> None:
    """Copy what is appended to the log file `path` to `out` (for `docker logs`) until `stop`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        while True:
            stopping = stop.wait(0.5)
            chunk = log.read()
            if chunk:
                out.write(chunk.decode(errors="replace"))
                out.flush()
            if stopping:
                return


def _print_banner(server: TritonServer, out: IO[str]) -> None:
    try:
        version = server.server_metadata().get("version", "?")
        models = server.model_index()
    except (OSError, ValueError) as error:
        version, models = "?", []
        print(f"(cannot list models: {error})", file=out)
    urls = server.urls
    print(f"Triton {version} is ready (pid {server.pid}), serving {server.repository}", file=out)
    print(f"  gRPC:    {urls.grpc}", file=out)
    print(f"  HTTP:    {urls.http}", file=out)
    print(f"  metrics: {urls.metrics}", file=out)
    print(f"  log:     {server.log_path}", file=out)
    print("Models:", file=out)
    for model in models:
        line = f"  {model.get('name')} (version {model.get('version', '-')}): {model.get('state')}"
        if model.get("reason"):
            line += f" - {model['reason']}"
        print(line, file=out)
    if not models:
        print("  (none)", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)


def serve(
    repository: str | os.PathLike[str],
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    log_verbose: int = 0,
    *,
    address: str = "0.0.0.0",
    admin_key: str | None = None,
    restricted_apis: Sequence[str] = RESTRICTED_APIS,
    extra_args: Sequence[str] = (),
    log_path: str | os.PathLike[str] | None = None,
    echo_log: bool = False,
    ready_timeout: float = 300.0,
    out: IO[str] | None = None,
) -> int:
    """Serve a repository in the foreground until Ctrl-C (SIGINT), SIGTERM or SIGHUP.

    Triton listens on `address`; the admin APIs `restricted_apis` need the header
    `admin-key: ADMIN_KEY` (closed to everyone without a key) unless `extra_args` hold
    restricted-API flags of their own. `echo_log` copies Triton's log to `out` as it comes.
    Prints the endpoints and the models with their state once ready. Returns 0 after a clean
    stop; raises LauncherError if Triton cannot start or dies on its own. A second Ctrl-C while
    stopping kills Triton at once.
    """
    out = out or sys.stdout
    own_restrictions = any("-restricted-" in arg for arg in extra_args)
    security = [] if own_restrictions else admin_flags(admin_key, restricted_apis)
    server = TritonServer(
        repository,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        address=address,
        extra_args=[*security, *extra_args],
        log_verbose=log_verbose,
        log_path=log_path,
    )
    if security:
        state = "need the header admin-key" if admin_key else "are closed (no admin key given)"
        print(f"Admin APIs {', '.join(restricted_apis)} {state}.", file=out, flush=True)
    stop_requested = threading.Event()
    hung_up = threading.Event()
    stop_echo = threading.Event()
    echo = threading.Thread(target=_follow_log, args=(server.log_path, out, stop_echo), daemon=True)

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested.is_set() and server.group is not None:
            with contextlib.suppress(OSError):
                os.killpg(server.group, signal.SIGKILL)
            return
        if signum == signal.SIGHUP:
            hung_up.set()
        stop_requested.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        # A closed terminal's SIGHUP stops Triton like Ctrl-C; should the launcher die anyway
        # (SIGKILL), Triton's supervisor stops it.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        if echo_log:
            echo.start()
        server.start()
        print(
            f"Started Triton (pid {server.pid}) on {server.repository}; loading models ...",
            file=out,
            flush=True,
        )
        try:
            if server.wait_ready(ready_timeout, cancel=stop_requested.is_set):
                _print_banner(server, out)
                while not stop_requested.wait(0.5):
                    if server._has_exited():
                        server._finish()
                        raise LauncherError(server._failure_message("exited unexpectedly"))
            print("Stopping Triton ...", file=out, flush=True)
        finally:
            code = server.stop(HANGUP_STOP_SECONDS if hung_up.is_set() else 30.0)
        print(f"Triton stopped (exit code {code}).", file=out, flush=True)
        return 0
    finally:
        stop_echo.set()
        if echo.is_alive():
            echo.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
