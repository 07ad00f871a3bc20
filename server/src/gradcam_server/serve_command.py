"""`gradcam-server serve`: Triton in the foreground until Ctrl-C, SIGTERM or a closed terminal."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from gradcam_server.launcher import RESTRICTED_APIS, LauncherError, TritonServer, admin_flags

# After a closed terminal's SIGHUP nobody waits for a clean stop: Triton gets this long to end,
# then its group is killed (the launcher removes the stubs' shared memory itself).
HANGUP_STOP_SECONDS = 2.0


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
