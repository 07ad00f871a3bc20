"""Compare two models, or two versions of one model, on the same video.

The library API of ``gradcam-video IN -o OUT --model A --compare B``; the dashboard's compare
mode uses it::

    from gradcam_client.compare.job import compare_media
    from gradcam_client.compare.results import read_comparisons
    from gradcam_client.jobs.settings import JobSettings
    from gradcam_client.remote.server import GradcamServer

    a = GradcamServer("localhost:8001", "efficientnet-lite0:1")   # NAME or NAME:VERSION
    b = GradcamServer("localhost:8001", "efficientnet-lite0:2")   # another model works too
    result = compare_media(
        a, b, "cat.mp4", "cat_compare.mp4",     # A | B side by side, a strip of agreement
        JobSettings(),                           # target, layers, methods, colours, batches ...
        predictions="cat_compare.jsonl",         # default: cat_compare.compare.jsonl
        summary="cat_compare.json",              # default: cat_compare.compare.json
        maps=("a_maps.npz", "b_maps.npz"),       # optional: each side's raw maps (as --maps)
        progress=lambda done, total: ...,        # cancel=threading.Event() stops it
    )
    result.summary.agreement_rate               # top-1 agreement over the frames (or None)
    result.summary.worst_frames                 # frame indices, largest map distance first
    frames = read_comparisons(result.predictions)   # per frame: both predictions, measures
    worst = sorted(frames, key=lambda f: -f.agreement.distance)

Every frame is decoded once, with one model-size thumbnail made by the decoder's scaler for
both models; the two models' requests for a batch go out together (each side with its own
bound on requests in flight, both in flight at once); the two halves are composed, in yuv420p
on the decoded pictures as a single model's video is (`compare.view`), and encoded into one
video on the composing and encoding threads of a heat-map job (`EncoderThread`). Per frame
the JSON lines hold both predictions and how the maps agree (`compare.agreement`: correlation,
hottest-20 % IoU, earth mover's distance); the summary (also
printed by the command line) holds the agreement rate, the mean and worst of each measure and
the worst frames. See `compare.results` for the files and `compare.view` for the picture.

Everything that can be wrong is said before any frame is sent, as a `GradcamError` with one
line: a model or version the server does not serve (`ModelNotFound`), a model without maps,
a layer, method or class one side lacks, settings a comparison cannot follow (`InputError`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_client.compare.agreement import compare_maps
from gradcam_client.compare.plan import ComparePlan, Side, plan_comparison
from gradcam_client.compare.results import (
    CompareSummary,
    FrameComparison,
    predictions_path,
    summarize,
    summary_path,
    write_summary,
)
from gradcam_client.compare.view import PairRenderer
from gradcam_client.errors import Cancelled, GradcamError, InputError, NoFramesError
from gradcam_client.jobs.file_job import check_output_suffix, skipped_summary
from gradcam_client.jobs.file_stream import (
    EncoderThread,
    InferenceStream,
    heat_map_writer,
    resize_for_model,
)
from gradcam_client.jobs.results import MapStore, PredictionLog, frame_record
from gradcam_client.jobs.settings import JobSettings, Progress
from gradcam_client.media import Frame, open_media, write_image
from gradcam_client.media.writer import choose_encoder
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.server import BatchResult, GradcamServer
from gradcam_client.render.compose import Layout
from gradcam_client.render.normalize import Scope
from gradcam_client.render.renderer import FrameOutput, MapRenderer, explanation, frame_outputs


@dataclass
class CompareResult:
    """What a finished comparison produced."""

    output: Path
    frames: int
    seconds: float
    summary: CompareSummary
    summary_path: Path
    predictions: Path
    maps: tuple[Path, Path] | None = None
    skipped: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class PairedStream(InferenceStream):
    """`InferenceStream` for two models: each batch of frames goes to both at once; yields
    (frame, (A's `FrameOutput`, B's)) in frame order."""

    requests_per_batch = 2

    def __init__(
        self,
        a: GradcamServer,
        info_a: ModelInfo,
        b: GradcamServer,
        info_b: ModelInfo,
        settings: JobSettings,
        frame_bytes: int | None = None,
    ) -> None:
        super().__init__(a, info_a, settings, frame_bytes)
        self.batch_size = min(self.batch_size, info_b.max_batch_size)
        self.other, self.other_info = b, info_b

    def thumbnail_size(self) -> tuple[int, int]:
        """(width, height) of the one thumbnail the decoder makes for both models: their
        input size, or the larger of each side when they differ (each is then resized)."""
        a, b = self.info, self.other_info
        return max(a.input_width, b.input_width), max(a.input_height, b.input_height)

    def model_input(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """A's and B's input for `frame`: from the decoder's thumbnail if it made one, else
        from the frame; one array for both when the models share their input size."""
        image = frame.thumbnail if frame.thumbnail is not None else frame.image
        small_a = _fit(image, self.info)
        same = (self.info.input_height, self.info.input_width) == (
            self.other_info.input_height,
            self.other_info.input_width,
        )
        return small_a, small_a if same else _fit(image, self.other_info)

    def send(
        self,
        pool: ThreadPoolExecutor,
        inputs: list[Any],
        target: Any,
        stop: threading.Event,
    ) -> list[Future[BatchResult]]:
        target_a, target_b = target
        futures = []
        for server, side, side_target in ((self.server, 0, target_a), (self.other, 1, target_b)):
            frames = np.stack([pair[side] for pair in inputs])
            targets = np.full(len(inputs), side_target, np.int32)
            futures.append(pool.submit(server.infer, frames, targets, stop))
        return futures

    def outputs(self, results: list[BatchResult]) -> list[Any]:
        result_a, result_b = results
        return list(zip(frame_outputs(result_a), frame_outputs(result_b), strict=True))


def _fit(image: np.ndarray, info: ModelInfo) -> np.ndarray:
    """`image` at the model's input size (itself when it has that size)."""
    if image.shape[:2] == (info.input_height, info.input_width):
        return image
    return resize_for_model(image, info)


def _side_renderer(side: Side, settings: JobSettings) -> MapRenderer:
    """One half's renderer: an overlay of the side's map, titled with the model."""
    composition = replace(
        settings.composition,
        layout=Layout.OVERLAY,
        show_titles=True,
        max_width=None,
        even_dimensions=False,
        label_corner="bottom-left",
    )
    return MapRenderer(
        [side.panel], replace(settings, composition=composition), side.info.class_names
    )


def _check_settings(settings: JobSettings) -> None:
    if Scope.parse(settings.scope) is Scope.CLIP:
        raise InputError(
            "--scope clip is not available in a comparison; use running (the default) or frame"
        )
    if settings.composition.layout is not Layout.OVERLAY:
        raise InputError(
            "a comparison has its own layout (A | B, each an overlay); leave --layout out"
        )


def _prediction(side: Side, out: FrameOutput, top_k: int) -> dict[str, Any]:
    record = frame_record(0, 0.0, out.probabilities, out.class_index, side.info.class_names, top_k)
    del record["frame"], record["time"]
    return record


def _side_map(side: Side, out: FrameOutput) -> np.ndarray:
    return out.maps[side.panel.layer][side.panel.method_index]


class _CompareJob:
    """The state of one `compare_media` call."""

    def __init__(
        self,
        a: GradcamServer,
        b: GradcamServer,
        source: str | Path,
        output: str | Path,
        settings: JobSettings,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> None:
        _check_settings(settings)
        self.source, self.output = Path(source), Path(output)
        self.progress = progress or (lambda done, total: None)
        self.cancel = cancel
        self.reader = open_media(self.source, on_corrupt=settings.on_corrupt)
        check_output_suffix(self.reader, self.output)
        self.settings = settings
        self.encoder = choose_encoder(settings.encoder, settings.crf)
        self.plan: ComparePlan = plan_comparison(
            str(a.ref), a.model_info(), str(b.ref), b.model_info(), settings
        )
        width, height = self.reader.info.resolution_wh
        self.stream = PairedStream(
            a, self.plan.a.info, b, self.plan.b.info, settings, frame_bytes=width * height * 3
        )
        self.total = self.reader.info.estimated_frames
        self.done = 0
        self.log: PredictionLog | None = None
        self.yuv = settings.yuv and self.reader.yuv_ready and not settings.composition.heat_weighted

    def frames(self) -> Iterable[Frame]:
        """The input's frames: the decoder's yuv420p planes with the models' thumbnail when
        composing in yuv420p (see `compose_yuv`), else RGB images."""
        if self.yuv:
            return self.reader.pictures(self.stream.thumbnail_size(), copy=False)
        return self.reader

    def advance(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the job was stopped")
        self.done += 1
        self.progress(self.done, self.total)

    def compare(self, frame: Frame, out_a: FrameOutput, out_b: FrameOutput) -> FrameComparison:
        """The frame's comparison, with both predictions."""
        plan, top_k = self.plan, self.settings.top_k
        return FrameComparison(
            frame=frame.index,
            time=frame.time,
            a=_prediction(plan.a, out_a, top_k),
            b=_prediction(plan.b, out_b, top_k),
            top1_agree=plan.top1_agree(out_a.probabilities, out_b.probabilities),
            agreement=compare_maps(_side_map(plan.a, out_a), _side_map(plan.b, out_b)),
        )

    def renderer(self) -> PairRenderer:
        return PairRenderer(
            _side_renderer(self.plan.a, self.settings),
            _side_renderer(self.plan.b, self.settings),
            self.reader.info.resolution_wh,
            self.total,
        )

    def run(
        self,
        predictions: Path,
        summary: Path,
        maps: tuple[Path, Path] | None,
    ) -> CompareResult:
        started = time.monotonic()
        plan = self.plan
        stores = [MapStore(_shapes(plan.a.info)), MapStore(_shapes(plan.b.info))] if maps else []
        kept: list[FrameComparison] = []  # measures only: the predictions are on disk
        times: list[float] = []
        renderer = self.renderer()
        self.log = PredictionLog(predictions)
        sink = (
            None
            if self.reader.is_image
            else EncoderThread(
                heat_map_writer(self.output, self.reader.info, self.settings, self.encoder),
                renderer,
            )
        )
        try:
            targets = (plan.a.target, plan.b.target)
            for frame, (out_a, out_b) in self.stream.run(
                self.frames(), targets, cancel=self.cancel
            ):
                comparison = self.compare(frame, out_a, out_b)
                self.log.write(comparison.record())
                kept.append(replace(comparison, a={}, b={}))
                times.append(frame.time)
                for store, out in zip(stores, (out_a, out_b), strict=False):
                    store.append(out.maps)
                explained = (explanation(out_a), explanation(out_b), comparison)
                if sink is None:
                    write_image(self.output, renderer.render(frame.image, *explained))
                else:
                    sink.put(frame, explained)
                self.advance()
            if not kept:
                raise NoFramesError("no frame could be decoded", self.source)
            frames = sink.finish() if sink is not None else 1
            sink = None
            written_maps = None
            if maps:
                frame_time = np.array(times, np.float64)
                written_maps = (
                    stores[0].save_npz(maps[0], frame_time=frame_time),
                    stores[1].save_npz(maps[1], frame_time=frame_time),
                )
            found = summarize(plan.a.label, plan.b.label, kept, plan.shared_classes, plan.notes)
            return CompareResult(
                output=self.output,
                frames=frames,
                seconds=time.monotonic() - started,
                summary=found,
                summary_path=write_summary(found, summary),
                predictions=self.log.commit(),
                maps=written_maps,
                skipped=skipped_summary(self.reader.report),
            )
        finally:
            if sink is not None:
                sink.abort()
            self.log.close()
            for store in stores:
                store.close()

    def failure_notes(self) -> list[str]:
        """What the user should know after a failure: frames done, where they are kept."""
        notes = []
        compared = self.log.count if self.log is not None else 0
        if compared:
            of = f" of {self.total}" if self.total else ""
            notes.append(f"{compared}{of} frames were done")
        if compared and self.log is not None and self.log.partial.exists():
            notes.append(f"their comparison is in {self.log.partial}")
        if compared:
            notes.append(f"no output was written to {self.output}")
        return notes


def _shapes(info: ModelInfo) -> dict[str, tuple[int, ...]]:
    return {layer.name: (len(info.methods), layer.height, layer.width) for layer in info.layers}


def compare_media(
    a: GradcamServer,
    b: GradcamServer,
    source: str | Path,
    output: str | Path,
    settings: JobSettings | None = None,
    *,
    predictions: str | Path | None = None,
    summary: str | Path | None = None,
    maps: tuple[str | Path, str | Path] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> CompareResult:
    """Compare models `a` and `b` on `source` (a video or an image) into `output`.

    See the module's docstring. `predictions` (JSON lines) and `summary` (JSON) default to
    ``<output stem>.compare.jsonl`` and ``.compare.json`` beside `output`; `maps` names two
    .npz files for each side's raw maps (the format of `process_media`'s). Raises a
    `GradcamError` with a one-line message for every expected failure, before any frame is
    sent for everything that can be checked first; the output appears only when complete.

    Setting `cancel` (before or during the run) ends it within a batch or a retry with
    `Cancelled`; as after a failure, the lines of the frames compared so far stay in
    ``<predictions>.partial`` and the error's notes say how many there are and where.
    """
    job = _CompareJob(a, b, source, output, settings or JobSettings(), progress, cancel)
    try:
        return job.run(
            Path(predictions) if predictions else predictions_path(output),
            Path(summary) if summary else summary_path(output),
            (Path(maps[0]), Path(maps[1])) if maps else None,
        )
    except GradcamError as error:
        if cancel is not None and cancel.is_set() and not isinstance(error, Cancelled):
            error = Cancelled("the job was stopped")
        for note in job.failure_notes():
            error.add_note(note)
        raise error from None
