"""A run over the frames of one file in the background: the page polls its progress, can
stop it, and reads how it ended (its result, or what failed, how many frames were done and
what was made so far). `FramesRun` is what the file run (`FileRun`) and the comparison share.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradcam_client.jobs.file_job import partial_video_path
from gradcam_client.remote.server import GradcamServer
from gradcam_dashboard import jobs
from gradcam_dashboard.background import BackgroundTask, Failure, Outage, Phase, ServerFactory
from gradcam_dashboard.jobs import RunOutput, RunRequest

Finisher = Callable[[RunOutput, GradcamServer], None]
"""Work after the frames are done (e.g. pictures for the frame inspector), in the thread."""


@dataclass(frozen=True)
class Snapshot:
    """Where a run is, for the page to draw."""

    phase: Phase
    done: int  # frames of the current pass
    total: int | None
    pass_elapsed: float  # seconds since the current pass started
    outage: Outage | None = None

    @property
    def finished(self) -> bool:
        return self.phase.finished

    def progress_bar(self) -> tuple[float, str]:
        """The progress bar's fraction and text."""
        if self.phase is Phase.STARTING:
            return 0.0, "Starting..."
        if self.phase is Phase.FINISHING:
            return 1.0, "Finishing..."
        fraction = jobs.progress_fraction(self.done, self.total)
        what = "Whole-clip pass: frame" if self.phase is Phase.FIRST_PASS else "Frame"
        return fraction, jobs.progress_text(self.done, self.total, self.pass_elapsed, what)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for line in file if line.strip())
    except OSError:
        return 0


class FramesRun(BackgroundTask):
    """A run over the frames of `source` into `folder`, with progress, at most `max_frames`
    frames, and its folder removed when it is stopped."""

    thread_name = "dashboard-run"
    what = "run"
    """What the page calls it (in the frame limit's message)."""

    def __init__(
        self,
        source: Path,
        folder: Path,
        is_image: bool,
        max_frames: int | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.folder = folder
        self.is_image = is_image
        self.max_frames = max_frames
        self._done = 0
        self._total: int | None = None
        self._pass_started = self.started
        self._over_limit = False

    def snapshot(self) -> Snapshot:
        with self._lock:
            elapsed = self.clock() - self._pass_started
            return Snapshot(self._phase, self._done, self._total, elapsed, self.outage)

    def stop(self, reason: str = "stopped", timeout: float = 10.0) -> None:
        """Stop the run and remove its files (waits for the thread up to `timeout` s)."""
        super().stop(reason)
        self.wait(timeout)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _progress(self, phase: Phase) -> Callable[[int, int | None], None]:
        def report(done: int, total: int | None) -> None:
            with self._lock:
                if phase != self._phase or done < self._done:  # a new pass
                    self._pass_started = self.clock()
                self._progressed(phase)
                self._done, self._total = done, total
            if self.max_frames is not None and done > self.max_frames:
                self._over_limit = True
                self.cancel.set()

        return report

    def _ended_by(self, error: Exception) -> Failure | None:
        failure = super()._ended_by(error)
        if self._over_limit:
            failure = Failure(
                f"The video has more than {self.max_frames} frames, the most this page runs; "
                f"the {self.what} was stopped."
            )
        if failure is None:
            return None
        with self._lock:
            return dataclasses.replace(failure, frames_done=self._done, total=self._total)


class FileRun(FramesRun):
    """One run of `jobs.run` (a heat-map video, or picture, and its predictions); `result` is
    its `RunOutput` once done, `failure` says what was made before a failure."""

    def __init__(
        self,
        make_server: ServerFactory,
        request: RunRequest,
        source: Path,
        folder: Path,
        is_image: bool,
        max_frames: int | None = None,
        finish: Finisher | None = None,
    ) -> None:
        super().__init__(source, folder, is_image, max_frames)
        self.make_server = make_server
        self.request = request
        self.finish = finish
        self.result: RunOutput | None = None

    def _run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        server = self.make_server(self._on_retry)
        try:
            result = jobs.run(
                server,
                self.request,
                self.source,
                self.folder,
                self.is_image,
                self._progress(Phase.RUNNING),
                first_pass_progress=self._progress(Phase.FIRST_PASS),
                cancel=self.cancel,
                keep_partial=True,
            )
            self._progressed(Phase.FINISHING)
            if self.finish is not None:
                self.finish(result, server)
            self.result = result
        finally:
            server.close()

    def _ended_by(self, error: Exception) -> Failure | None:
        """The failure, with the frames written before it (their video and predictions)."""
        failure = super()._ended_by(error)
        if failure is None:
            return None
        video = partial_video_path(self.folder / jobs.output_name(self.is_image, self.source))
        predictions = self.folder / "predictions.jsonl.partial"
        done = _count_lines(predictions)
        return dataclasses.replace(
            failure,
            frames_done=done,
            video=video if video.is_file() else None,
            predictions=predictions if done else None,
        )
