"""A visitor's camera explained frame by frame, the newest frame first.

`CameraRun` knows nothing of WebRTC or Streamlit: frames are `offer`ed to it as they arrive
(RGB arrays), one worker thread explains them on the server one at a time and composes the
overlay, records it (a fragmented MP4: it plays up to its last second whatever ends the run)
and writes its predictions (JSON lines, flushed one by one). A frame that arrives while the
server is busy replaces the one waiting: it is dropped and counted, never queued, so the
overlay is never further behind the camera than one request. The page reads `view` and
`overlay`; a camera that stops sending frames (the tab was closed) ends the run by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gradcam_client.errors import GradcamError, InputError
from gradcam_client.jobs.file_stream import resize_for_model
from gradcam_client.jobs.results import PredictionLog, frame_record
from gradcam_client.jobs.settings import JobSettings, select_panels
from gradcam_client.jobs.targets import TargetChoice
from gradcam_client.live.data import LATENCY_WINDOW, Latencies
from gradcam_client.live.output import TIME_BASE, recording_info
from gradcam_client.media.writer import VideoWriter
from gradcam_client.render.normalize import Scope
from gradcam_client.render.renderer import MapRenderer, explanation, frame_outputs
from gradcam_dashboard.background import BackgroundTask, Phase, ServerFactory

RECORDING = "camera.mp4"
PREDICTIONS = "predictions.jsonl"

IDLE_S = 10.0
"""A camera that sends no frame for this long is gone (tab closed, connection lost)."""

NOMINAL_FPS = 30.0
"""The recording's declared rate; each frame keeps its own arrival time."""


@dataclass(frozen=True)
class CameraView:
    """What the page shows of a camera run."""

    phase: Phase
    received: int  # frames the camera sent
    explained: int  # frames explained and composed
    dropped: int  # frames that arrived while the server was busy
    latency_p50: float | None  # seconds from arrival to composed overlay
    latency_p95: float | None
    latency_last: float | None
    class_name: str | None  # the newest explained frame's top class
    score: float | None
    ended: str | None = None  # why it ended
    error: str | None = None  # why it failed (one line)
    outage: str | None = None  # the server is not answering (being retried)

    @property
    def finished(self) -> bool:
        return self.phase.finished


def fit_within(image: np.ndarray, max_size: tuple[int, int] | None) -> np.ndarray:
    """`image` scaled down (keeping its shape) so that its long and short sides fit
    `max_size` (long, short); unchanged if it already does."""
    if max_size is None:
        return image
    height, width = image.shape[:2]
    long_side, short_side = max(width, height), min(width, height)
    scale = min(1.0, max_size[0] / long_side, max_size[1] / short_side)
    if scale >= 1.0:
        return image
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def check_live_settings(settings: JobSettings, class_names: tuple[str, ...]) -> int:
    """The target class index to send for every frame; `InputError` for settings that need
    the whole video first."""
    target = TargetChoice.parse(settings.target, class_names)
    if target.needs_first_pass:
        raise InputError("a camera has no end to choose one class for the whole video from")
    if Scope.parse(settings.scope) is Scope.CLIP:
        raise InputError("a camera has no end to normalise by the clip's maximum")
    return target.request_value()


class CameraRun(BackgroundTask):
    """One camera's run: `start`, `offer` frames, `stop`. See the module docstring.

    make_server: the server client (made on the worker thread, closed when the run ends).
    folder: where the recording and the predictions go (kept after the run).
    max_size: frames larger than this (long, short) are scaled down to fit.
    max_bytes: the run ends once its files hold this many bytes.
    duration: the run ends after this many seconds.
    """

    thread_name = "camera-run"
    outage_clears_s = 0.0  # one frame at a time: an answer means the server is back

    def __init__(
        self,
        make_server: ServerFactory,
        settings: JobSettings,
        folder: Path,
        *,
        max_size: tuple[int, int] | None = None,
        max_bytes: int | None = None,
        duration: float | None = None,
        idle_s: float = IDLE_S,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(on_end=on_end)
        self.make_server = make_server
        self.settings = settings
        self.folder = folder
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.duration = duration
        self.idle_s = idle_s
        self.recording = folder / RECORDING
        self.predictions = folder / PREDICTIONS
        self._pending: tuple[np.ndarray, float] | None = None
        self._last_arrival = self.started
        self._received = 0
        self._dropped = 0
        self._explained = 0
        self._latencies = Latencies()
        self._last_latency: float | None = None
        self._record: dict[str, Any] | None = None
        self._overlay: np.ndarray | None = None
        self._overlay_index = -1
        self._writer: VideoWriter | None = None
        self._log: PredictionLog | None = None

    # -- the camera's and the page's side

    def offer(self, image: np.ndarray, arrived: float | None = None, superseded: int = 0) -> None:
        """A frame from the camera (RGB uint8): it replaces the one waiting, if any.

        superseded: frames that arrived just before it, never offered (dropped too).
        """
        arrived = self.clock() if arrived is None else arrived
        with self._lock:
            self._received += 1 + superseded
            self._dropped += superseded
            self._last_arrival = arrived
            if self.cancel.is_set():
                self._dropped += 1
                return
            if self._pending is not None:
                self._dropped += 1
            self._pending = (image, arrived)
            self._lock.notify_all()

    def overlay(self) -> tuple[int, np.ndarray] | None:
        """The newest composed overlay (RGB) and its number among the explained frames."""
        with self._lock:
            return None if self._overlay is None else (self._overlay_index, self._overlay)

    def view(self) -> CameraView:
        with self._lock:
            outage = self.outage
            p50, p95 = self._latencies.percentiles(LATENCY_WINDOW)
            record = self._record
            return CameraView(
                phase=self._phase,
                received=self._received,
                explained=self._explained,
                dropped=self._dropped,
                latency_p50=p50,
                latency_p95=p95,
                latency_last=self._last_latency,
                class_name=record["class_name"] if record else None,
                score=record["score"] if record else None,
                ended=self.ended,
                error=self.failure.message if self.failure else None,
                outage=f"the server is not answering ({outage.problem}); retrying"
                if outage
                else None,
            )

    # -- the worker

    def _next(self) -> tuple[np.ndarray, float] | None:
        """The newest frame, once one arrives; None when the run is to end."""
        with self._lock:
            while self._pending is None and not self.cancel.is_set():
                idle = self.clock() - self._last_arrival
                if idle >= self.idle_s:
                    self.stop("the camera stopped sending frames")
                elif self.duration is not None and self.clock() - self.started >= self.duration:
                    self.stop("the longest run was reached")
                else:
                    self._lock.wait(min(0.5, self.idle_s - idle))
            if self.cancel.is_set():
                return None
            pending, self._pending = self._pending, None
            return pending

    def _run(self) -> None:
        server = self.make_server(self._on_retry)
        try:
            info = server.model_info()
            panels = select_panels(info, self.settings)
            renderer = MapRenderer(panels, self.settings, info.class_names)
            target = np.array([check_live_settings(self.settings, info.class_names)], np.int32)
            self.folder.mkdir(parents=True, exist_ok=True)
            self._log = PredictionLog(self.predictions, direct=True)
            while (item := self._next()) is not None:
                image, arrived = item
                image = fit_within(image, self.max_size)
                thumbnail = resize_for_model(image, info)[None]
                result = server.infer(thumbnail, target, self.cancel)  # cancelled by a stop
                self._progressed()
                (out,) = frame_outputs(result)
                maps, class_index, probability = explanation(out)
                picture = renderer.render(image, maps, class_index, probability)
                self._record_frame(picture, arrived, out, info.class_names)
        finally:
            self._close_files()
            server.close()
            with self._lock:
                self.cancel.set()  # frames offered from now on are dropped
                if self._pending is not None:
                    self._dropped += 1
                    self._pending = None

    def _record_frame(
        self, picture: np.ndarray, arrived: float, out: Any, class_names: tuple[str, ...]
    ) -> None:
        now = self.clock()
        latency = now - arrived
        seconds = arrived - self.started
        writer = self._open_writer(picture)
        width, height = writer.size or (0, 0)
        recorded = picture
        if picture.shape[:2] != (height, width):  # an odd size, or the camera changed it
            recorded = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
        writer.write(recorded, max(0, round(seconds / TIME_BASE)))
        record = frame_record(
            self._explained,
            seconds,
            out.probabilities,
            out.class_index,
            class_names,
            self.settings.top_k,
        )
        record["latency_ms"] = round(1000 * latency, 1)
        assert self._log is not None
        self._log.write(record)
        with self._lock:
            self._latencies.add(latency)
            self._last_latency = latency
            self._record = record
            self._overlay = picture
            self._overlay_index = self._explained
            self._explained += 1
        if self.max_bytes is not None and self._bytes_written() >= self.max_bytes:
            self.stop(f"the recording reached its budget of {self.max_bytes / 2**20:.3g} MB")

    def _open_writer(self, picture: np.ndarray) -> VideoWriter:
        if self._writer is None:
            height, width = picture.shape[:2]
            size = (max(2, width // 2 * 2), max(2, height // 2 * 2))
            info = recording_info(self.recording, size[0], size[1], NOMINAL_FPS)
            self._writer = VideoWriter(
                self.recording,
                info,
                size=size,
                preset=self.settings.encoder_preset,
                crf=self.settings.crf,
                encoder=self.settings.encoder,
                threads=self.settings.encoder_threads,
                audio=False,
                fragmented=True,
            )
        return self._writer

    def _bytes_written(self) -> int:
        total = 0
        for path in (self.recording, self.predictions):
            try:
                total += path.stat().st_size
            except OSError:
                continue
        return total

    def _close_files(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except GradcamError:
                self._writer.abort()  # fragmented: what was written stays
            self._writer = None
        if self._log is not None:
            self._log.close()
            self._log = None
