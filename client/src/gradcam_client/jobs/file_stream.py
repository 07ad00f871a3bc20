"""The file job's two ends of the stream engine: `InferenceStream` decodes ahead and sends the
frames through a `RequestLoop` within a memory budget; `EncoderThread` composes and encodes
them on `RenderStages`."""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from gradcam_client.errors import (
    InputError,
)
from gradcam_client.jobs.engine import RenderStages, RequestLoop
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.media import (
    Frame,
    VideoInfo,
    VideoWriter,
)
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.server import BatchResult, GradcamServer
from gradcam_client.render.renderer import MapRenderer, encode, frame_outputs


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

    def outputs(self, results: list[BatchResult]) -> list[Any]:
        """The per-frame outputs of one batch's answers."""
        (result,) = results
        return frame_outputs(result)

    def _take(
        self, items: queue.Queue, batch_size: int, keep_images: bool
    ) -> Callable[[threading.Event], list[tuple[Frame, Any]]]:
        """The engine's `take`: the next decoded frames, up to a batch ([] at the end)."""

        def take(stopping: threading.Event) -> list[tuple[Frame, Any]]:
            batch: list[tuple[Frame, Any]] = []
            while len(batch) < batch_size and not stopping.is_set():
                try:
                    item = items.get(timeout=STOP_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    items.put(None)  # the end stays visible to the next take
                    break
                frame, small = item
                batch.append((frame if keep_images else _without_image(frame), small))
            return batch

        return take

    def _send(
        self, target: Any
    ) -> Callable[[ThreadPoolExecutor, list[tuple[Frame, Any]], threading.Event], list[Future]]:
        def send(
            pool: ThreadPoolExecutor, batch: list[tuple[Frame, Any]], cancel: threading.Event
        ) -> list[Future]:
            return self.send(pool, [small for _, small in batch], target, cancel)

        return send

    def run(
        self,
        frames: Iterable[Frame],
        target: Any,
        keep_images: bool = True,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[Frame, Any]]:
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
        loop = RequestLoop(
            self._take(items, self.batch_size, keep_images),
            self._send(target),
            self.max_in_flight,
            requests_per_batch=self.requests_per_batch,
            abort=cancel,
        )
        try:
            for answer in loop.answers():
                assert answer.results is not None  # a file job is never stopped gracefully
                outputs = self.outputs(answer.results)
                yield from zip((frame for frame, _ in answer.batch), outputs, strict=True)
        finally:
            stop.set()
            while decoder.is_alive():  # unblock a decoder waiting on a full queue
                try:
                    items.get_nowait()
                except queue.Empty:
                    decoder.join(STOP_POLL_S)


def _without_image(frame: Frame) -> Frame:
    return replace(frame, image=np.empty((0, 0, 3), np.uint8))


class EncoderThread:
    """Composes a heat-map video's frames and encodes them on the engine's `RenderStages`:
    the caller keeps receiving results and sending requests while earlier frames are composed
    and encoded, and composing the next frame overlaps with encoding the last one."""

    def __init__(
        self, writer: VideoWriter, renderer: MapRenderer, depth: int = 8, composed_depth: int = 2
    ) -> None:
        self.writer = writer
        self.writer.open()
        self.stages = RenderStages(
            renderer.compose,
            functools.partial(encode, writer),
            depth,
            composed_depth,
            deliver_name="encode",
        )

    def put(self, frame: Frame, explained: tuple[Any, ...]) -> None:
        """Queue one frame with what the renderer's `compose` takes besides it (for a
        `MapRenderer`: its maps, explained class and probability)."""
        self.stages.put(frame, *explained)

    def finish(self, path: Path | None = None) -> int:
        """Wait for the queued frames, then close the file (as `path` if given); returns the
        frames written."""
        self.stages.join()
        if self.stages.error is not None:
            self.writer.abort()
            raise self.stages.error
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
        self.stages.join(drop=True)
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
