"""Triton on free loopback ports: the one way tests and benchmarks start a server.

    with running_triton(repository, log_dir=logs) as server:
        client = tritonclient.grpc.InferenceServerClient(server.urls.grpc)

The yielded `TritonServer` (see `gradcam_server.launcher`) can be stopped, started, restarted on
the same ports or killed; it is stopped when the block ends. Ports come from a range below
Linux's ephemeral ports (so clients' own sockets rarely take them) and are never handed out
twice by one process.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from gradcam_server.launcher import TritonServer

PORT_RANGE = (20000, 32000)
_HANDED_OUT: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nothing listens on, never handed out before by this process."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(*PORT_RANGE)
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port found in {PORT_RANGE}")


def free_ports(count: int = 3) -> list[int]:
    """`count` distinct free ports (gRPC, HTTP, metrics)."""
    return [free_port() for _ in range(count)]


def new_triton(
    repository: str | os.PathLike[str],
    *,
    extra_args: Sequence[str] = (),
    log_verbose: int = 0,
    log_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    require_models: bool = True,
) -> TritonServer:
    """A not yet started TritonServer on free ports (log in `log_dir` if given)."""
    grpc_port, http_port, metrics_port = free_ports(3)
    log_path = Path(log_dir) / f"tritonserver-{grpc_port}.log" if log_dir else None
    return TritonServer(
        repository,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        extra_args=extra_args,
        log_verbose=log_verbose,
        log_path=log_path,
        env=env,
        require_models=require_models,
    )


@contextlib.contextmanager
def running_triton(
    repository: str | os.PathLike[str],
    *,
    ready_timeout: float = 120.0,
    extra_args: Sequence[str] = (),
    log_verbose: int = 0,
    log_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    require_models: bool = True,
) -> Iterator[TritonServer]:
    """Start Triton on free ports, wait until ready, yield it, and stop it (no leftovers)."""
    server = new_triton(
        repository,
        extra_args=extra_args,
        log_verbose=log_verbose,
        log_dir=log_dir,
        env=env,
        require_models=require_models,
    )
    server.start()
    try:
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()
