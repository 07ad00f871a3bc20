"""Process a video (or an image) through a Grad-CAM server into a heat-map video.

Frames are decoded in a background thread, resized to the model's input size, sent in
batches with a bounded number of requests in flight, and put back in frame order before they
are composed on the original full-resolution frames and encoded. Memory stays flat: at most
``batch_size * max_in_flight`` frames wait for the server; maps go to disk when a whole-clip
pass needs them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gradcam_client import contract
from gradcam_client.compose import CompositionSettings, Layout, compose_frame, format_label
from gradcam_client.contract import ModelInfo
from gradcam_client.errors import GradcamError, InputError, OutputError
from gradcam_client.normalize import DEFAULT_DECAY, Normalizer, Scope, TemporalSmoother
from gradcam_client.results import MapStore, PredictionLog, frame_record
from gradcam_client.targets import TargetChoice, video_class
from gradcam_client.triton import BatchResult, GradcamServer
from gradcam_client.video_io import Frame, MediaReader, VideoWriter, open_media, write_image

Progress = Callable[[int, int | None], None]
"""Called with (frames done, total frames if known) as the job advances."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class JobSettings:
    """Everything about a job except its files and its server."""

    target: str | None = None  # None/"predicted", "video", a class index or a class name
    layers: tuple[str, ...] = ()  # default: the model's first layer (all of them in a grid)
    methods: tuple[str, ...] = ()  # default: the model's first method
    scope: str = "running"
    smoothing: float = 0.0
    decay: float = DEFAULT_DECAY
    composition: CompositionSettings = field(default_factory=CompositionSettings)
    batch_size: int = 8
    max_in_flight: int = 4
    on_corrupt: str = "skip"
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_in_flight < 1:
            raise InputError("batch size and requests in flight must be at least 1")
        Scope.parse(self.scope)
        TemporalSmoother(self.smoothing)


@dataclass(frozen=True)
class Panel:
    """One map shown in the output: a layer, one of its methods, and its title."""

    layer: str
    method_index: int
    title: str


@dataclass
class FrameOutput:
    """The server's answer for one frame."""

    probabilities: np.ndarray
    class_index: int
    maps: dict[str, np.ndarray]  # layer -> [methods, h, w]


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


def select_panels(info: ModelInfo, settings: JobSettings) -> list[Panel]:
    """The maps to show, checked against what the model offers."""
    grid = settings.composition.layout is Layout.GRID
    layers = list(settings.layers) or (info.layer_names if grid else info.layer_names[:1])
    methods = list(settings.methods) or list(info.methods[:1])
    for layer in layers:
        if layer not in info.layer_names:
            raise InputError(
                f"model {info.name!r} explains no layer {layer!r}; it has: "
                f"{', '.join(info.layer_names)}"
            )
    for method in methods:
        if method not in info.methods:
            raise InputError(
                f"model {info.name!r} computes no method {method!r}; it has: "
                f"{', '.join(info.methods)}"
            )
    panels = []
    for layer in layers:
        for method in methods:
            name = contract.METHODS.get(method, method)
            title = (
                f"{layer} {name}"
                if len(layers) > 1 and len(methods) > 1
                else (layer if len(layers) > 1 else name)
            )
            panels.append(Panel(layer, info.methods.index(method), title))
    if not grid and len(panels) > 1:
        raise InputError(
            "the overlay and side-by-side layouts show one map; use the grid "
            "layout for several layers or methods"
        )
    return panels


def resize_for_model(image: np.ndarray, info: ModelInfo) -> np.ndarray:
    """The frame at the model's input size (area interpolation when shrinking)."""
    h, w = image.shape[:2]
    size = (info.input_width, info.input_height)
    shrinking = h >= info.input_height and w >= info.input_width
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class InferenceStream:
    """Frames in, (frame, server output) out, in order, with bounded requests in flight."""

    def __init__(self, server: GradcamServer, info: ModelInfo, settings: JobSettings) -> None:
        self.server = server
        self.info = info
        self.batch_size = min(settings.batch_size, info.max_batch_size)
        self.max_in_flight = settings.max_in_flight

    def _decode(self, frames: Iterable[Frame], out: queue.Queue, stop: threading.Event) -> None:
        """Background decoding: (frame, model-size image) items, then None or an exception."""
        try:
            for frame in frames:
                if stop.is_set():
                    return
                out.put((frame, resize_for_model(frame.image, self.info)))
            out.put(None)
        except BaseException as error:  # handed to the consumer thread
            out.put(error)

    def _batches(self, items: queue.Queue) -> Iterator[list[tuple[Frame, np.ndarray]]]:
        batch: list[tuple[Frame, np.ndarray]] = []
        while True:
            item = items.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                break
            batch.append(item)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def run(
        self, frames: Iterable[Frame], target: int, keep_images: bool = True
    ) -> Iterator[tuple[Frame, FrameOutput]]:
        """Yield every decoded frame with its result, in frame order.

        Without ``keep_images`` the full-resolution pixels are dropped as soon as the frame is
        resized, for passes that only need the server's answers.
        """
        items: queue.Queue = queue.Queue(maxsize=self.batch_size * self.max_in_flight)
        stop = threading.Event()
        decoder = threading.Thread(target=self._decode, args=(frames, items, stop), daemon=True)
        decoder.start()
        pending: deque[tuple[list[Frame], Future[BatchResult]]] = deque()
        try:
            with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="infer") as pool:
                for batch in self._batches(items):
                    small = np.stack([image for _, image in batch])
                    targets = np.full(len(batch), target, np.int32)
                    kept = [f if keep_images else _without_image(f) for f, _ in batch]
                    pending.append((kept, pool.submit(self.server.infer, small, targets)))
                    if len(pending) >= self.max_in_flight:
                        yield from _split(*pending.popleft())
                while pending:
                    yield from _split(*pending.popleft())
        finally:
            stop.set()
            for _, future in pending:
                future.cancel()
            while decoder.is_alive():  # unblock a decoder waiting on a full queue
                try:
                    items.get_nowait()
                except queue.Empty:
                    decoder.join(0.05)


def _without_image(frame: Frame) -> Frame:
    return Frame(np.empty((0, 0, 3), np.uint8), frame.index, frame.pts, frame.time, frame.duration)


def _explained(out: FrameOutput) -> tuple[dict[str, np.ndarray], int, float]:
    """The maps, the explained class and its probability: what a frame's label shows."""
    return out.maps, out.class_index, float(out.probabilities[out.class_index])


def _split(frames: list[Frame], future: Future[BatchResult]) -> Iterator[tuple[Frame, FrameOutput]]:
    result = future.result()
    for i, frame in enumerate(frames):
        yield (
            frame,
            FrameOutput(
                probabilities=result.probabilities[i],
                class_index=int(result.class_index[i]),
                maps={layer: maps[i] for layer, maps in result.maps.items()},
            ),
        )


class MapRenderer:
    """Smooths, normalises and composes the selected maps onto full-resolution frames."""

    def __init__(
        self,
        panels: list[Panel],
        settings: JobSettings,
        class_names: tuple[str, ...],
        clip_maxima: list[float] | None = None,
    ) -> None:
        self.panels = panels
        self.settings = settings
        self.class_names = class_names
        self.smoothers = [TemporalSmoother(settings.smoothing) for _ in panels]
        scope = Scope.parse(settings.scope)
        self.normalizers = [
            Normalizer(
                scope,
                maximum=None if clip_maxima is None else clip_maxima[i],
                decay=settings.decay,
            )
            for i in range(len(panels))
        ]

    def smoothed(self, maps: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [
            smoother(maps[panel.layer][panel.method_index])
            for panel, smoother in zip(self.panels, self.smoothers, strict=True)
        ]

    def render(
        self, image: np.ndarray, maps: dict[str, np.ndarray], class_index: int, probability: float
    ) -> np.ndarray:
        """The output frame: maps of this frame over the full-resolution image, labelled."""
        heats = {
            panel.title: normalizer(raw)
            for panel, normalizer, raw in zip(
                self.panels, self.normalizers, self.smoothed(maps), strict=True
            )
        }
        label = format_label(self.class_names[class_index], probability)
        composition = self.settings.composition
        if composition.layout is not Layout.GRID and not composition.show_titles:
            heats = {"": next(iter(heats.values()))}
        return compose_frame(image, heats, composition, label)


def clip_maxima(store: MapStore, panels: list[Panel], smoothing: float) -> list[float]:
    """Per panel, the maximum of its smoothed maps over the whole clip."""
    maxima = []
    for panel in panels:
        smoother = TemporalSmoother(smoothing)
        peak = 0.0
        for raw in store.read(panel.layer)[:, panel.method_index]:
            peak = max(peak, float(smoother(raw).max()))
        maxima.append(peak)
    return maxima


def check_output_suffix(source: MediaReader, output: Path) -> None:
    suffix = output.suffix.lower()
    if source.is_image and suffix not in IMAGE_SUFFIXES:
        raise OutputError(
            f"the input is an image; name an image output ({', '.join(IMAGE_SUFFIXES)})", output
        )
    if not source.is_image and suffix not in (".mp4", ".m4v", ".mov"):
        raise OutputError("the input is a video; name an .mp4 output", output)


class _Job:
    """The state of one `process_media` call."""

    def __init__(self, server, source, output, settings, predictions, maps, progress) -> None:
        self.server = server
        self.source = Path(source)
        self.output = Path(output)
        self.settings = settings
        self.info = server.model_info()
        self.reader = open_media(self.source, on_corrupt=settings.on_corrupt)
        check_output_suffix(self.reader, self.output)
        self.panels = select_panels(self.info, settings)
        self.target = TargetChoice.parse(settings.target, self.info.class_names)
        self.stream = InferenceStream(server, self.info, settings)
        self.predictions_path = Path(predictions) if predictions else None
        self.maps_path = Path(maps) if maps else None
        self.progress = progress or (lambda done, total: None)
        self.total = self.reader.info.estimated_frames
        self.done = 0

    def advance(self) -> None:
        self.done += 1
        self.progress(self.done, self.total)

    def choose_video_class(self) -> None:
        """One class for the whole clip: the highest mean probability over all frames."""
        total, count = None, 0
        for _, out in self.stream.run(self.reader, contract.PREDICTED_CLASS, keep_images=False):
            total = out.probabilities.copy() if total is None else total + out.probabilities
            count += 1
        assert total is not None
        self.target = TargetChoice("fixed", video_class(total[None] / count))

    def record(self, frame: Frame, out: FrameOutput, log: PredictionLog | None, store) -> None:
        if log is not None:
            log.write(
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
        store = MapStore(shapes) if (two_pass or self.maps_path) else None
        log = PredictionLog(self.predictions_path) if self.predictions_path else None
        try:
            if two_pass:
                frames = self._compose_from_store(target, log, store)
            else:
                frames = self._compose_streaming(target, log, store)
            result = JobResult(
                output=self.output,
                frames=frames,
                seconds=time.monotonic() - started,
                target=self._target_text(),
                skipped=self.reader.report.summary() if self.reader.report.n_skipped else "",
            )
            if log is not None:
                result.predictions = log.commit()
            if store is not None and self.maps_path:
                times = np.array(self._times, np.float64)
                result.maps = store.save_npz(self.maps_path, frame_time=times)
            return result
        finally:
            if log is not None:
                log.close()
            if store is not None:
                store.close()

    def _target_text(self) -> str:
        if self.target.class_index == contract.PREDICTED_CLASS:
            return "predicted class of each frame"
        return f"{self.info.class_names[self.target.class_index]} ({self.target.class_index})"

    def _compose_streaming(self, target: int, log, store) -> int:
        renderer = MapRenderer(self.panels, self.settings, self.info.class_names)
        self._times: list[float] = []
        if self.reader.is_image:
            for frame, out in self.stream.run(self.reader, target):
                self.record(frame, out, log, store)
                self._times.append(frame.time)
                write_image(self.output, renderer.render(frame.image, *_explained(out)))
                self.advance()
            return 1
        with VideoWriter(self.output, self.reader.info) as writer:
            for frame, out in self.stream.run(self.reader, target):
                self.record(frame, out, log, store)
                self._times.append(frame.time)
                image = renderer.render(frame.image, *_explained(out))
                writer.write(image, frame.pts, duration=frame.duration)
                self.advance()
            return writer.frames_written

    def _compose_from_store(self, target: int, log, store: MapStore) -> int:
        """Clip scope: infer everything first, then compose with the clip's maxima."""
        self._times = []
        explained: list[tuple[int, float]] = []
        for frame, out in self.stream.run(self.reader, target, keep_images=False):
            self.record(frame, out, log, store)
            self._times.append(frame.time)
            explained.append(_explained(out)[1:])
        maxima = clip_maxima(store, self.panels, self.settings.smoothing)
        renderer = MapRenderer(self.panels, self.settings, self.info.class_names, maxima)
        layer_maps = {name: store.read(name) for name in store.shapes}
        sink = None if self.reader.is_image else VideoWriter(self.output, self.reader.info)
        count = 0
        try:
            for i, frame in enumerate(self.reader):
                if i >= len(explained):
                    raise InputError("the input decoded differently the second time", self.source)
                maps = {name: array[i] for name, array in layer_maps.items()}
                image = renderer.render(frame.image, maps, *explained[i])
                if sink is None:
                    write_image(self.output, image)
                else:
                    sink.write(image, frame.pts, duration=frame.duration)
                count += 1
                self.advance()
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        if sink is not None:
            sink.close()
        return count


def process_media(
    server: GradcamServer,
    source: str | Path,
    output: str | Path,
    settings: JobSettings | None = None,
    *,
    predictions: str | Path | None = None,
    maps: str | Path | None = None,
    progress: Progress | None = None,
) -> JobResult:
    """Turn `source` (video or image) into `output` with heat maps; see `JobSettings`.

    Raises a `GradcamError` subclass with a one-line message for every expected failure; the
    output file only appears when complete, and predictions made before a failure are kept in
    ``<predictions>.partial``.
    """
    job = _Job(server, source, output, settings or JobSettings(), predictions, maps, progress)
    try:
        return job.run()
    except GradcamError as error:
        if job.done:
            error.add_note(f"{job.done} frame(s) were done")
        raise
