"""The stream engine that file jobs, comparisons, live runs and the dashboard share.

Two parts, each on threads of its own:

- `RequestLoop`: a dispatcher thread takes batches of frames (from a file's decoder or a live
  source) whenever a request slot is free, sends them, and the calling thread receives the
  answers in the order they were sent. At most `max_in_flight` batches are sent and not yet
  consumed. One cancellation for every job: `abort` (an event the caller sets) ends the loop
  at once with `Cancelled`; `stop()` ends it gracefully (no new requests; those in flight are
  awaited for `grace` seconds, then cancelled and reported as lost); a failed request or a
  failure in `take` ends it with that error after the answers that came before it.
- `RenderStages`: composes frames on one thread and delivers them (encodes, records,
  re-streams, reports) on another, in order, behind bounded queues, so that composing the
  next frame overlaps with encoding the last one (FFmpeg and OpenCV release the GIL).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gradcam_client.errors import Cancelled
from gradcam_client.remote.server import BatchResult, FramesTurnedAway, RequestCancelled

Item = TypeVar("Item")

POLL_S = 0.05
"""How often waiting threads look whether the loop was stopped or aborted."""

STOP_GRACE_S = 2.0
"""After a graceful stop, how long requests already sent may take before they are cancelled."""

Send = Callable[[ThreadPoolExecutor, list[Item], threading.Event], list[Future[BatchResult]]]
"""Submits the requests of one batch to the pool; the event cancels them (ends retries)."""


@dataclass
class Answer(Generic[Item]):
    """One batch and the server's answers to its requests, in the order they were sent.

    `results` is None when the requests were turned away by a busy server (`turned_away`) or
    cancelled at a graceful stop (the frames are lost)."""

    batch: list[Item]
    results: list[BatchResult] | None
    turned_away: bool = False


class RequestLoop(Generic[Item]):
    """Ordered requests with a bounded number in flight (see the module docstring).

    take: called on the dispatcher thread with the stop event once a request slot is free;
        returns the next batch, or [] when there is nothing more (the loop then ends).
    send: submits a batch's requests (see `Send`).
    """

    def __init__(
        self,
        take: Callable[[threading.Event], list[Item]],
        send: Send,
        max_in_flight: int,
        *,
        requests_per_batch: int = 1,
        abort: threading.Event | None = None,
        grace: float = STOP_GRACE_S,
        name: str = "infer",
    ) -> None:
        self._take, self._send = take, send
        self.max_in_flight = max_in_flight
        self.requests_per_batch = requests_per_batch
        self.abort = abort or threading.Event()
        self.grace = grace
        self.name = name
        self.stopping = threading.Event()  # no new requests
        self.cancel = threading.Event()  # requests in flight end their retries
        self._stopped_at: float | None = None

    def stop(self) -> None:
        """End gracefully, from any thread: no new requests, the ones in flight awaited."""
        if not self.stopping.is_set():
            self._stopped_at = time.monotonic()
            self.stopping.set()

    def _halt(self) -> None:
        self.stop()
        self.cancel.set()

    def answers(self) -> Iterator[Answer[Item]]:
        """Run the loop; yield each batch's `Answer` in order. A batch's request slot is
        given back once the caller asks for the next answer."""
        ordered: queue.Queue = queue.Queue()
        slots = threading.Semaphore(self.max_in_flight)
        pool = ThreadPoolExecutor(
            self.max_in_flight * self.requests_per_batch, thread_name_prefix=self.name
        )
        dispatcher = threading.Thread(
            target=self._dispatch, args=(ordered, pool, slots), name=f"{self.name}-dispatch"
        )
        dispatcher.daemon = True
        dispatcher.start()
        try:
            while (item := self._next(ordered)) is not None:
                if isinstance(item, BaseException):
                    raise item
                batch, futures = item
                try:
                    yield self._answer(batch, futures)
                except BaseException:
                    self._halt()  # before the slot is given back: nothing more is sent
                    raise
                finally:
                    slots.release()
        finally:
            self._halt()
            while dispatcher.is_alive():
                self._cancel_waiting(ordered)
                dispatcher.join(POLL_S)
            self._cancel_waiting(ordered)
            pool.shutdown(wait=True, cancel_futures=True)

    def _next(self, ordered: queue.Queue) -> Any:
        while True:
            self._check_abort()
            try:
                return ordered.get(timeout=POLL_S)
            except queue.Empty:
                continue

    def _check_abort(self) -> None:
        if self.abort.is_set():
            self._halt()
            raise Cancelled("the job was stopped")

    @staticmethod
    def _cancel_waiting(ordered: queue.Queue) -> None:
        """Drop the batches sent and not yet consumed (their requests are cancelled)."""
        while True:
            try:
                item = ordered.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):
                for future in item[1]:
                    future.cancel()

    def _answer(self, batch: list[Item], futures: list[Future[BatchResult]]) -> Answer[Item]:
        try:
            results = [self._result(future) for future in futures]
        except FramesTurnedAway:
            return Answer(batch, None, turned_away=True)
        if any(result is None for result in results):
            return Answer(batch, None)
        return Answer(batch, results)  # type: ignore[arg-type]

    def _result(self, future: Future[BatchResult]) -> BatchResult | None:
        """The answer; None for a request cancelled at a graceful stop."""
        while True:
            self._check_abort()
            try:
                return future.result(timeout=POLL_S)
            except TimeoutError:
                stopped = self._stopped_at
                if stopped is not None and time.monotonic() - stopped > self.grace:
                    self.cancel.set()
            except RequestCancelled:
                self._check_abort()
                if self.stopping.is_set():
                    return None
                raise

    def _dispatch(
        self, ordered: queue.Queue, pool: ThreadPoolExecutor, slots: threading.Semaphore
    ) -> None:
        """Send batches as slots free up; then None (or the failure) ends `ordered`."""
        try:
            while not self.stopping.is_set():
                if not slots.acquire(timeout=POLL_S):
                    continue
                if self.stopping.is_set():
                    break
                batch = self._take(self.stopping)
                if not batch:
                    break
                ordered.put((batch, self._send(pool, batch, self.cancel)))
        except BaseException as error:  # handed to the consuming thread
            ordered.put(error)
        finally:
            ordered.put(None)


class RenderStages:
    """Composes on one thread and delivers on another, in order (see the module docstring).

    compose: turns one queued item into what `deliver` takes; deliver: encodes, records or
    reports it (on a thread named `deliver_name`). At most `depth` items wait to be composed
    and `composed_depth` to be delivered. A failure in either stage is raised by the next
    `put` or by `raise_failure`.
    """

    def __init__(
        self,
        compose: Callable[..., Any],
        deliver: Callable[[Any], None],
        depth: int = 8,
        composed_depth: int = 2,
        deliver_name: str = "deliver",
    ) -> None:
        self._compose_item, self._deliver_item = compose, deliver
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._composed: queue.Queue = queue.Queue(maxsize=composed_depth)
        self.error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._compose, name="compose", daemon=True),
            threading.Thread(target=self._deliver, name=deliver_name, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _compose(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            try:
                self._composed.put(self._compose_item(*item))
            except BaseException as error:
                self.error = error
        self._composed.put(None)

    def _deliver(self) -> None:
        while (composed := self._composed.get()) is not None:
            if self.error is not None:
                continue
            try:
                self._deliver_item(composed)
            except BaseException as error:
                self.error = error

    def raise_failure(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, *item: Any) -> None:
        """Queue one item (the arguments of `compose`)."""
        self.raise_failure()
        self._queue.put(item)

    def join(self, drop: bool = False) -> None:
        """Wait until every queued item is delivered (or, with `drop`, dropped)."""
        if drop:
            self.error = self.error or Cancelled("stopped")
        self._queue.put(None)
        for thread in self._threads:
            thread.join()
