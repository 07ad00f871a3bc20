"""Explain a live source (a network stream or a camera) as it plays.

The library API of live runs; ``gradcam-video URL ...`` and the dashboard's Live mode use it::

    from gradcam_client.live.job import LiveJob, LiveSettings
    from gradcam_client.jobs.settings import JobSettings
    from gradcam_client.remote.server import GradcamServer

    server = GradcamServer("localhost:8001", "efficientnet-lite0")
    job = LiveJob(
        server,
        "udp://127.0.0.1:23456",           # any address FFmpeg opens, or /dev/video0
        output="live.mp4",                  # optional: fragmented MP4, plays after any stop
        predictions="live.jsonl",           # optional: one flushed JSON line per frame
        settings=JobSettings(),             # target, layers, methods, colours, batch size ...
        live=LiveSettings(restream="udp://127.0.0.1:5000"),  # time-outs, deadline, re-stream
        on_frame=lambda frame: show(frame.rgb(), frame.record, frame.stats),
        on_event=lambda event: print(event.message),
    )
    threading.Thread(target=job.run).start()   # run() blocks until the run ends
    ...
    job.stop()                                  # from any thread; run() returns soon after

`run` returns a `LiveResult` (why it ended, the final `LiveStats`, the files written) or raises
a `GradcamError` with a one-line message: `SourceError` for a source that cannot be opened
(unreachable, unknown protocol, no video stream, nothing arriving within the open time-out),
`InputError` for settings a live run cannot follow, `ServerError` for a server that stays
unavailable past its retry deadline. The files written before a failure stay usable.

How it keeps up: a reader thread decodes the source into a small buffer, and the stream engine
(`engine`, shared with file jobs) sends what is waiting with a bounded number of requests in
flight, then composes the answers in order on one thread while the frame before is recorded,
re-streamed and reported on another. In real time (automatic for live sources) a request
carries the newest frame and the buffer holds one: a newer frame replaces the one waiting
(latest frame wins), so the run never falls behind, even when several clients share a busy
server; every dropped frame is counted (`LiveStats.skipped`), and at the end
``received == processed + skipped``. Latency is measured from a frame's arrival (decoded) to
its composed frame.

`on_frame` and the budget checks run on the run's delivering thread; a slow `on_frame` slows
the run down (more frames are skipped), so hand the picture over and return. `on_event` runs
on the thread that raised the event.

Requests carry `LiveSettings.queue_timeout`: the server drops one that waited longer in its
queue (or refuses it when the queue is full), and its frames count as skipped
(`LiveStats.turned_away`). Several sources in one process: `live.streams.LiveStreams`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from av.video.reformatter import VideoReformatter

from gradcam_client.errors import Cancelled, GradcamError, InputError, OutputError
from gradcam_client.jobs.engine import RenderStages, RequestLoop
from gradcam_client.jobs.results import PredictionLog, frame_record
from gradcam_client.jobs.settings import JobSettings, composes_in_yuv, select_panels
from gradcam_client.jobs.targets import TargetChoice
from gradcam_client.live.data import (
    LATENCY_WINDOW,
    Latencies,
    LiveEvent,
    LiveFrame,
    LiveResult,
    LiveSettings,
    LiveStats,
)
from gradcam_client.live.output import TIME_BASE, Restream, recording_info, segment_path
from gradcam_client.live.share import FairShare
from gradcam_client.live.source import Arrival, LiveSource, SourceEvent, SourceInfo
from gradcam_client.media.frames import Frame
from gradcam_client.media.reader import Scalers
from gradcam_client.media.writer import VideoWriter, rgb_to_yuv420p
from gradcam_client.remote.server import BatchResult, GradcamServer
from gradcam_client.render.normalize import Scope
from gradcam_client.render.renderer import (
    FrameOutput,
    MapRenderer,
    encode,
    explanation,
    frame_outputs,
)

__all__ = [
    "LiveEvent",
    "LiveFrame",
    "LiveJob",
    "LiveResult",
    "LiveSettings",
    "LiveStats",
]


@dataclass
class _Segment:
    """What frames of one source segment are turned into."""

    size: tuple[int, int]  # even (width, height) of the composed frames
    start: float  # arrival (realtime) or stream time of its first frame
    writer: VideoWriter | None = None


class LiveJob:
    """One live run: `run` it (blocking), `stop` it from anywhere. See the module docstring.

    output: the recording (.mp4; later segments ``<stem>-2.mp4``, ...), or None.
    predictions: the JSON-lines file, or None.
    on_frame: called with each `LiveFrame`; on_event: with each `LiveEvent`.
    share: request slots shared with other streams of this client (see `live.streams`): a
        request is sent only with one of them, the newest waiting frames then.
    """

    def __init__(
        self,
        server: GradcamServer,
        source: str,
        output: str | Path | None = None,
        settings: JobSettings | None = None,
        live: LiveSettings | None = None,
        *,
        predictions: str | Path | None = None,
        on_frame: Callable[[LiveFrame], None] | None = None,
        on_event: Callable[[LiveEvent], None] | None = None,
        share: FairShare | None = None,
    ) -> None:
        self.server = server
        self.share = share
        self.address = source
        self.output = Path(output) if output else None
        if self.output is not None and self.output.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise OutputError("a live recording is an MP4; name an .mp4 output", self.output)
        self.settings = settings or JobSettings()
        self.live = live or LiveSettings()
        self.predictions_path = Path(predictions) if predictions else None
        self.on_frame = on_frame
        self.on_event = on_event or (lambda event: None)
        self.batch_size = self.live.batch_size or min(self.settings.batch_size, 4)
        self.max_in_flight = self.live.max_in_flight or min(self.settings.max_in_flight, 2)
        self._stop = threading.Event()
        self._ended = "stopped"
        self._loop: RequestLoop | None = None
        self._scalers = Scalers()
        self._restream_scaler = VideoReformatter()
        self._lock = threading.Lock()
        self._latencies = Latencies()
        self._processed = 0
        self._lost = 0  # frames whose request was cancelled at a stop
        self._turned_away = 0  # frames whose request the busy server refused or dropped
        self._shared = False  # the dispatcher holds a slot of the share
        self._started = time.monotonic()
        self._source: LiveSource | None = None
        self._restream: Restream | None = None
        self._segments: dict[int, _Segment] = {}
        self._recordings: list[Path] = []

    # -- control

    def stop(self, reason: str = "stopped") -> None:
        """End the run: no new frames are taken; those already sent are still composed.

        Safe from any thread and from signal handlers. While the source is still being
        opened, the run ends when the opening does (within the open time-out)."""
        if not self._stop.is_set():
            self._ended = reason
            self._stop.set()
            if self._loop is not None:
                self._loop.stop()
            if self._source is not None:
                self._source.stop()

    @property
    def source_info(self) -> SourceInfo | None:
        """What the source said when it was opened (None until then)."""
        return self._source.info if self._source is not None else None

    @property
    def stats(self) -> LiveStats:
        """The counters so far (safe from any thread)."""
        return self._stats(LATENCY_WINDOW)

    def _stats(self, window: int | None) -> LiveStats:
        source = self._source
        with self._lock:
            p50, p95 = self._latencies.percentiles(window)
            processed, lost, turned_away = self._processed, self._lost, self._turned_away
        return LiveStats(
            seconds=time.monotonic() - self._started,
            received=source.received if source else 0,
            processed=processed,
            skipped=(source.skipped if source else 0) + lost + turned_away,
            corrupt=source.corrupt if source else 0,
            reconnects=source.reconnects if source else 0,
            latency_p50=p50,
            latency_p95=p95,
            restreamed=self._restream.sent if self._restream else 0,
            turned_away=turned_away,
        )

    def latencies(self, window: int | None = LATENCY_WINDOW) -> np.ndarray:
        """Arrival-to-composed seconds of the last `window` frames (None: all), oldest first."""
        with self._lock:
            return self._latencies.recent(window)

    def _event(self, kind: str, message: str) -> None:
        self.on_event(LiveEvent(kind, message))

    def _source_event(self, event: SourceEvent) -> None:
        self.on_event(event)
        if event.kind in ("ended", "gave-up"):
            self._ended = "source ended" if event.kind == "ended" else "source lost"

    # -- the run

    def run(self) -> LiveResult:
        """Open the source and explain it until stopped, the duration is up or it ends."""
        info = self.server.model_info()
        panels = select_panels(info, self.settings)
        target = TargetChoice.parse(self.settings.target, info.class_names)
        if target.needs_first_pass:
            raise InputError(
                "a live source has no end to choose one class for the whole video from; "
                "explain each frame's predicted class or name a class"
            )
        if Scope.parse(self.settings.scope) is Scope.CLIP:
            raise InputError(
                "a live source has no end to normalise by the clip's maximum; use the "
                "running or frame scope"
            )
        self.info = info
        self.target = target.request_value()
        self.yuv = composes_in_yuv(self.settings, yuv_ready=True)
        self.renderer = MapRenderer(panels, self.settings, info.class_names)
        self._source = LiveSource(
            self.address,
            open_timeout=self.live.open_timeout,
            read_timeout=self.live.read_timeout,
            reconnect_deadline=self.live.reconnect_deadline,
            realtime=self.live.realtime,
            buffer=self.live.buffer or self.batch_size,
            on_event=self._source_event,
            guard=self.live.guard,
        )
        if self._stop.is_set():
            raise Cancelled("the live run was stopped before it started")
        self._started = time.monotonic()
        source_info = self._source.open()
        if source_info.realtime and self.live.batch_size is None:
            self.batch_size = 1  # the newest frame each time: no frame waits behind others
            if self.live.buffer is None:
                self._source.capacity = 1
        mode = "in real time" if source_info.realtime else "every frame"
        self._event("opened", f"reading {self.address}: {source_info.describe}, {mode}")
        log: PredictionLog | None = None
        try:
            self._check_source(source_info)
            if self.predictions_path:
                log = PredictionLog(self.predictions_path, direct=True)
            if self.live.restream:
                self._restream = Restream(
                    self.live.restream,
                    source_info.fps or 25.0,
                    lambda message: self._event("restream", message),
                    keyframe_seconds=self.live.keyframe_seconds,
                )
                self._event("restream", f"re-streaming the composed frames to {self.live.restream}")
            self._compose_all(source_info, log)
        except GradcamError as error:
            self._stop.set()
            for note in self._failure_notes(log):
                error.add_note(note)
            raise
        finally:
            self._stop.set()
            self._source.close()
            self._close_outputs(log)
        stats = self._stats(None)
        self._event("stopped", f"{self._ended}: {stats.summary()}")
        return LiveResult(
            ended=self._ended,
            stats=stats,
            source=source_info,
            recordings=list(self._recordings),
            predictions=self.predictions_path if log is not None and log.count else None,
        )

    def _check_source(self, info: SourceInfo) -> None:
        """`InputError` for a source over the size or frame-rate limits of `LiveSettings`."""
        if self.live.oversized(info.width, info.height):
            raise InputError(
                f"the source sends {info.width}x{info.height} frames; the most this run "
                f"takes is {self.live.size_limit()}",
                self.address,
            )
        if self.live.max_fps is not None and info.fps > self.live.max_fps:
            raise InputError(
                f"the source sends {info.fps:g} frames/s; the most this run takes is "
                f"{self.live.max_fps:g}",
                self.address,
            )

    def _bytes_written(self) -> int:
        """Bytes in the run's recordings and predictions so far."""
        paths = [*self._recordings, *([self.predictions_path] if self.predictions_path else [])]
        total = 0
        for path in paths:
            try:
                total += path.stat().st_size
            except OSError:
                continue
        return total

    def _failure_notes(self, log: PredictionLog | None) -> list[str]:
        notes = [f"{self._processed} frames were explained"]
        if self._recordings:
            notes.append(f"recorded in {', '.join(str(p) for p in self._recordings)}")
        if log is not None and log.count:
            notes.append(f"their predictions are in {log.path}")
        return notes

    def _close_outputs(self, log: PredictionLog | None) -> None:
        for segment in list(self._segments.values()):
            if segment.writer is not None:
                try:
                    segment.writer.close()
                except OutputError:
                    segment.writer.abort()  # fragmented: what was written stays
                segment.writer = None
        if self._restream is not None:
            self._restream.close()
        if log is not None:
            log.close()

    def _compose_all(self, source_info: SourceInfo, log: PredictionLog | None) -> None:
        loop = RequestLoop(self._take, self._send, self.max_in_flight, name="live-infer")
        self._loop = loop
        if self._stop.is_set():
            loop.stop()
        stages = RenderStages(
            self._render,
            functools.partial(self._deliver, source_info, log),
            depth=1,  # a frame waits for the one being composed, no more: no backlog
            composed_depth=1,
        )
        try:
            for answer in loop.answers():
                if answer.results is None:  # turned away by a busy server, or lost at a stop
                    with self._lock:
                        if answer.turned_away:
                            self._turned_away += len(answer.batch)
                        else:
                            self._lost += len(answer.batch)
                    continue
                (result,) = answer.results
                for (frame, arrival), out in zip(answer.batch, frame_outputs(result), strict=True):
                    stages.put(frame, arrival, out)
                if self.live.duration and time.monotonic() - self._started >= self.live.duration:
                    self.stop("duration reached")
        except BaseException:
            stages.join()  # what was answered is still recorded
            raise
        stages.join()
        stages.raise_failure()

    def _take(self, stopping: threading.Event) -> list[tuple[Frame, Arrival]]:
        """The engine's `take`: the next frames to send, prepared ([] when the run is over)."""
        source = self._source
        assert source is not None
        batch = self._next_batch(source)
        grown = [a.frame for a in batch if self.live.oversized(a.frame.width, a.frame.height)]
        if grown:
            with self._lock:
                self._lost += len(batch)
            self.stop(
                f"frames grew to {grown[0].width}x{grown[0].height}, over {self.live.size_limit()}"
            )
            batch = []
        if not batch:
            if self.share is not None and self._shared:
                self._shared = False
                self.share.release()
            return []
        return [self._prepare(arrival) for arrival in batch]

    def _send(
        self,
        pool: ThreadPoolExecutor,
        batch: list[tuple[Frame, Arrival]],
        cancel: threading.Event,
    ) -> list[Future[BatchResult]]:
        """The engine's `send`: one request of the batch's thumbnails."""
        thumbnails = np.stack([frame.thumbnail for frame, _ in batch])
        targets = np.full(len(batch), self.target, np.int32)
        future = pool.submit(
            self.server.infer, thumbnails, targets, cancel, self.live.queue_timeout
        )
        if self.share is not None and self._shared:
            self._shared = False
            future.add_done_callback(self._give_back)
        return [future]

    def _give_back(self, _future: Future[BatchResult]) -> None:
        """Return the share's slot once a request is over (answered, refused or cancelled)."""
        assert self.share is not None
        self.share.release()

    def _next_batch(self, source: LiveSource) -> list[Arrival]:
        """The frames of the next request ([] when stopped or the source is over).

        In real time the newest waiting frames (up to a batch; older ones are skipped),
        otherwise the oldest. With a share, the run waits for a frame, then for its turn, then
        takes them: frames that came in the meantime replaced older ones."""
        newest = bool(source.info and source.info.realtime)
        if self.share is None:
            batch: list[Arrival] = []
            while not batch and not self._stop.is_set() and not source.ended:
                batch = source.take(self.batch_size, timeout=0.1, newest=newest)
            return batch
        while not self._stop.is_set() and not source.ended:
            if source.wait_for_frames(0.1):
                break
        if self._stop.is_set() or source.ended or not self.share.acquire(self._stop):
            return []
        self._shared = True
        return source.take(self.batch_size, timeout=0, newest=newest)

    def _prepare(self, arrival: Arrival) -> tuple[Frame, Arrival]:
        """The arrived frame as a picture of its segment's size, with the model's thumbnail."""
        decoded = arrival.frame
        segment = self._segments.get(arrival.segment)
        if segment is None:
            assert self._source is not None and self._source.info is not None
            realtime = self._source.info.realtime
            start = arrival.arrived if realtime or arrival.time is None else arrival.time
            size = (max(2, decoded.width // 2 * 2), max(2, decoded.height // 2 * 2))
            segment = self._segments[arrival.segment] = _Segment(size, start)
        realtime = self._source is not None and self._source.info and self._source.info.realtime
        if realtime or arrival.time is None:
            seconds = arrival.arrived - segment.start
        else:
            seconds = arrival.time - segment.start
        thumbnail = self._scalers.thumbnail(
            decoded, (self.info.input_width, self.info.input_height)
        )
        image, pixel_format = self._scalers.image(decoded, segment.size, self.yuv)
        frame = Frame(
            image,
            arrival.index,
            max(0, round(seconds / TIME_BASE)),
            seconds,
            pixel_format=pixel_format,
            thumbnail=thumbnail,
        )
        return frame, arrival

    def _writer(self, arrival: Arrival, fps: float) -> VideoWriter | None:
        """The recording of the frame's segment (opened on its first frame)."""
        if self.output is None:
            return None
        segment = self._segments[arrival.segment]
        if segment.writer is None:
            for number, earlier in list(self._segments.items()):
                if number != arrival.segment and earlier.writer is not None:
                    earlier.writer.close()  # the source was reopened: that segment is over
                    earlier.writer = None
            path = segment_path(self.output, arrival.segment)
            width, height = segment.size
            info = recording_info(path, width, height, fps or 25.0)
            segment.writer = VideoWriter(
                path,
                info,
                preset=self.live.encoder_preset,
                crf=self.settings.crf,
                encoder=self.settings.encoder,
                threads=self.settings.encoder_threads,
                audio=False,
                fragmented=True,
                keyframe_seconds=self.live.keyframe_seconds,
            )
            self._recordings.append(path)
            if arrival.segment:
                self._event("segment", f"the recording goes on in {path}")
        return segment.writer

    def _render(
        self, frame: Frame, arrival: Arrival, out: FrameOutput
    ) -> tuple[Frame, Arrival, FrameOutput, float]:
        """The composing stage: the frame with its heat map, and its latency (arrival to
        composed frame); the frame's pixels become the composed picture."""
        composed = self.renderer.compose(frame, *explanation(out))
        return composed, arrival, out, time.monotonic() - arrival.arrived

    def _deliver(
        self,
        source_info: SourceInfo,
        log: PredictionLog | None,
        composed: tuple[Frame, Arrival, FrameOutput, float],
    ) -> None:
        """The delivering stage: record, re-stream, log and report one composed frame."""
        frame, arrival, out, latency = composed
        picture = frame.image
        seconds = arrival.arrived - self._started
        writer = self._writer(arrival, source_info.fps)
        if writer is not None:
            encode(writer, frame)
        if self._restream is not None:
            yuv = picture if frame.pixel_format == "yuv420p" else self._yuv_of(picture)
            self._restream.put(yuv, seconds)
        record = frame_record(
            self._processed,
            seconds,
            out.probabilities,
            out.class_index,
            self.info.class_names,
            self.settings.top_k,
        )
        record.update(
            source_frame=arrival.index,
            segment=arrival.segment,
            latency_ms=round(1000 * latency, 1),
        )
        if log is not None:
            log.write(record)
        budget = self.live.max_bytes
        if budget is not None and not self._stop.is_set() and self._bytes_written() >= budget:
            self._event(
                "budget",
                f"the recording reached its budget of {budget / 2**20:.3g} MB; the run ends and "
                "its files are kept",
            )
            self.stop("recording budget reached")
        with self._lock:
            index = self._processed
            self._processed += 1
            self._latencies.add(latency)
        if self.on_frame is not None:
            self.on_frame(
                LiveFrame(
                    index=index,
                    source_index=arrival.index,
                    segment=arrival.segment,
                    seconds=seconds,
                    latency=latency,
                    picture=picture,
                    pixel_format=frame.pixel_format,
                    record=record,
                    stats=self.stats,
                )
            )

    def _yuv_of(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB composed frame as the yuv420p picture the re-stream takes."""
        return rgb_to_yuv420p(rgb, self._restream_scaler).to_ndarray()
