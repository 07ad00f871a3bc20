"""Work in a background thread that the page polls: the base of the dashboard's runners.

A `BackgroundTask` runs its `_run` on a daemon thread, so the page's script never waits for
the server. The page reads the task's phase, asks it to `stop` (with a reason) and `wait`s for
it. The thread reports progress, hears of every failed request (an `Outage` while the server
is retried) and, once `_run` returns or raises, the task ends: `Phase.ENDED` with the reason
it ended, or `Phase.FAILED` with one line for the page (`Failure`), never a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

from gradcam_client.errors import Cancelled, GradcamError, ServerUnavailable
from gradcam_client.remote.server import GradcamServer, RetryNotice

ServerFactory = Callable[[Callable[[RetryNotice], None]], GradcamServer]
"""Makes a task's server client, given the callback told of its every failed request."""


class Phase(str, Enum):
    """Where a task is: the same words for every runner."""

    STARTING = "starting"  # before the first frame (a live source is being opened)
    FIRST_PASS = "first pass"  # a file run's whole-clip pass, before the frames
    RUNNING = "running"  # frames are being explained
    STOPPING = "stopping"  # asked to stop, not ended yet
    FINISHING = "finishing"  # the frames are done, the last files are being made
    ENDED = "ended"  # done, stopped, or ended by itself: `BackgroundTask.ended` says why
    FAILED = "failed"  # `BackgroundTask.failure` says why

    @property
    def finished(self) -> bool:
        return self in (Phase.ENDED, Phase.FAILED)


@dataclass(frozen=True)
class Outage:
    """The server stopped answering: since when and until when it is retried (wall-clock
    seconds), and the last error seen."""

    since: float
    until: float
    problem: str

    @property
    def until_clock(self) -> str:
        """When the retries end, as the page says it (HH:MM:SS, local time)."""
        return datetime.datetime.fromtimestamp(self.until).strftime("%H:%M:%S")


@dataclass(frozen=True)
class Failure:
    """Why a task failed (one line), how far it got, and what it made before it failed."""

    message: str
    server_lost: bool = False
    frames_done: int = 0
    total: int | None = None
    video: Path | None = None  # the heat-map video of the frames done
    predictions: Path | None = None  # their predictions (JSONL)


def failure_of(error: Exception) -> Failure:
    """The page's one line for `error`: what a `GradcamError` says, else its type named."""
    if isinstance(error, GradcamError):
        return Failure(str(error), server_lost=isinstance(error, ServerUnavailable))
    return Failure(f"unexpected {type(error).__name__}: {error}")


TaskT = TypeVar("TaskT", bound="BackgroundTask")


class BackgroundTask:
    """`_run` on a daemon thread, with its phase, stop, outage notice and ending.

    `_lock` (a re-entrant condition) guards the task's state, the subclass's too; it is
    notified when a stop is asked and when the task ends.
    """

    thread_name = "background-task"
    outage_clears_s = 1.0
    """An outage is over once work advances this long after the last failed request (answers
    received before the failure may still be composed just after it)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.on_end = on_end
        self.cancel = threading.Event()
        self.failure: Failure | None = None
        self.started = clock()
        self._lock = threading.Condition()
        self._phase = Phase.STARTING
        self._ended: str | None = None
        self._outage: Outage | None = None
        self._last_notice = self._last_progress = self.started
        self._exited = threading.Event()
        self._thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)

    # -- the page's side

    def start(self: TaskT) -> TaskT:
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped") -> None:
        """Ask the task to end (returns at once; `wait` for it); the first reason given stays."""
        with self._lock:
            self._ended = self._ended or reason
            if not self._phase.finished:
                self._phase = Phase.STOPPING
            self.cancel.set()
            self._lock.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the task to end; whether it has."""
        return self._exited.wait(timeout)

    @property
    def phase(self) -> Phase:
        with self._lock:
            return self._phase

    @property
    def finished(self) -> bool:
        return self.phase.finished

    @property
    def ended(self) -> str | None:
        """Why the task ended (None while it runs, or when it failed)."""
        with self._lock:
            return self._ended if self._phase is Phase.ENDED else None

    @property
    def outage(self) -> Outage | None:
        """The server is not answering and is being retried (None once the task ended)."""
        with self._lock:
            in_outage = self._outage is not None and (
                self._last_progress <= self._last_notice + self.outage_clears_s
            )
            return self._outage if in_outage and not self._phase.finished else None

    # -- the thread's side

    def _run(self) -> None:
        """The work; returns when done or stopped, raises when it failed."""
        raise NotImplementedError

    def _ended_by(self, error: Exception) -> Failure | None:
        """How the work that raised `error` ended: None when it was stopped (cancelled, or
        any error once a stop was asked), else its failure."""
        with self._lock:
            stopped = self._ended is not None or isinstance(error, Cancelled)
        return None if stopped else failure_of(error)

    def _progressed(self, phase: Phase = Phase.RUNNING) -> None:
        """Work advanced (an outage notice clears after a while); `phase` unless stopping."""
        with self._lock:
            self._last_progress = self.clock()
            if self._phase is not Phase.STOPPING and not self._phase.finished:
                self._phase = phase

    def _note_outage(self, notice: RetryNotice) -> bool:
        """A request failed and is retried; whether this notice begins an outage."""
        now = self.clock()
        with self._lock:
            outage = self.outage
            if outage is None:
                until = time.time() + (notice.give_up_at - now)
                self._outage = Outage(time.time(), until, notice.problem)
            else:
                self._outage = dataclasses.replace(outage, problem=notice.problem)
            self._last_notice = now
            return outage is None

    def _on_retry(self, notice: RetryNotice) -> None:
        """The callback the task's server client calls on every failed request."""
        self._note_outage(notice)

    def _main(self) -> None:
        failure = None
        try:
            self._run()
        except Exception as error:  # whatever it was: one line for the page
            failure = self._ended_by(error)
        with self._lock:
            self.failure = failure
            self._ended = self._ended or "done"
            self._phase = Phase.FAILED if failure is not None else Phase.ENDED
            self.cancel.set()
            self._lock.notify_all()
        self._exited.set()
        if self.on_end is not None:
            self.on_end()
