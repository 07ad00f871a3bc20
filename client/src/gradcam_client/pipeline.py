"""Process a video (or an image) through a Grad-CAM server into a heat-map video.

Frames are decoded in a background thread, resized to the model's input size, sent in
batches with a bounded number of requests in flight, and put back in frame order before they
are composed on the original full-resolution frames and encoded. Memory stays flat: about
``batch_size * max_in_flight`` frames wait for the server, fewer for huge frames (see
`FRAME_MEMORY_BUDGET`); maps go to disk when a whole-clip pass needs them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from gradcam_client import contract
from gradcam_client.compose import CompositionSettings, Layout, compose_frame, format_label
from gradcam_client.compose_yuv import (
    AnyPicture,
    PicturePool,
    draw_label_yuv,
    overlay_yuv,
    picture_size,
)
from gradcam_client.contract import ModelInfo
from gradcam_client.errors import (
    Cancelled,
    GradcamError,
    InputError,
    NoFramesError,
    OutputError,
)
from gradcam_client.media_writer import ENCODERS, choose_encoder
from gradcam_client.normalize import (
    DEFAULT_DECAY,
    DEFAULT_SMOOTHING,
    Normalizer,
    Scope,
    TemporalSmoother,
)
from gradcam_client.results import MapStore, PredictionLog, frame_record
from gradcam_client.runtime import prepare_for_frames
from gradcam_client.targets import TargetChoice, video_class
from gradcam_client.triton import BatchResult, GradcamServer
from gradcam_client.video_io import (
    DecodeReport,
    Frame,
    MediaReader,
    VideoInfo,
    VideoWriter,
    open_media,
    write_image,
)

Progress = Callable[[int, int | None], None]
"""Called with (frames done, total frames if known) as the job advances."""

ENCODER_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class JobSettings:
    """Everything about a job except its files and its server."""

    target: str | None = None  # None/"predicted", "video", a class index or a class name
    layers: tuple[str, ...] = ()  # default: the model's first layer (all of them in a grid)
    methods: tuple[str, ...] = ()  # default: the model's first method
    scope: str = "running"
    smoothing: float = DEFAULT_SMOOTHING
    decay: float = DEFAULT_DECAY
    composition: CompositionSettings = field(default_factory=CompositionSettings)
    batch_size: int = 8
    max_in_flight: int = 4
    on_corrupt: str = "skip"
    top_k: int = 5
    # libx264: superfast at CRF 21 looks as good as veryfast at CRF 20 (luma PSNR and SSIM on
    # heat-map frames) for 0.54-0.58 of its CPU and 1.35-1.4 times the bytes
    # (bench/encoder_cost.py)
    encoder_preset: str = "superfast"
    crf: int = 21
    yuv: bool = True  # compose on the decoded yuv420p pictures when the input and layout allow
    encoder: str = "auto"  # H.264 encoder (ENCODERS): "auto" is NVENC when it opens, else libx264
    encoder_threads: int = 0  # 0: the encoder's own choice

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_in_flight < 1:
            raise InputError("batch size and requests in flight must be at least 1")
        if self.encoder_preset not in ENCODER_PRESETS:
            raise InputError(
                f"unknown encoder preset {self.encoder_preset!r}; choose from "
                f"{', '.join(ENCODER_PRESETS)}"
            )
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be between 0 and 51; got {self.crf}")
        if self.encoder not in ENCODERS:
            raise InputError(f"unknown encoder {self.encoder!r}; choose from {', '.join(ENCODERS)}")
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


def composes_in_yuv(settings: JobSettings, yuv_ready: bool) -> bool:
    """Whether frames can be composed on their yuv420p pictures (see `compose_yuv`): the
    input allows it (`yuv_ready`) and the layout is a plain overlay at the input's size."""
    composition = settings.composition
    return (
        settings.yuv
        and yuv_ready
        and composition.layout is Layout.OVERLAY
        and not composition.heat_weighted
        and composition.max_width is None
    )


def resize_for_model(image: np.ndarray, info: ModelInfo) -> np.ndarray:
    """The frame at the model's input size (area interpolation when shrinking)."""
    h, w = image.shape[:2]
    size = (info.input_width, info.input_height)
    shrinking = h >= info.input_height and w >= info.input_width
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


FRAME_MEMORY_BUDGET = 1 << 30
"""Bytes of full-resolution frames the stream may hold while they wait for the server."""

STOP_POLL_S = 0.05
"""How often a stream waiting for decoded frames looks whether it was cancelled."""

_NOTHING = object()


class InferenceStream:
    """Frames in, (frame, server output) out, in order, with bounded requests in flight.

    With `frame_bytes` (the size of one full-resolution frame) the batch size, requests in
    flight and decoding queue shrink so that the frames held stay within `memory_budget`
    (but at least one request of one frame proceeds, however large the frames).
    """

    def __init__(
        self,
        server: GradcamServer,
        info: ModelInfo,
        settings: JobSettings,
        frame_bytes: int | None = None,
        memory_budget: int = FRAME_MEMORY_BUDGET,
    ) -> None:
        self.server = server
        self.info = info
        batch = min(settings.batch_size, info.max_batch_size)
        in_flight = settings.max_in_flight
        queued = batch * in_flight
        if frame_bytes:
            # Held at once: the requests in flight, the batch being composed, the queue.
            frames = max(2, memory_budget // frame_bytes)
            if (in_flight + 1) * batch + queued > frames:
                batch = max(1, min(batch, frames // 4))
                in_flight = max(1, min(in_flight, frames // batch - 2))
                queued = max(1, frames - (in_flight + 1) * batch)
        self.batch_size = batch
        self.max_in_flight = in_flight
        self.queue_size = queued

    def _decode(self, frames: Iterable[Frame], out: queue.Queue, stop: threading.Event) -> None:
        """Background decoding: (frame, model-size image) items, then None or an exception."""
        try:
            for frame in frames:
                if stop.is_set():
                    return
                out.put((replace(frame, thumbnail=None), self.model_input(frame)))
            out.put(None)
        except av.error.FFmpegError as error:  # not anticipated by the reader: still one line
            path = getattr(frames, "path", None)
            out.put(InputError(f"decoding failed ({error.strerror or error})", path))
        except BaseException as error:  # handed to the consumer thread
            out.put(error)

    def model_input(self, frame: Frame) -> Any:
        """What is sent for `frame`: the decoder's thumbnail, else the frame resized."""
        if frame.thumbnail is not None:
            return frame.thumbnail
        return resize_for_model(frame.image, self.info)

    requests_per_batch = 1
    """Requests `send` makes for each batch (the thread pool holds that many per batch)."""

    def send(
        self, pool: ThreadPoolExecutor, inputs: list[Any], target: Any, stop: threading.Event
    ) -> list[Future[BatchResult]]:
        """Submit the requests of one batch (`model_input` of each frame)."""
        targets = np.full(len(inputs), target, np.int32)
        return [pool.submit(self.server.infer, np.stack(inputs), targets, stop)]

    def outputs(self, futures: list[Future[BatchResult]]) -> list[Any]:
        """The per-frame outputs of one batch's requests (waits for them)."""
        (future,) = futures
        return frame_outputs(future.result())

    def _batches(
        self, items: queue.Queue, stop: threading.Event
    ) -> Iterator[list[tuple[Frame, Any]]]:
        """The decoded frames in batches; `Cancelled` once `stop` is set (the decoder then
        ends without a last item)."""
        batch: list[tuple[Frame, Any]] = []
        while True:
            try:
                item = items.get(timeout=STOP_POLL_S)
            except queue.Empty:
                item = _NOTHING
            if stop.is_set():
                raise Cancelled("the job was stopped")
            if item is _NOTHING:
                continue
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
        self,
        frames: Iterable[Frame],
        target: int,
        keep_images: bool = True,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[Frame, FrameOutput]]:
        """Yield every decoded frame with its result, in frame order.

        Without ``keep_images`` the full-resolution pixels are dropped as soon as the frame is
        resized, for passes that only need the server's answers. Setting `cancel` ends the
        stream within a batch: decoding stops, requests not yet answered are dropped or end
        their retries (`RequestCancelled`), and waiting for the next frames raises `Cancelled`.
        """
        items: queue.Queue = queue.Queue(maxsize=self.queue_size)
        stop = threading.Event()
        decoder = threading.Thread(target=self._decode, args=(frames, items, stop), daemon=True)
        decoder.start()
        if cancel is not None:
            threading.Thread(target=_relay, args=(cancel, stop), daemon=True).start()
        pending: deque[tuple[list[Frame], list[Future[BatchResult]]]] = deque()
        pool = ThreadPoolExecutor(
            self.max_in_flight * self.requests_per_batch, thread_name_prefix="infer"
        )
        try:
            for batch in self._batches(items, stop):
                futures = self.send(pool, [small for _, small in batch], target, stop)
                kept = [f if keep_images else _without_image(f) for f, _ in batch]
                del batch
                pending.append((kept, futures))
                if len(pending) >= self.max_in_flight:
                    yield from self._split(*pending.popleft())
            while pending:
                yield from self._split(*pending.popleft())
        finally:
            # On failure: stop decoding, drop queued requests, end retries of running ones.
            stop.set()
            for _, futures in pending:
                for future in futures:
                    future.cancel()
            while decoder.is_alive():  # unblock a decoder waiting on a full queue
                try:
                    items.get_nowait()
                except queue.Empty:
                    decoder.join(0.05)
            pool.shutdown(wait=True, cancel_futures=True)

    def _split(
        self, frames: list[Frame], futures: list[Future[BatchResult]]
    ) -> Iterator[tuple[Frame, Any]]:
        yield from zip(frames, self.outputs(futures), strict=True)


def _relay(cancel: threading.Event, stop: threading.Event) -> None:
    """Set `stop` once `cancel` is set; return when either is."""
    while not stop.is_set():
        if cancel.wait(0.05):
            stop.set()


def _without_image(frame: Frame) -> Frame:
    return replace(frame, image=np.empty((0, 0, 3), np.uint8))


def explanation(out: FrameOutput) -> tuple[dict[str, np.ndarray], int, float]:
    """The maps, the explained class and its probability: what a frame's label shows."""
    return out.maps, out.class_index, float(out.probabilities[out.class_index])


def frame_outputs(result: BatchResult) -> list[FrameOutput]:
    """A batch's answer split into one `FrameOutput` per frame."""
    return [
        FrameOutput(
            probabilities=result.probabilities[i],
            class_index=int(result.class_index[i]),
            maps={layer: maps[i] for layer, maps in result.maps.items()},
        )
        for i in range(len(result.class_index))
    ]


class MapRenderer:
    """Smooths, normalises and composes the selected maps onto full-resolution frames.

    Creating one makes OpenCV and numpy's BLAS run on the calling thread only and malloc keep
    freed blocks, for the whole process (`runtime.prepare_for_frames`). A yuv420p frame is
    composed into a picture of the renderer's own `PicturePool`, never in place, so a
    decoder's planes can be read as they are.
    """

    def __init__(
        self,
        panels: list[Panel],
        settings: JobSettings,
        class_names: tuple[str, ...],
        clip_maxima: list[float] | None = None,
    ) -> None:
        prepare_for_frames()
        self.pictures = PicturePool()
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

    def _heats(self, maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        heats = {
            panel.title: normalizer(raw)
            for panel, normalizer, raw in zip(
                self.panels, self.normalizers, self.smoothed(maps), strict=True
            )
        }
        composition = self.settings.composition
        if composition.layout is not Layout.GRID and not composition.show_titles:
            heats = {"": next(iter(heats.values()))}
        return heats

    def render(
        self, image: np.ndarray, maps: dict[str, np.ndarray], class_index: int, probability: float
    ) -> np.ndarray:
        """The output frame: maps of this frame over the full-resolution image, labelled."""
        label = format_label(self.class_names[class_index], probability)
        return compose_frame(image, self._heats(maps), self.settings.composition, label)

    def render_picture(
        self,
        picture: AnyPicture,
        maps: dict[str, np.ndarray],
        class_index: int,
        probability: float,
    ) -> np.ndarray:
        """`render` for the overlay layout on a yuv420p picture (see `compose_yuv`): the
        output frame, a picture of the renderer's pool (`picture` is only read)."""
        ((title, heat),) = self._heats(maps).items()
        composition = self.settings.composition
        out = overlay_yuv(
            picture,
            heat,
            composition.colormap,
            composition.alpha,
            interpolation=composition.interpolation,
            out=self.pictures.take(*picture_size(picture)),
        )
        if composition.show_titles and title:
            draw_label_yuv(out, title, "top-left")
        if composition.show_label:
            label = format_label(self.class_names[class_index], probability)
            draw_label_yuv(out, label, "bottom-left")
        return out

    def compose(self, frame: Frame, maps: dict[str, np.ndarray], *explained: Any) -> Frame:
        """The output frame of `frame` (RGB or yuv420p, as decoded), with its timing."""
        if frame.pixel_format == "yuv420p":
            return replace(frame, image=self.render_picture(frame.image, maps, *explained))
        return replace(frame, image=self.render(frame.image, maps, *explained))

    def write(
        self, sink: VideoWriter, frame: Frame, maps: dict[str, np.ndarray], *explained: Any
    ) -> None:
        """Compose one frame and hand it to the encoder."""
        encode(sink, self.compose(frame, maps, *explained))


def encode(sink: VideoWriter, composed: Frame) -> None:
    """Hand a composed frame (see `MapRenderer.compose`) to the encoder."""
    if composed.pixel_format == "yuv420p":
        sink.write_picture(composed.image, composed.pts, duration=composed.duration)
    else:
        sink.write(composed.image, composed.pts, duration=composed.duration)


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


class EncoderThread:
    """Composes frames on one worker thread and encodes them on another, in order, behind
    bounded queues.

    The caller keeps receiving results and sending requests while the previous frames are
    composed and encoded, so the server's pace is not held up by the encoder; composing the
    next frame overlaps with encoding the last one (FFmpeg and OpenCV release the GIL while
    they work). At most `depth` frames wait to be composed and `composed_depth` to be encoded.
    """

    def __init__(
        self, writer: VideoWriter, renderer: MapRenderer, depth: int = 8, composed_depth: int = 2
    ) -> None:
        self.writer = writer
        self.renderer = renderer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._composed: queue.Queue = queue.Queue(maxsize=composed_depth)
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._compose, name="compose", daemon=True),
            threading.Thread(target=self._encode, name="encode", daemon=True),
        ]
        self.writer.open()
        for thread in self._threads:
            thread.start()

    def _compose(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain after a failure so the producer never blocks
            frame, explained = item
            try:
                self._composed.put(self.renderer.compose(frame, *explained))
            except BaseException as error:
                self._error = error
        self._composed.put(None)

    def _encode(self) -> None:
        while (composed := self._composed.get()) is not None:
            if self._error is not None:
                continue
            try:
                encode(self.writer, composed)
            except BaseException as error:
                self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _join(self) -> None:
        self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def put(self, frame: Frame, explained: tuple[Any, ...]) -> None:
        """Queue one frame with what the renderer's `compose` takes besides it (for a
        `MapRenderer`: its maps, explained class and probability)."""
        self._raise()
        self._queue.put((frame, explained))

    def finish(self, path: Path | None = None) -> int:
        """Wait for the queued frames, then close the file (as `path` if given); returns the
        frames written."""
        self._join()
        if self._error is not None:
            self.writer.abort()
            raise self._error
        self.writer.close(path)
        return self.writer.frames_written

    def finish_partial(self, path: Path) -> Path | None:
        """After a failure: keep the frames encoded so far as `path` (None if there are none)."""
        try:
            self.finish(path)
        except Exception:  # nothing (usable) was encoded: the failure that got here matters
            self.writer.abort()
            return None
        return path

    def abort(self) -> None:
        """Stop, dropping queued frames, and delete the partial output."""
        self._error = self._error or RuntimeError("aborted")
        self._join()
        self.writer.abort()


def heat_map_writer(
    output: Path, info: VideoInfo, settings: JobSettings, encoder: str
) -> VideoWriter:
    """The H.264 sink of a heat-map video, with the job's preset, CRF, encoder and threads."""
    return VideoWriter(
        output,
        info,
        preset=settings.encoder_preset,
        crf=settings.crf,
        encoder=encoder,
        threads=settings.encoder_threads,
    )


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
