"""Many live sources explained by one process, sharing one server connection.

`gradcam-video` with several live sources and any program watching several cameras use it::

    from gradcam_client.live.streams import LiveStreams

    server = GradcamServer("localhost:8001", "efficientnet-lite0")
    say = lambda name, event: print(name, event.message)
    with LiveStreams(server, max_in_flight=8, on_event=say) as streams:
        streams.add("door", "rtsp://door.local/stream1", output="door.mp4")
        streams.add("yard", "udp://127.0.0.1:5001", predictions="yard.jsonl")
        ...
        streams.stats()             # {"door": LiveStats, "yard": LiveStats}
        streams.total()             # all streams together
        streams.remove("yard")      # stops it; its outcome (result or error)
        outcomes = streams.wait()   # until every stream has ended

Each stream is a `LiveJob` on its own threads (a source that fails, stalls or reconnects holds
up nothing but itself) with its own recording, predictions and re-stream. All of them send
over the one `GradcamServer` (one gRPC channel per server), so Triton batches frames of
different streams together, and share `max_in_flight` request slots handed out in turn
(`FairShare`). Under overload each stream stays live: it waits for its turn with only its
newest frame (a newer one replaces it), the server drops requests that waited past
`LiveSettings.queue_timeout`, and everything not explained is counted as skipped, stream by
stream. A stream that cannot be opened, or fails later, ends alone: its outcome holds the
error, the recording it made so far stays.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradcam_client.errors import GradcamError, InputError
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.live.data import (
    LATENCY_WINDOW,
    LiveEvent,
    LiveFrame,
    LiveResult,
    LiveSettings,
    LiveStats,
)
from gradcam_client.live.job import LiveJob
from gradcam_client.live.share import FairShare
from gradcam_client.live.source_guard import SourceGuard
from gradcam_client.remote.server import GradcamServer

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A stream's name: it goes into file names (``out-NAME.mp4``)."""

DEFAULT_IN_FLIGHT = 8
"""Requests in flight over all streams by default: enough for Triton to batch across streams
(measured on 2 CPU cores: 4 held fewer streams than 8, bench/live_scale.py), few enough that
a frame waits at most a few batches."""


def check_name(name: str) -> str:
    """`name` if it can name a stream, else `InputError` saying why."""
    if not STREAM_NAME.match(name):
        raise InputError(
            f"a stream name is 1-64 letters, digits, '.', '_' or '-' (starting with a letter "
            f"or digit); {name!r} is not"
        )
    return name


@dataclass(frozen=True)
class StreamOutcome:
    """How one stream ended: its `LiveResult`, or the error that ended it."""

    name: str
    address: str
    result: LiveResult | None = None
    error: GradcamError | None = None

    @property
    def message(self) -> str:
        """One line: how it ended and its counts, or what went wrong."""
        if self.error is not None:
            notes = "; ".join(getattr(self.error, "__notes__", []))
            return f"{self.error}" + (f" ({notes})" if notes else "")
        assert self.result is not None
        return f"{self.result.ended}; {self.result.stats.summary()}"


class _Stream:
    """One stream: its job, its thread and, once over, its outcome."""

    def __init__(
        self, name: str, job: LiveJob, on_end: Callable[[_Stream, StreamOutcome], None]
    ) -> None:
        self.name = name
        self.job = job
        self.on_end = on_end
        self.outcome: StreamOutcome | None = None
        self.thread = threading.Thread(target=self._run, name=f"live-{name}", daemon=True)

    def _run(self) -> None:
        address = self.job.address
        try:
            outcome = StreamOutcome(self.name, address, result=self.job.run())
        except GradcamError as error:
            outcome = StreamOutcome(self.name, address, error=error)
        except Exception as error:  # one stream's fault ends that stream only
            failure = GradcamError(f"unexpected {type(error).__name__}: {error}")
            outcome = StreamOutcome(self.name, address, error=failure)
        self.on_end(self, outcome)


class LiveStreams:
    """Live streams explained side by side; `add` and `remove` them while it runs.

    settings / live: what every stream is explained with (`JobSettings`, `LiveSettings`);
        unless `live` says otherwise, a stream sends one frame a request with at most two
        requests in flight of its own, and keeps one frame waiting (latest frame wins).
    max_in_flight: requests in flight over all streams (the `FairShare`). The server's own
        cap (`GradcamServer(max_in_flight=...)`) should be at least this.
    on_frame(name, frame) / on_event(name, event): every composed frame and event of every
        stream, from that stream's thread. A stream that fails reports a "failed" event.
    on_end(name, outcome): each stream's outcome once it has ended, from its thread.
    """

    def __init__(
        self,
        server: GradcamServer,
        settings: JobSettings | None = None,
        live: LiveSettings | None = None,
        *,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
        on_frame: Callable[[str, LiveFrame], None] | None = None,
        on_event: Callable[[str, LiveEvent], None] | None = None,
        on_end: Callable[[str, StreamOutcome], None] | None = None,
    ) -> None:
        self.server = server
        self.settings = settings or JobSettings()
        live = live or LiveSettings()
        self.live = dataclasses.replace(
            live,
            batch_size=live.batch_size or 1,
            max_in_flight=live.max_in_flight or 2,
            buffer=live.buffer or 1,
        )
        self.share = FairShare(max_in_flight)
        self.on_frame = on_frame
        self.on_event = on_event or (lambda name, event: None)
        self.on_end = on_end or (lambda name, outcome: None)
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)

    def add(
        self,
        name: str,
        source: str,
        output: str | Path | None = None,
        *,
        predictions: str | Path | None = None,
        restream: str | None = None,
        guard: SourceGuard | None = None,
    ) -> LiveJob:
        """Start explaining `source` as stream `name` (its own recording, predictions and
        re-stream, each optional); returns its job. `guard` checks this stream's address (one
        a stranger typed) in place of the streams' own `live.guard`. `InputError` for a name
        in use or bad settings; a source that cannot be opened fails later, in its outcome."""
        check_name(name)
        live = dataclasses.replace(self.live, restream=restream, guard=guard or self.live.guard)
        job = LiveJob(
            self.server,
            source,
            output,
            self.settings,
            live,
            predictions=predictions,
            on_frame=None if self.on_frame is None else self._frame_hook(name),
            on_event=self._event_hook(name),
            share=self.share,
        )
        with self._lock:
            if name in self._streams and self._streams[name].outcome is None:
                raise InputError(f"a stream named {name!r} is running already")
            stream = self._streams[name] = _Stream(name, job, self._ended_stream)
        stream.thread.start()
        return job

    def _frame_hook(self, name: str) -> Callable[[LiveFrame], None]:
        def hook(frame: LiveFrame) -> None:
            assert self.on_frame is not None
            self.on_frame(name, frame)

        return hook

    def _event_hook(self, name: str) -> Callable[[LiveEvent], None]:
        def hook(event: LiveEvent) -> None:
            self.on_event(name, event)

        return hook

    def _ended_stream(self, stream: _Stream, outcome: StreamOutcome) -> None:
        if outcome.error is not None:
            self.on_event(stream.name, LiveEvent("failed", outcome.message))
        with self._ended:
            stream.outcome = outcome
            self._ended.notify_all()
        self.on_end(stream.name, outcome)

    def remove(self, name: str, wait: float = 30.0) -> StreamOutcome:
        """Stop stream `name` and forget it; its outcome (its files stay)."""
        with self._lock:
            stream = self._streams.get(name)
        if stream is None:
            raise InputError(f"no stream named {name!r}")
        stream.job.stop(f"removed ({name})")
        stream.thread.join(wait)
        with self._lock:
            self._streams.pop(name, None)
        return stream.outcome or StreamOutcome(
            name, stream.job.address, error=GradcamError(f"stream {name!r} did not end in time")
        )

    @property
    def names(self) -> list[str]:
        """The streams, in the order they were added (running or ended, not removed)."""
        with self._lock:
            return list(self._streams)

    def running(self) -> list[str]:
        """The streams still running."""
        with self._lock:
            return [name for name, s in self._streams.items() if s.thread.is_alive()]

    def stats(self) -> dict[str, LiveStats]:
        """Each stream's counters so far."""
        with self._lock:
            streams = list(self._streams.values())
        return {stream.name: stream.job.stats for stream in streams}

    def total(self) -> LiveStats:
        """All streams' counters added up; latency over the recent frames of all of them."""
        with self._lock:
            jobs = [stream.job for stream in self._streams.values()]
        each = [job.stats for job in jobs]
        recent = [job.latencies(LATENCY_WINDOW) for job in jobs]
        latencies = np.concatenate(recent) if recent else np.zeros(0)
        p50 = p95 = None
        if latencies.size:
            p50, p95 = (float(v) for v in np.percentile(latencies, [50, 95]))
        return LiveStats(
            seconds=max((s.seconds for s in each), default=0.0),
            received=sum(s.received for s in each),
            processed=sum(s.processed for s in each),
            skipped=sum(s.skipped for s in each),
            corrupt=sum(s.corrupt for s in each),
            reconnects=sum(s.reconnects for s in each),
            latency_p50=p50,
            latency_p95=p95,
            restreamed=sum(s.restreamed for s in each),
            turned_away=sum(s.turned_away for s in each),
        )

    def stop(self, reason: str = "stopped") -> None:
        """Stop every stream (safe from any thread and from signal handlers)."""
        with self._lock:
            jobs = [stream.job for stream in self._streams.values()]
        for job in jobs:
            job.stop(reason)

    def wait(self, timeout: float | None = None) -> dict[str, StreamOutcome]:
        """Wait until every stream has ended (or `timeout`); the outcomes of those ended."""
        with self._ended:
            self._ended.wait_for(
                lambda: all(s.outcome is not None for s in self._streams.values()), timeout
            )
        return self.outcomes()

    def outcomes(self) -> dict[str, StreamOutcome]:
        """The outcomes of the streams that have ended, by name."""
        with self._lock:
            return {n: s.outcome for n, s in self._streams.items() if s.outcome is not None}

    def __enter__(self) -> LiveStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.wait(60)
