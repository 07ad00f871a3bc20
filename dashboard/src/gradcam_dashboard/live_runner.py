"""The live streams of one browser session, running in the background.

A session runs one `LiveStreams`: its streams share one server connection (so Triton batches
frames of different streams together) and one fair budget of requests in flight. The streams'
callbacks only hand each stream's newest composed frame, its predictions and its events over
under a lock, so no stream ever waits for the page. The page polls `LiveSession.views` and may
`add` a stream (up to the session's capacity, and only while the dashboard's `LiveSlots`,
which count streams, have room), `remove` one while the others go on, or `stop` them all. A
stream that fails ends alone, with its one line. A session whose page stops asking for a
while (the tab was closed, the session expired) stops itself. A visitor's own address fails
with one generic line, whatever went wrong: the detail goes to the operator's log (a reason per
address would map the network behind it).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_client.errors import GradcamError, SourceError
from gradcam_client.live.job import LiveEvent, LiveFrame, LiveJob, LiveResult, LiveStats
from gradcam_client.live.source_guard import SourceGuard
from gradcam_client.live.streams import LiveStreams, StreamOutcome
from gradcam_client.remote.server import RetryNotice
from gradcam_dashboard.background import BackgroundTask, Phase, failure_of
from gradcam_dashboard.config import LiveSourceChoice

log = logging.getLogger(__name__)

VISITOR_FAILURE = "this source cannot be opened"
"""All a visitor learns of why their address failed to open or came back no more."""

RECORDING = "live.mp4"
PREDICTIONS = "predictions.jsonl"
"""A stream's files, in its own folder of the session's."""

WINDOW_S = 60.0
"""Seconds of predictions kept for the page's chart."""

LEASE_S = 120.0
"""A session whose page has not asked for it this long stops (browsers poll hidden tabs
rarely, down to once a minute)."""

RATE_WINDOW_S = 5.0
"""Seconds over which the page's frames/s is taken."""

EVENTS_KEPT = 6
"""Recent event lines shown per stream."""

StreamsFactory = Callable[
    [
        Callable[[str, LiveFrame], None],
        Callable[[str, LiveEvent], None],
        Callable[[str, StreamOutcome], None],
        Callable[[RetryNotice], None],
    ],
    LiveStreams,
]
"""Makes the session's `LiveStreams` (and its server client), given the callbacks for frames,
events, ended streams and failed requests."""


class LiveSlots:
    """The live streams (or cameras) of one dashboard: at most `limit` at once."""

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
    """What the page draws of one stream."""

    key: str  # the stream's name in the session ("s1", "s2", ...)
    name: str  # the source's name, as visitors see it
    folder: Path  # its recording and predictions
    phase: Phase
    frame: LiveFrame | None  # the newest composed frame
    records: list[dict[str, Any]]  # predictions of the last `WINDOW_S` seconds
    stats: LiveStats | None
    events: list[LiveEvent] = field(default_factory=list)  # the newest last
    error: str | None = None  # why the stream failed (one line)
    result: LiveResult | None = None  # how it ended

    @property
    def finished(self) -> bool:
        return self.phase.finished

    def recent_fps(self, seconds: float = RATE_WINDOW_S) -> float | None:
        """Frames explained per second of stream over the last `seconds` (None: too few)."""
        if len(self.records) < 2:
            return None
        last = self.records[-1]["time"]
        times = [r["time"] for r in self.records if r["time"] >= last - seconds]
        span = last - times[0]
        return (len(times) - 1) / span if span > 0 else None


class _Stream:
    """One stream's hand-over to the page (guarded by the session's lock)."""

    def __init__(self, key: str, source: LiveSourceChoice, folder: Path) -> None:
        self.key = key
        self.source = source
        self.folder = folder
        self.job: LiveJob | None = None
        self.phase = Phase.STARTING
        self.frame: LiveFrame | None = None
        self.records: deque[dict[str, Any]] = deque()
        self.events: deque[LiveEvent] = deque(maxlen=EVENTS_KEPT)
        self.error: str | None = None
        self.result: LiveResult | None = None
        self.stop_reason: str | None = None
        self.rgb: tuple[int, np.ndarray] | None = None

    def view(self) -> LiveView:
        stats = self.result.stats if self.result is not None else None
        if stats is None and self.frame is not None:
            stats = self.frame.stats
            if self.job is not None:
                stats = self.job.stats  # counters between frames too
        return LiveView(
            self.key,
            self.source.name,
            self.folder,
            self.phase,
            self.frame,
            list(self.records),
            stats,
            list(self.events),
            self.error,
            self.result,
        )


class LiveSession(BackgroundTask):
    """The live streams of one browser session (one `LiveStreams`), with the hand-over the
    page reads. The session has ended once every stream has (none can be added then); its
    thread stops the streams when the page's lease lapses, and closes the server connection
    at the end.

    capacity: streams running at once in this session.
    guard: how a visitor's own address is checked (the operator's sources are trusted).
    """

    thread_name = "live-session"

    def __init__(
        self,
        make_streams: StreamsFactory,
        folder: Path,
        slots: LiveSlots,
        *,
        capacity: int = 1,
        guard: SourceGuard | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.slots = slots
        self.capacity = capacity
        self.guard = guard
        self.lease_s = lease_s
        self._streams: dict[str, _Stream] = {}
        self._added = 0
        self._discard = False
        self._last_seen = self.started
        self.engine = make_streams(self._on_frame, self._on_event, self._on_end, self._on_retry)
        self.start()

    # -- the page's side

    def add(self, source: LiveSourceChoice) -> str | None:
        """Start `source` as a new stream; None, or why it cannot start (one line).

        A source that cannot be opened is not refused here: its stream fails in its panel."""
        with self._lock:
            if self._phase is Phase.STOPPING or self._phase.finished:
                return "these live streams have ended; start again"
            running = [s for s in self._streams.values() if not s.phase.finished]
            if any(s.source.url == source.url for s in running):
                return f"{source.name} is running already"
            if len(running) >= self.capacity:
                return f"{self.capacity} stream(s) run here at most; remove one first"
            if not self.slots.acquire():
                return (
                    f"this dashboard already runs {self.slots.limit} live stream(s), the most "
                    "it allows at once; please try again in a while"
                )
            self._added += 1
            key = f"s{self._added}"
            stream = self._streams[key] = _Stream(key, source, self.folder / key)
        stream.folder.mkdir(parents=True, exist_ok=True)
        try:
            job = self.engine.add(
                key,
                source.url,
                stream.folder / RECORDING,
                predictions=stream.folder / PREDICTIONS,
                guard=self.guard if source.visitor else None,
            )
        except GradcamError as error:  # settings that cannot work: said in its panel
            self._on_end(key, StreamOutcome(key, source.url, error=error))
            return None
        with self._lock:
            stream.job = job
            reason = stream.stop_reason
        if reason is not None:  # removed before its job existed
            job.stop(reason)
        return None

    def views(self) -> list[LiveView]:
        """Every stream not forgotten, in the order added; also renews the page's lease."""
        with self._lock:
            self._last_seen = self.clock()
            return [stream.view() for stream in self._streams.values()]

    def view(self, key: str) -> LiveView | None:
        """One stream as it is now (None: forgotten); also renews the page's lease."""
        with self._lock:
            self._last_seen = self.clock()
            stream = self._streams.get(key)
            return None if stream is None else stream.view()

    def running(self) -> list[str]:
        """The names of the sources whose streams have not ended."""
        with self._lock:
            return [s.source.name for s in self._streams.values() if not s.phase.finished]

    def rgb(self, key: str, frame: LiveFrame) -> np.ndarray:
        """A frame of a stream as RGB, converted once (here, never on the stream's thread)."""
        with self._lock:
            stream = self._streams.get(key)
            cached = None if stream is None else stream.rgb
        if cached is None or cached[0] != frame.index:
            cached = (frame.index, frame.rgb())
            with self._lock:
                if stream is not None:
                    stream.rgb = cached
        return cached[1]

    def remove(self, key: str, reason: str = "removed") -> None:
        """Ask one stream to end (returns at once); the others go on."""
        with self._lock:
            stream = self._streams.get(key)
            if stream is None or stream.phase.finished:
                return
            stream.stop_reason = stream.stop_reason or reason
            stream.phase = Phase.STOPPING
            job = stream.job
        if job is not None:
            job.stop(reason)

    def stop(self, reason: str = "stopped") -> None:
        """Ask every stream to end (returns at once; `wait` for them)."""
        super().stop(reason)
        with self._lock:
            keys = list(self._streams)
        for key in keys:
            self.remove(key, reason)
        self._end_if_idle()

    def forget(self, key: str) -> None:
        """Drop an ended stream's panel and its files."""
        with self._lock:
            stream = self._streams.get(key)
            if stream is None or not stream.phase.finished:
                return
            del self._streams[key]
        shutil.rmtree(stream.folder, ignore_errors=True)

    def discard(self) -> None:
        """`stop`, and remove the session's files once every stream has ended."""
        with self._lock:
            self._discard = True
        self.stop()
        if self.finished:  # else the session's thread removes them when it closes
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- the streams' side

    def _on_frame(self, key: str, frame: LiveFrame) -> None:
        record = frame.record
        with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                return
            stream.frame = frame
            stream.records.append(record)
            while stream.records and stream.records[0]["time"] < record["time"] - WINDOW_S:
                stream.records.popleft()
            if stream.phase == Phase.STARTING:
                stream.phase = Phase.RUNNING
        self._progressed()

    def _on_event(self, key: str, event: LiveEvent) -> None:
        if event.kind == "failed":
            return  # the stream's outcome says it, in its status line
        with self._lock:
            stream = self._streams.get(key)
        if stream is None:
            return
        if stream.source.visitor and event.kind == "gave-up":
            log.warning("a visitor's live source gave up: %s", event.message)
            event = LiveEvent(event.kind, f"the source did not come back: {VISITOR_FAILURE}")
        with self._lock:
            stream.events.append(LiveEvent(event.kind, stream.source.redact(event.message)))
            if event.kind == "opened" and stream.phase == Phase.STARTING:
                stream.phase = Phase.RUNNING

    def _on_retry(self, notice: RetryNotice) -> None:
        """A request failed and is retried: one line in every running stream's panel when
        an outage begins."""
        if not self._note_outage(notice):
            return
        with self._lock:
            keys = [key for key, stream in self._streams.items() if not stream.phase.finished]
        event = LiveEvent("server", f"the server is not answering ({notice.problem}); retrying")
        for key in keys:
            self._on_event(key, event)

    def _on_end(self, key: str, outcome: StreamOutcome) -> None:
        with self._lock:
            stream = self._streams.get(key)
        if stream is None:
            return
        message = None
        if outcome.error is not None and stream.stop_reason is None:  # not just stopped
            message = failure_of(outcome.error).message
            if stream.source.visitor and isinstance(outcome.error, SourceError):
                log.warning("a visitor's live source failed: %s", outcome.error)
                message = VISITOR_FAILURE
        with self._lock:
            stream.result = outcome.result
            stream.error = stream.source.redact(message) if message else None
            stream.phase = Phase.FAILED if message else Phase.ENDED
        self.slots.release()
        self._end_if_idle()

    def _end_if_idle(self) -> None:
        """The session ends once no stream runs (after at least one, or a stop)."""
        with self._lock:
            idle = all(s.phase.finished for s in self._streams.values())
            if idle and (self._streams or self._phase is Phase.STOPPING):
                self._phase = Phase.ENDED
                self._lock.notify_all()

    def _run(self) -> None:
        """Stop every stream when the page has not asked for them within the lease; once
        every stream has ended, close the server connection (and the files of a discarded
        session)."""
        while True:
            with self._lock:
                if self._phase.finished:
                    discard = self._discard
                    break
                self._lock.wait(min(5.0, self.lease_s / 4))
                lapsed = self.clock() - self._last_seen > self.lease_s
            if lapsed:
                self.stop("the page was closed")
        self.engine.server.close()
        if discard:
            shutil.rmtree(self.folder, ignore_errors=True)
