"""The record a running Triton leaves beside its log, so that a later start can name it.

`tritonserver-<gRPC port>.pid`, in the folder of the server's log, holds JSON: the pid of the
server's supervisor (`kill PID` stops the server and everything it started) with its start
time (pids are reused), tritonserver's and the launcher's pids, the repository, the ports and
the log. The supervisor removes it when the server ends, however the server ends.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gradcam_server.supervisor import proc_stat

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot), or None if there is no such process."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields and fields[0] != "Z" else None


@dataclass(frozen=True)
class ServerRecord:
    """A Triton started by this project's launcher."""

    pid: int  # the supervisor, leader of the server's process group
    triton_pid: int
    launcher_pid: int
    repository: str
    ports: dict[str, int]  # "gRPC", "HTTP", "metrics" -> port
    log: str
    started: int  # start_ticks(pid)
    boot_id: str

    @classmethod
    def of(
        cls, pid: int, triton_pid: int, repository: Path, ports: dict[str, int], log: Path
    ) -> ServerRecord:
        """The record of a server whose supervisor `pid` runs now."""
        return cls(
            pid=pid,
            triton_pid=triton_pid,
            launcher_pid=os.getpid(),
            repository=str(repository),
            ports=dict(ports),
            log=str(log),
            started=start_ticks(pid) or 0,
            boot_id=_boot_id(),
        )

    def is_running(self) -> bool:
        """Whether the recorded supervisor still runs (not another process given its pid)."""
        return self.boot_id == _boot_id() and start_ticks(self.pid) == self.started

    def still_running(self) -> str:
        """One line naming the server and how to stop it."""
        ports = ", ".join(f"{label} {port}" for label, port in self.ports.items())
        return (
            f"Triton from an earlier start is still running: pid {self.pid} (tritonserver "
            f"{self.triton_pid}, started by pid {self.launcher_pid}), repository "
            f"{self.repository}, ports {ports}, log {self.log}; stop it with: kill {self.pid}"
        )


def record_path(log_path: Path, grpc_port: int) -> Path:
    """Where a server logging to `log_path` on `grpc_port` keeps its record."""
    return log_path.parent / f"tritonserver-{grpc_port}.pid"


def write_record(path: Path, record: ServerRecord) -> None:
    """Write the record atomically (best effort: a folder without write access keeps none)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)


def remove_record(path: Path, pid: int) -> None:
    """Remove the record at `path` if it names supervisor `pid`."""
    record = read_record(path)
    if record is not None and record.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def read_record(path: Path) -> ServerRecord | None:
    """The record at `path`, or None if it is missing or unreadable."""
    try:
        return ServerRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_servers(folder: Path) -> list[ServerRecord]:
    """The servers recorded in `folder` that still run; records of ended ones are removed."""
    running = []
    for path in sorted(folder.glob("tritonserver-*.pid")):
        record = read_record(path)
        if record is None:
            continue
        if record.is_running():
            running.append(record)
        else:
            remove_record(path, record.pid)
    return running
