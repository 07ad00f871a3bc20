"""A run in a background thread: the page polls its progress, can stop it, and reads how it
ended (its result, or what failed, how many frames were done and what was made so far).

The page's script never waits for the server, so it keeps redrawing (progress, a server that
is not answering, the load panel) however the server behaves.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradcam_client.errors import Cancelled, GradcamError, ServerUnavailable
from gradcam_client.jobs.file_job import partial_video_path
from gradcam_client.remote.server import GradcamServer, RetryNotice
from gradcam_dashboard import jobs
from gradcam_dashboard.jobs import RunOutput, RunRequest

ServerFactory = Callable[[Callable[[RetryNotice], None]], GradcamServer]
"""Makes the run's client, given the function that hears of its failed requests."""

Finisher = Callable[[RunOutput, GradcamServer], None]
"""Work after the frames are done (e.g. pictures for the frame inspector), in the thread."""

OUTAGE_CLEARS_S = 1.0
"""An outage is over once frames advance this long after the last failed request (answers
received before the failure may still be composed just after it)."""


@dataclass(frozen=True)
class Outage:
    """The server stopped answering during the run: since when, and until when it is retried
    (wall-clock seconds), and the last error seen."""

    since: float
    until: float
    problem: str


@dataclass(frozen=True)
class Snapshot:
    """Where a run is, for the page to draw."""

    phase: str  # "starting", "first pass", "frames", "finishing", "done", "failed", "stopped"
    done: int  # frames of the current pass
    total: int | None
    elapsed: float  # seconds since the run started
    pass_elapsed: float  # seconds since the current pass started
    outage: Outage | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "failed", "stopped")


@dataclass(frozen=True)
class Failure:
    """Why a run failed, how far it got, and what it made before it failed."""

    message: str
    frames_done: int
    total: int | None
    server_lost: bool
    video: Path | None = None  # the heat-map video of the frames done
    predictions: Path | None = None  # their predictions (JSONL)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for line in file if line.strip())
    except OSError:
        return 0


class BackgroundRun:
    """One run of `jobs.run` in a daemon thread, with progress, an outage notice and stop."""

    def __init__(
        self,
        make_server: ServerFactory,
        request: RunRequest,
        source: Path,
        folder: Path,
        is_image: bool,
        max_frames: int | None = None,
        finish: Finisher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_server = make_server
        self.request = request
        self.source = source
        self.folder = folder
        self.is_image = is_image
        self.max_frames = max_frames
        self.finish = finish
        self.clock = clock
        self.cancel = threading.Event()
        self.result: RunOutput | None = None
        self.failure: Failure | None = None
        self._lock = threading.Lock()
        self._phase = "starting"
        self._done = 0
        self._total: int | None = None
        self._started = clock()
        self._pass_started = self._started
        self._last_progress = self._started
        self._outage: Outage | None = None
        self._last_notice = 0.0
        self._over_limit = False
        self._thread = threading.Thread(target=self._work, name="dashboard-run", daemon=True)

    # -- the page's side

    def start(self) -> BackgroundRun:
        self._thread.start()
        return self

    def snapshot(self) -> Snapshot:
        with self._lock:
            outage = self._outage if self._in_outage() else None
            now = self.clock()
            return Snapshot(
                self._phase,
                self._done,
                self._total,
                now - self._started,
                now - self._pass_started,
                outage,
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the run and remove its files (waits for the thread up to `timeout` s)."""
        self.cancel.set()
        self._thread.join(timeout)
        shutil.rmtree(self.folder, ignore_errors=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread's side

    def _in_outage(self) -> bool:
        return self._outage is not None and (
            self._last_progress <= self._last_notice + OUTAGE_CLEARS_S
        )

    def _on_retry(self, notice: RetryNotice) -> None:
        now = self.clock()
        with self._lock:
            if not self._in_outage():
                until = time.time() + (notice.give_up_at - now)
                self._outage = Outage(time.time(), until, notice.problem)
            else:
                assert self._outage is not None
                self._outage = Outage(self._outage.since, self._outage.until, notice.problem)
            self._last_notice = now

    def _progress(self, phase: str) -> Callable[[int, int | None], None]:
        def report(done: int, total: int | None) -> None:
            with self._lock:
                now = self.clock()
                if phase != self._phase or done < self._done:  # a new pass
                    self._pass_started = now
                self._phase, self._done, self._total = phase, done, total
                self._last_progress = now
            if self.max_frames is not None and done > self.max_frames:
                self._over_limit = True
                self.cancel.set()

        return report

    def _set_phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase

    def _work(self) -> None:
        server = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            server = self.make_server(self._on_retry)
            result = jobs.run(
                server,
                self.request,
                self.source,
                self.folder,
                self.is_image,
                self._progress("frames"),
                first_pass_progress=self._progress("first pass"),
                cancel=self.cancel,
                keep_partial=True,
            )
            self._set_phase("finishing")
            if self.finish is not None:
                self.finish(result, server)
            self.result = result
            self._set_phase("done")
        except Exception as error:
            self._ended_by(error, "run")
        finally:
            if server is not None:
                server.close()

    def _ended_by(self, error: Exception, what: str) -> None:
        """How a run that raised `error` ended: stopped, over the frame limit, or failed with
        one line for the page (`what` names the run in the limit's message)."""
        if isinstance(error, Cancelled) and not self._over_limit:
            self._set_phase("stopped")
        elif isinstance(error, Cancelled):
            self._fail(
                f"The video has more than {self.max_frames} frames, the most this page "
                f"runs; the {what} was stopped.",
                server_lost=False,
            )
        elif isinstance(error, GradcamError):
            self._fail(str(error), server_lost=isinstance(error, ServerUnavailable))
        else:  # unforeseen: still one line for the page
            self._fail(f"unexpected {type(error).__name__}: {error}", server_lost=False)

    def _fail(self, message: str, server_lost: bool) -> None:
        output = self.folder / jobs.output_name(self.is_image, self.source)
        video = partial_video_path(output)
        predictions = self.folder / "predictions.jsonl.partial"
        done = _count_lines(predictions)
        with self._lock:
            total = self._total
        self.failure = Failure(
            message=message,
            frames_done=done,
            total=total,
            server_lost=server_lost,
            video=video if video.is_file() else None,
            predictions=predictions if done else None,
        )
        self._set_phase("failed")
