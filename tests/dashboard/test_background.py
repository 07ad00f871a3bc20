"""The dashboard's background-task base (`BackgroundTask`): start, stop with a reason, one
line for a failure, the outage notice and the ending."""

from __future__ import annotations

import threading
import time

import pytest

from gradcam_client.errors import Cancelled, InputError, ServerUnavailable
from gradcam_client.remote.server import RetryNotice
from gradcam_dashboard.background import BackgroundTask, Failure, Phase


class Task(BackgroundTask):
    """Reports progress once, then waits for `release` (or a stop), then raises `error`."""

    def __init__(self, error: Exception | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.error = error
        self.release = threading.Event()
        self.progressed = threading.Event()

    def _run(self) -> None:
        self._progressed()
        self.progressed.set()
        while not self.release.is_set() and not self.cancel.wait(0.01):
            pass
        if self.error is not None:
            raise self.error


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def notice(problem: str, give_up_in: float, clock: Clock) -> RetryNotice:
    return RetryNotice("inference", problem, False, clock.now + give_up_in)


def test_a_task_that_is_done_ends_once_and_says_so():
    ends = []
    task = Task(on_end=lambda: ends.append(1))
    assert task.phase == Phase.STARTING and not task.wait(0)
    task.start()
    assert task.progressed.wait(5) and task.phase == Phase.RUNNING
    task.release.set()
    assert task.wait(5)
    assert (task.phase, task.ended, task.failure) == (Phase.ENDED, "done", None)
    assert task.finished and task.cancel.is_set() and ends == [1]


def test_a_stopped_task_keeps_its_first_reason_and_an_error_after_the_stop_is_no_failure():
    task = Task(error=InputError("the file went away")).start()
    assert task.progressed.wait(5)
    task.stop("removed")
    assert task.phase == Phase.STOPPING and task.ended is None  # not ended yet
    task.stop("stopped")
    assert task.wait(5)
    assert (task.phase, task.ended, task.failure) == (Phase.ENDED, "removed", None)


def test_progress_while_stopping_leaves_the_phase_alone():
    task = Task()
    task.stop()
    task._progressed()
    assert task.phase == Phase.STOPPING


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (InputError("no video stream in the file"), Failure("no video stream in the file")),
        (ServerUnavailable("no answer for 4 s"), Failure("no answer for 4 s", server_lost=True)),
        (KeyError("layer"), Failure("unexpected KeyError: 'layer'")),
    ],
)
def test_a_failure_is_one_line_for_the_page(error, failure):
    task = Task(error=error).start()
    task.release.set()
    assert task.wait(5)
    assert (task.phase, task.failure, task.ended) == (Phase.FAILED, failure, None)


def test_a_cancelled_task_ended_and_did_not_fail():
    task = Task(error=Cancelled("stopped by its caller")).start()
    task.release.set()
    assert task.wait(5) and (task.phase, task.failure) == (Phase.ENDED, None)


def test_an_outage_begins_once_keeps_its_start_and_clears_after_progress():
    clock = Clock()
    task = Task(clock=clock)
    assert task.outage is None
    wall = time.time()
    assert task._note_outage(notice("UNAVAILABLE", 30, clock))
    first = task.outage
    assert first is not None and first.problem == "UNAVAILABLE"
    assert first.since == pytest.approx(wall, abs=5) and first.until - first.since == (
        pytest.approx(30, abs=1)
    )
    clock.now += 2
    assert not task._note_outage(notice("DEADLINE_EXCEEDED", 28, clock))  # the same outage
    assert task.outage.since == first.since and task.outage.problem == "DEADLINE_EXCEEDED"
    clock.now += 0.5
    task._progressed()  # answers composed just after the failure: still in the outage
    assert task.outage is not None
    clock.now += task.outage_clears_s
    task._progressed()
    assert task.outage is None
    assert task._note_outage(notice("UNAVAILABLE", 30, clock))  # a new one


def test_the_outage_notice_is_over_once_the_task_ended():
    clock = Clock()
    task = Task(clock=clock).start()
    assert task.progressed.wait(5)
    task._on_retry(notice("UNAVAILABLE", 30, clock))
    assert task.outage is not None
    task.stop()
    assert task.wait(5) and task.outage is None
