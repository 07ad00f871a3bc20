"""The file job: a video (or an image) through a Grad-CAM server into a heat-map video.

`process_media` is its front end over the stream engine (`file_stream`): frames are decoded
ahead, sent in batches with a bounded number of requests in flight, and composed on the
original full-resolution frames and encoded, in order, on threads of their own. Memory stays
flat (see `file_stream.FRAME_MEMORY_BUDGET`); maps go to disk when a whole-clip pass needs
them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gradcam_client.errors import (
    Cancelled,
    GradcamError,
    InputError,
    NoFramesError,
    OutputError,
)
from gradcam_client.jobs.file_stream import EncoderThread, InferenceStream, heat_map_writer
from gradcam_client.jobs.results import MapStore, PredictionLog, frame_record
from gradcam_client.jobs.settings import JobSettings, Progress, composes_in_yuv, select_panels
from gradcam_client.jobs.targets import TargetChoice, video_class
from gradcam_client.media import (
    DecodeReport,
    Frame,
    MediaReader,
    VideoWriter,
    open_media,
    write_image,
)
from gradcam_client.media.writer import choose_encoder
from gradcam_client.remote import contract
from gradcam_client.remote.server import GradcamServer
from gradcam_client.render.normalize import (
    Scope,
)
from gradcam_client.render.renderer import FrameOutput, MapRenderer, clip_maxima, explanation

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class JobResult:
    """What a finished job produced."""

    output: Path
    frames: int
    seconds: float
    target: str
    skipped: str = ""
    predictions: Path | None = None
    maps: Path | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_output_suffix(source: MediaReader, output: Path) -> None:
    suffix = output.suffix.lower()
    if source.is_image and suffix not in IMAGE_SUFFIXES:
        raise OutputError(
            f"the input is an image; name an image output ({', '.join(IMAGE_SUFFIXES)})", output
        )
    if not source.is_image and suffix not in (".mp4", ".m4v", ".mov"):
        raise OutputError("the input is a video; name an .mp4 output", output)


def skipped_summary(report: DecodeReport) -> str:
    """One line naming the corrupt frames that were skipped (empty when there were none)."""
    if not report.skipped:
        return report.summary()
    shown = ", ".join(
        f"#{s.index} at {s.time:.3f} s" if s.time is not None else f"#{s.index}"
        for s in report.skipped[:5]
    )
    more = ", ..." if report.n_skipped > 5 else ""
    noun = "frame" if report.n_skipped == 1 else "frames"
    text = f"skipped {report.n_skipped} corrupt {noun} ({shown}{more})"
    return f"{text}; input ends early ({report.truncated})" if report.truncated else text


class _Job:
    """The state of one `process_media` call."""

    def __init__(
        self,
        server: GradcamServer,
        source: str | Path,
        output: str | Path,
        settings: JobSettings,
        predictions: str | Path | None,
        maps: str | Path | None,
        progress: Progress | None,
        first_pass_progress: Progress | None = None,
        cancel: threading.Event | None = None,
        keep_partial: bool = False,
    ) -> None:
        self.server = server
        self.source = Path(source)
        self.output = Path(output)
        self.predictions_path = Path(predictions) if predictions else None
        self.maps_path = Path(maps) if maps else None
        self.progress = progress or (lambda done, total: None)
        self.first_pass_progress = first_pass_progress or (lambda done, total: None)
        self.cancel = cancel
        self.keep_partial = keep_partial
        self.partial_video: Path | None = None
        self.done = 0  # frames composed
        self.analysed = 0  # frames answered by the server (and logged)
        self.log: PredictionLog | None = None
        self.reader = open_media(self.source, on_corrupt=settings.on_corrupt)
        check_output_suffix(self.reader, self.output)
        if self.reader.is_image:  # no encoder to please: keep the image's own size
            settings = replace(
                settings, composition=replace(settings.composition, even_dimensions=False)
            )
        self.settings = settings
        self.encoder = choose_encoder(settings.encoder, settings.crf)  # before any frame is sent
        self.info = server.model_info()
        self.panels = select_panels(self.info, settings)
        self.target = TargetChoice.parse(settings.target, self.info.class_names)
        width, height = self.reader.info.resolution_wh
        self.stream = InferenceStream(server, self.info, settings, frame_bytes=width * height * 3)
        self.total = self.reader.info.estimated_frames
        self.yuv = composes_in_yuv(settings, self.reader.yuv_ready)

    def frames(self, thumbnails: bool = True) -> Iterable[Frame]:
        """The input's frames: the decoder's yuv420p planes (with model-size thumbnails unless
        `thumbnails` is false) when composing in YUV, else RGB images."""
        if self.yuv:
            size = (self.info.input_width, self.info.input_height)
            return self.reader.pictures(size if thumbnails else None, copy=False)
        return self.reader

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the job was stopped")

    def advance(self) -> None:
        self.check_cancel()
        self.done += 1
        self.progress(self.done, self.total)

    def choose_video_class(self) -> None:
        """One class for the whole clip: the highest mean probability over all frames."""
        total, count = None, 0
        answers = self.stream.run(
            self.frames(), contract.PREDICTED_CLASS, keep_images=False, cancel=self.cancel
        )
        for _, out in answers:
            self.check_cancel()
            total = out.probabilities.copy() if total is None else total + out.probabilities
            count += 1
            self.first_pass_progress(count, self.total)
        if total is None:
            raise NoFramesError("no frame could be decoded", self.source)
        self.target = TargetChoice("fixed", video_class(total[None] / count))

    def record(self, frame: Frame, out: FrameOutput, store: MapStore | None) -> None:
        if self.log is not None:
            self.log.write(
                frame_record(
                    frame.index,
                    frame.time,
                    out.probabilities,
                    out.class_index,
                    self.info.class_names,
                    self.settings.top_k,
                )
            )
        if store is not None:
            store.append(out.maps)
        self.times.append(frame.time)
        self.analysed += 1

    def run(self) -> JobResult:
        started = time.monotonic()
        if self.target.needs_first_pass:
            self.choose_video_class()
        target = self.target.request_value()
        two_pass = Scope.parse(self.settings.scope) is Scope.CLIP
        shapes = {
            layer.name: (len(self.info.methods), layer.height, layer.width)
            for layer in self.info.layers
        }
        self.times: list[float] = []
        store = MapStore(shapes) if (two_pass or self.maps_path) else None
        try:
            if self.predictions_path:
                self.log = PredictionLog(self.predictions_path)
            if two_pass:
                frames = self._compose_from_store(target, store)
            else:
                frames = self._compose_streaming(target, store)
            result = JobResult(
                output=self.output,
                frames=frames,
                seconds=time.monotonic() - started,
                target=self._target_text(),
                skipped=skipped_summary(self.reader.report),
            )
            if store is not None and self.maps_path:
                times = np.array(self.times, np.float64)
                result.maps = store.save_npz(self.maps_path, frame_time=times)
            if self.log is not None:
                result.predictions = self.log.commit()
            return result
        finally:
            if self.log is not None:
                self.log.close()
            if store is not None:
                store.close()

    def failure_notes(self) -> list[str]:
        """What the user should know after a failure: work done, and where it is kept."""
        notes = []
        if self.analysed:
            of = f" of {self.total}" if self.total else ""
            notes.append(f"{self.analysed}{of} frames were done")
        if self.log is not None and self.log.count and self.log.partial.exists():
            notes.append(f"their predictions are in {self.log.partial}")
        if self.partial_video is not None:
            notes.append(f"the video so far is in {self.partial_video}")
        elif self.analysed:
            notes.append(f"no output was written to {self.output}")
        return notes

    def _target_text(self) -> str:
        if self.target.class_index == contract.PREDICTED_CLASS:
            return "predicted class of each frame"
        return f"{self.info.class_names[self.target.class_index]} ({self.target.class_index})"

    def _compose_streaming(self, target: int, store: MapStore | None) -> int:
        renderer = MapRenderer(self.panels, self.settings, self.info.class_names)
        if self.reader.is_image:
            for frame, out in self.stream.run(self.reader, target):
                self.record(frame, out, store)
                write_image(self.output, renderer.render(frame.image, *explanation(out)))
                self.advance()
            return 1
        encoder = EncoderThread(self._writer(), renderer)
        try:
            for frame, out in self.stream.run(self.frames(), target, cancel=self.cancel):
                self.record(frame, out, store)
                encoder.put(frame, explanation(out))
                self.advance()
        except GradcamError:
            if self.keep_partial and not (self.cancel is not None and self.cancel.is_set()):
                self.partial_video = encoder.finish_partial(partial_video_path(self.output))
            else:
                encoder.abort()
            raise
        except BaseException:
            encoder.abort()
            raise
        return encoder.finish()

    def _writer(self) -> VideoWriter:
        return heat_map_writer(self.output, self.reader.info, self.settings, self.encoder)

    def _compose_from_store(self, target: int, store: MapStore | None) -> int:
        """Clip scope: infer everything first, then compose with the clip's maxima."""
        assert store is not None
        explained: list[tuple[int, float]] = []
        for frame, out in self.stream.run(
            self.frames(), target, keep_images=False, cancel=self.cancel
        ):
            self.check_cancel()
            self.record(frame, out, store)
            explained.append(explanation(out)[1:])
            self.first_pass_progress(len(explained), self.total)
        maxima = clip_maxima(store, self.panels, self.settings.smoothing)
        renderer = MapRenderer(self.panels, self.settings, self.info.class_names, maxima)
        layer_maps = {name: store.read(name) for name in store.shapes}
        sink = None if self.reader.is_image else self._writer()
        changed = InputError("the input decoded differently the second time", self.source)
        count = 0
        try:
            for i, frame in enumerate(self.frames(thumbnails=False)):
                if i >= len(explained) or frame.time != self.times[i]:
                    raise changed
                maps = {name: array[i] for name, array in layer_maps.items()}
                if sink is None:
                    write_image(self.output, renderer.render(frame.image, maps, *explained[i]))
                else:
                    renderer.write(sink, frame, maps, *explained[i])
                count += 1
                self.advance()
            if count != len(explained):
                raise changed
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        if sink is not None:
            sink.close()
        return count


def partial_video_path(output: str | Path) -> Path:
    """Where `process_media(..., keep_partial=True)` keeps the video made before a failure."""
    output = Path(output)
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def process_media(
    server: GradcamServer,
    source: str | Path,
    output: str | Path,
    settings: JobSettings | None = None,
    *,
    predictions: str | Path | None = None,
    maps: str | Path | None = None,
    progress: Progress | None = None,
    first_pass_progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep_partial: bool = False,
) -> JobResult:
    """Turn `source` (video or image) into `output` with heat maps; see `JobSettings`.

    Raises a `GradcamError` subclass with a one-line message for every expected failure; the
    output file only appears when complete, and predictions made before a failure are kept in
    ``<predictions>.partial`` (the error's notes say how many frames were done and where).
    With `keep_partial`, a video whose frames were being composed as they came keeps the
    frames made before a failure in `partial_video_path(output)`.

    `first_pass_progress` follows the whole-clip first passes (choosing a ``"video"`` target,
    and the server's answers for ``"clip"`` normalisation, before composing). Setting
    `cancel` stops the job within a frame or a retry (`Cancelled`; nothing partial is kept).
    """
    job = _Job(
        server,
        source,
        output,
        settings or JobSettings(),
        predictions,
        maps,
        progress,
        first_pass_progress,
        cancel,
        keep_partial,
    )
    try:
        return job.run()
    except GradcamError as error:
        if cancel is not None and cancel.is_set() and not isinstance(error, Cancelled):
            stopped = Cancelled("the job was stopped")
            for note in job.failure_notes():
                stopped.add_note(note)
            raise stopped from error
        for note in job.failure_notes():
            error.add_note(note)
        raise
