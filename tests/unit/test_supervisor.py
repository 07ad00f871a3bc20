"""gradcam_server.supervisor with small commands: nothing outlives the launcher or the command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from triton_server import alive, assert_processes_gone

from gradcam_server.supervisor import Supervised, group_pids, spawn

# A command that forks a child of its own (as tritonserver forks its backend stubs), prints
# both pids, then waits; it ends with `exit_with` once its child is up if given.
FAMILY = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(os.getpid(), child.pid, flush=True)
if len(sys.argv) > 1:
    time.sleep(0.3)
    code = int(sys.argv[1])
    os.kill(os.getpid(), -code) if code < 0 else os._exit(code)
time.sleep(600)
"""

# A launcher that spawns FAMILY and prints the supervisor's and the family's pids.
LAUNCHER = """
import json, sys, time
from gradcam_server.supervisor import spawn
with open(sys.argv[1], "ab") as log:
    run = spawn([sys.executable, "-c", sys.argv[2]], log=log, grace=1.0)
print(json.dumps({"group": run.group, "pid": run.pid}), flush=True)
time.sleep(600)
"""


def family_of(run: Supervised, timeout: float = 30.0) -> list[int]:
    """The command and its child, once both run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = run.members()
        if len(members) == 2:
            return members
        time.sleep(0.05)
    raise AssertionError(f"the family did not start: {run.members()}")


def start(tmp_path: Path, *args: str, **options) -> Supervised:
    with (tmp_path / "log").open("ab") as log:
        return spawn([sys.executable, "-c", FAMILY, *args], log=log, **options)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM])
def test_the_command_and_its_children_end_with_the_launcher(tmp_path, signum) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "log"), FAMILY],
        stdout=subprocess.PIPE,
        text=True,
        # as from a terminal, also when the suite itself runs under nohup (SIGHUP ignored)
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    try:
        assert launcher.stdout is not None
        started = json.loads(launcher.stdout.readline())
        command = psutil.Process(started["pid"])
        deadline = time.monotonic() + 30
        while not command.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [started["group"], command.pid, *(child.pid for child in command.children())]
        assert len(alive(pids)) == 3
        launcher.send_signal(signum)
        launcher.wait(10)
        assert_processes_gone(pids, timeout=5)
    finally:
        launcher.kill()
        launcher.wait()
    assert f"the launcher (pid {launcher.pid}) has ended" in (tmp_path / "log").read_text()


def test_a_command_started_from_a_thread_outlives_the_thread(tmp_path) -> None:
    """PR_SET_PDEATHSIG would end it with the thread; the lifeline follows the process."""
    runs: list[Supervised] = []
    thread = threading.Thread(target=lambda: runs.append(start(tmp_path)))
    thread.start()
    thread.join()
    run = runs[0]
    try:
        family = family_of(run)
        time.sleep(0.5)
        assert alive(family) == family and not run.has_exited()
    finally:
        run.kill()
        run.wait()
    assert_processes_gone(family)


@pytest.mark.parametrize("code", [3, 0, -signal.SIGKILL, -signal.SIGTERM])
def test_children_end_with_the_command_whose_status_is_kept(tmp_path, code) -> None:
    run = start(tmp_path, str(code))
    family = family_of(run)
    assert run.wait() == code
    assert_processes_gone(family, timeout=5)


def test_terminate_stops_the_command_then_kills_what_ignores_it(tmp_path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('deaf now', flush=True); time.sleep(600)"
    )
    log_path = tmp_path / "log"
    with log_path.open("ab") as log:
        polite = spawn([sys.executable, "-c", "import time; time.sleep(600)"], log=log)
        deaf = spawn([sys.executable, "-c", stubborn], log=log, stop_timeout=1.0)
    deadline = time.monotonic() + 30
    while "deaf now" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    polite.terminate()
    deaf.terminate()
    assert polite.wait() == -signal.SIGTERM
    assert deaf.wait() == -signal.SIGKILL


def test_a_command_that_cannot_start_is_an_os_error(tmp_path) -> None:
    with (tmp_path / "log").open("ab") as log, pytest.raises(FileNotFoundError) as error:
        spawn([str(tmp_path / "no-such-program")], log=log)
    assert str(tmp_path / "no-such-program") in str(error.value)


def test_the_pidfile_goes_when_the_command_ends_if_it_names_the_supervisor(tmp_path) -> None:
    ours, other = tmp_path / "ours.pid", tmp_path / "other.pid"
    run = start(tmp_path, "0", pidfile=ours)
    ours.write_text(json.dumps({"pid": run.group}))
    kept = start(tmp_path, "0", pidfile=other)
    other.write_text(json.dumps({"pid": 1}))  # a newer server's record: not ours to remove
    assert run.wait() == 0 and kept.wait() == 0
    assert not ours.exists() and other.exists()


def test_a_process_whose_main_thread_ended_counts_while_another_thread_runs() -> None:
    """A killed multi-threaded server can show a zombie main thread while its other threads
    still exit and hold its sockets; the group is not empty until they are gone too."""
    code = (
        "import ctypes, threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "ctypes.CDLL(None).pthread_exit(None)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the main thread did not end"
            time.sleep(0.02)
        assert group_pids(child.pid) == [child.pid]
        child.kill()
        child.wait()
        assert group_pids(child.pid) == []
    finally:
        child.kill()
        child.wait()
