"""A live run in a background thread, owned by one browser session.

The client's `LiveJob` runs in a daemon thread; its callbacks only hand the newest composed
frame, its predictions and the events over under a lock, so the run never waits for the page.
The page polls `BackgroundLive.view` (the latest frame, the last minute of predictions, the
counters, the events) and may `stop` it. A run whose page stops asking for a while (the tab
was closed, the session expired) stops itself, and `LiveSlots` bounds the live runs of one
dashboard. A visitor's own address fails with one generic line, whatever went wrong: the
detail goes to the operator's log (a reason per address would map the network behind it).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_client.errors import GradcamError, SourceError
from gradcam_client.live import LiveEvent, LiveFrame, LiveJob, LiveResult, LiveStats
from gradcam_client.triton import RetryNotice

log = logging.getLogger(__name__)

VISITOR_FAILURE = "this source cannot be opened"
"""All a visitor learns of why their address failed to open or came back no more."""

WINDOW_S = 60.0
"""Seconds of predictions kept for the page's chart."""

LEASE_S = 120.0
"""A run whose page has not asked for it this long stops (browsers poll hidden tabs rarely,
down to once a minute)."""

RATE_WINDOW_S = 5.0
"""Seconds over which the page's frames/s is taken."""

EVENTS_KEPT = 6
"""Recent event lines shown."""

OUTAGE_NOTICE_EVERY_S = 5.0
"""At most one "the server is not answering" line this often."""

JobFactory = Callable[
    [Callable[[LiveFrame], None], Callable[[LiveEvent], None], Callable[[RetryNotice], None]],
    LiveJob,
]
"""Makes the run's job (and its server client), given the callbacks for frames, events and
failed requests."""


class LiveSlots:
    """The live runs of one dashboard: at most `limit` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """Take a slot; False when all are taken."""
        with self._lock:
            if self.running >= self.limit:
                return False
            self.running += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)


@dataclass(frozen=True)
class LiveView:
    """What the page draws of a live run."""

    phase: str  # "opening", "running", "stopping", "ended", "failed"
    frame: LiveFrame | None  # the newest composed frame
    records: list[dict[str, Any]]  # predictions of the last `WINDOW_S` seconds
    stats: LiveStats | None
    events: list[LiveEvent] = field(default_factory=list)  # the newest last
    error: str | None = None  # why the run failed (one line)
    result: LiveResult | None = None  # how it ended

    @property
    def finished(self) -> bool:
        return self.phase in ("ended", "failed")

    def recent_fps(self, seconds: float = RATE_WINDOW_S) -> float | None:
        """Frames explained per second of stream over the last `seconds` (None: too few)."""
        if len(self.records) < 2:
            return None
        last = self.records[-1]["time"]
        times = [r["time"] for r in self.records if r["time"] >= last - seconds]
        span = last - times[0]
        return (len(times) - 1) / span if span > 0 else None


class BackgroundLive:
    """One `LiveJob` in a daemon thread, with the hand-over the page reads.

    redact: applied to every message shown (replaces a source's address by its name).
    visitor: the source is an address a visitor typed: its failures read `VISITOR_FAILURE`
        (the detail is logged).
    """

    def __init__(
        self,
        make_job: JobFactory,
        folder: Path,
        slots: LiveSlots,
        *,
        redact: Callable[[str], str] = lambda text: text,
        visitor: bool = False,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_job = make_job
        self.folder = folder
        self.slots = slots
        self.redact = redact
        self.visitor = visitor
        self.lease_s = lease_s
        self.clock = clock
        self._lock = threading.Lock()
        self._job: LiveJob | None = None
        self._phase = "opening"
        self._frame: LiveFrame | None = None
        self._records: deque[dict[str, Any]] = deque()
        self._events: deque[LiveEvent] = deque(maxlen=EVENTS_KEPT)
        self._error: str | None = None
        self._result: LiveResult | None = None
        self._stop_reason: str | None = None
        self._last_outage = -OUTAGE_NOTICE_EVERY_S
        self._last_seen = clock()
        self._rgb: tuple[int, np.ndarray] | None = None
        self._discard = False
        self._ended = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, name="dashboard-live", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="live-lease", daemon=True)

    # -- the page's side

    def start(self) -> BackgroundLive:
        self._thread.start()
        self._watchdog.start()
        return self

    def view(self) -> LiveView:
        """The run as it is now; also renews the page's lease on it."""
        with self._lock:
            self._last_seen = self.clock()
            job = self._job
            frame = self._frame
            stats = self._result.stats if self._result is not None else None
            if stats is None and frame is not None:
                stats = frame.stats
            view = LiveView(
                phase=self._phase,
                frame=frame,
                records=list(self._records),
                stats=stats,
                events=list(self._events),
                error=self._error,
                result=self._result,
            )
        if job is not None and not view.finished and frame is not None:
            return dataclasses.replace(view, stats=job.stats)  # counters between frames too
        return view

    def rgb(self, frame: LiveFrame) -> np.ndarray:
        """A frame of this run as RGB, converted once (here, never on the run's thread)."""
        with self._lock:
            cached = self._rgb
        if cached is None or cached[0] != frame.index:
            cached = (frame.index, frame.rgb())
            with self._lock:
                self._rgb = cached
        return cached[1]

    def stop(self, reason: str = "stopped") -> None:
        """Ask the run to end (returns at once; `wait` for it)."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            job = self._job
            if self._phase in ("opening", "running"):
                self._phase = "stopping"
        if job is not None:
            job.stop(reason)

    def discard(self) -> None:
        """`stop`, and remove the run's files once it has ended."""
        with self._lock:
            self._discard = True
            ended = self._ended
        self.stop()
        if ended:
            shutil.rmtree(self.folder, ignore_errors=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; whether it has."""
        return self._done.wait(timeout)

    # -- the run's side

    def _on_frame(self, frame: LiveFrame) -> None:
        record = frame.record
        with self._lock:
            self._frame = frame
            self._records.append(record)
            while self._records and self._records[0]["time"] < record["time"] - WINDOW_S:
                self._records.popleft()
            if self._phase == "opening":
                self._phase = "running"

    def _on_event(self, event: LiveEvent) -> None:
        if self.visitor and event.kind == "gave-up":
            log.warning("a visitor's live source gave up: %s", event.message)
            event = LiveEvent(event.kind, f"the source did not come back: {VISITOR_FAILURE}")
        with self._lock:
            self._events.append(LiveEvent(event.kind, self.redact(event.message)))
            if event.kind == "opened" and self._phase == "opening":
                self._phase = "running"

    def _on_retry(self, notice: RetryNotice) -> None:
        now = self.clock()
        with self._lock:
            if now - self._last_outage < OUTAGE_NOTICE_EVERY_S:
                return
            self._last_outage = now
        self._on_event(
            LiveEvent("server", f"the server is not answering ({notice.problem}); retrying")
        )

    def _watch(self) -> None:
        """Stop the run when its page has not asked for it within the lease."""
        while not self._done.wait(min(5.0, self.lease_s / 4)):
            with self._lock:
                idle = self.clock() - self._last_seen
            if idle > self.lease_s:
                self.stop("the page was closed")

    def _work(self) -> None:
        job = None
        try:
            job = self.make_job(self._on_frame, self._on_event, self._on_retry)
            with self._lock:
                self._job = job
                reason = self._stop_reason
            if reason is not None:  # stopped before the job existed
                job.stop(reason)
            result = job.run()
            with self._lock:
                self._result = result
                self._phase = "ended"
        except SourceError as error:
            if self.visitor:
                log.warning("a visitor's live source failed: %s", error)
            message = VISITOR_FAILURE if self.visitor else str(error)
            self._fail(message if self._stop_reason is None else None)
        except GradcamError as error:
            self._fail(str(error) if self._stop_reason is None else None)
        except Exception as error:  # unforeseen: still one line for the page
            self._fail(f"unexpected {type(error).__name__}: {error}")
        finally:
            if job is not None:
                job.server.close()
            self.slots.release()
            with self._lock:
                self._ended = True
                discard = self._discard
            if discard:
                shutil.rmtree(self.folder, ignore_errors=True)
            self._done.set()

    def _fail(self, message: str | None) -> None:
        """The run failed (`message`), or was stopped before its source opened (None)."""
        with self._lock:
            self._error = self.redact(message) if message else None
            self._phase = "failed" if message else "ended"
