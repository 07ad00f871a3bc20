"""Run a command so that neither it nor anything it forks outlives the process that started it.

`spawn()` runs this file as a small supervisor (the same Python, standard library only). The
supervisor leads a new session and process group, starts the command in it, and waits for the
first of:

* the command ends (it exits, crashes or is killed): what it forked and left in the group
  (Triton's python backend stubs) is SIGKILLed, and the supervisor exits with the command's
  status (killed by signal N: the supervisor kills itself with N);
* its lifeline breaks: a pipe whose write end only the launcher holds, which the kernel closes
  when the launcher's process ends, however it ends (exit, crash, SIGKILL, a closed terminal's
  SIGHUP). PR_SET_PDEATHSIG would instead fire when the *thread* that started the child ends,
  so a server restarted from a worker thread would die with that thread; the pipe follows the
  process. The command gets SIGTERM, and whatever is left of the group SIGKILL after `grace`
  seconds;
* SIGTERM, SIGINT or SIGHUP to the supervisor: the same, with `stop_timeout` seconds; a second
  such signal SIGKILLs the group at once.

The command gets PR_SET_PDEATHSIG(SIGKILL) from the supervisor's only thread (which lives as
long as the supervisor), so it ends even if the supervisor is SIGKILLed.

Why a separate process: the launcher itself cannot clean up after a SIGKILL, and a parent-death
signal reaches only the direct child (tritonserver), never the stubs it forks.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


# -- the launcher's side -----------------------------------------------------------------------


@dataclass
class Supervised:
    """A command running under its supervisor (which leads the command's process group)."""

    process: subprocess.Popen[bytes]  # the supervisor
    pid: int  # the command
    _lifeline: int | None = field(repr=False)

    @property
    def group(self) -> int:
        """The process group of the supervisor, the command and everything they forked."""
        return self.process.pid

    def members(self) -> list[int]:
        """Live processes of the group, the supervisor excluded."""
        return [pid for pid in group_pids(self.group) if pid != self.group]

    def has_exited(self) -> bool:
        """Whether the supervisor (so the command) ended, without reaping it: the group id
        stays reserved until `wait()`."""
        if self.process.returncode is not None:
            return True
        try:
            status = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return status is not None

    def terminate(self) -> None:
        """Ask the supervisor to stop the command (SIGTERM to it, then the group's leftovers)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole group at once."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.group, signal.SIGKILL)

    def wait(self) -> int:
        """Reap the supervisor and cut the lifeline; the command's exit status (negative: the
        signal that killed it)."""
        code = self.process.wait()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        return code


def spawn(
    command: Sequence[str],
    *,
    log: IO[bytes],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace: float = 3.0,
    stop_timeout: float = 30.0,
    pidfile: str | os.PathLike[str] | None = None,
) -> Supervised:
    """Start `command` under a supervisor; its output and the supervisor's go to `log`.

    Returns once the command is started; raises OSError as `subprocess.Popen` would when it
    cannot be. `pidfile`, if given, is removed when the command ends, as long as its JSON still
    names the supervisor's pid (`"pid"`). Call from any thread: the command lives until the
    launcher's process ends or `terminate()`/`kill()`.
    """
    read_end, write_end = os.pipe()  # both close-on-exec: only the supervisor gets read_end
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__],
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=log,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    header = {
        "command": list(command),
        "grace": grace,
        "stop_timeout": stop_timeout,
        "pidfile": None if pidfile is None else str(pidfile),
        "launcher": os.getpid(),
    }
    assert process.stdout is not None
    try:
        os.write(write_end, json.dumps(header).encode() + b"\n")
        report = json.loads(process.stdout.readline() or b"{}")
    except BaseException:
        os.close(write_end)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    finally:
        process.stdout.close()
    if "pid" not in report:
        os.close(write_end)
        process.wait()
        if "errno" in report:
            raise OSError(report["errno"], report["strerror"], report["filename"])
        raise OSError(f"the supervisor ended at once (exit code {process.returncode})")
    return Supervised(process, int(report["pid"]), write_end)


# -- processes ---------------------------------------------------------------------------------


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm)", or None if there is no such process:
    [0] state, [2] process group, [19] start time in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _has_live_thread(pid: str) -> bool:
    """Whether any thread of the process still runs. A killed process's main thread can turn
    zombie while its other threads are still exiting, holding the files (sockets) they share."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        fields = proc_stat(f"{pid}/task/{task}")
        if fields and fields[0] != "Z":
            return True
    return False


def group_pids(pgid: int) -> list[int]:
    """Processes of a process group that still have a live (non-zombie) thread."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = proc_stat(entry.name)
            if not fields or int(fields[2]) != pgid:
                continue
            if fields[0] != "Z" or _has_live_thread(entry.name):
                pids.append(int(entry.name))
    return pids


# -- the supervisor's side ---------------------------------------------------------------------


def _say(text: str) -> None:
    sys.stderr.write(f"supervisor (pid {os.getpid()}): {text}\n")
    sys.stderr.flush()


def _report(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")
    os.dup2(2, 1)  # closes the report pipe; anything printed later goes to the log


def _end_with(supervisor: int) -> Any:
    """A preexec_fn giving the child PR_SET_PDEATHSIG(SIGKILL) towards this (one-threaded)
    supervisor, and ending it if the supervisor is already gone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != supervisor:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _kill_rest_of_group(timeout: float) -> None:
    """SIGKILL every other process of this group, and wait (up to `timeout`) until gone."""
    me, deadline = os.getpid(), time.monotonic() + timeout
    while True:
        others = [pid for pid in group_pids(os.getpgid(0)) if pid != me]
        if not others or time.monotonic() > deadline:
            return
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _remove_pidfile(path: str | None) -> None:
    if not path:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if json.loads(Path(path).read_text()).get("pid") == os.getpid():
            os.unlink(path)


def _supervise(child: subprocess.Popen[bytes], header: dict[str, Any], wakeup: int) -> None:
    """Wait until `child` ends, stopping it when the lifeline breaks or a stop signal comes."""
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)  # the lifeline
    selector.register(wakeup, selectors.EVENT_READ)
    deadline: float | None = None

    def stop(within: float) -> None:
        nonlocal deadline
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within

    while child.poll() is None:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            _kill_rest_of_group(5.0)
            child.wait()
            break
        for key, _ in selector.select(timeout):
            if key.fd == wakeup:
                received = set(os.read(wakeup, 256)) & set(_STOP_SIGNALS)
                if received and deadline is not None:
                    deadline = time.monotonic()  # asked again: kill now
                elif received:
                    stop(float(header["stop_timeout"]))
            elif not os.read(0, 256):  # the launcher's process has ended
                selector.unregister(0)
                _say(
                    f"the launcher (pid {header['launcher']}) has ended: stopping "
                    f"{Path(header['command'][0]).name} (pid {child.pid})"
                )
                if deadline is None:
                    stop(float(header["grace"]))


def main() -> int:
    header = json.loads(sys.stdin.buffer.readline() or b"null")
    if not header:
        return 2  # the launcher ended before it said what to run
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in (*_STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(signum, lambda *_: None)  # the wakeup pipe carries the signal number
    try:
        child = subprocess.Popen(
            header["command"],
            stdin=subprocess.DEVNULL,
            stdout=2,
            stderr=2,
            preexec_fn=_end_with(os.getpid()),  # safe: this process has one thread
        )
    except OSError as error:
        _report({"errno": error.errno, "strerror": error.strerror, "filename": error.filename})
        return 127
    _report({"pid": child.pid})
    try:
        _supervise(child, header, wake_read)
    finally:
        _kill_rest_of_group(5.0)
        _remove_pidfile(header.get("pidfile"))
    code = child.returncode
    if code is not None and code < 0:  # end as the command did: killed by the same signal
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.set_wakeup_fd(-1)
        with contextlib.suppress(OSError):  # SIGKILL and SIGSTOP keep their default anyway
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
