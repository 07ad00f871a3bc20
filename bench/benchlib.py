"""Shared helpers of the benchmark scripts: Triton on free ports, exports, timing, reports.

Every script starts its own Triton (from the nvidia-pytriton wheel, via
`bench/local_triton.py`, as the tests do) on free loopback ports, on a temporary model
repository it exports itself, and writes ``bench/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


# --------------------------------------------------------------------------- server


@contextlib.contextmanager
def running_triton(repository: Path, log_dir: Path, ready_timeout: float = 600.0):
    """Start Triton on free ports for `repository`, wait until every model is ready, stop it."""
    import local_triton

    started = time.perf_counter()
    with local_triton.running_triton(
        repository, log_dir=log_dir, ready_timeout=ready_timeout
    ) as server:
        log(f"Triton ready on {server.urls.grpc} after {time.perf_counter() - started:.0f} s")
        yield server


def export_model(
    source: Any,
    repository: Path,
    name: str,
    *,
    predictions_only: bool = False,
    max_batch_size: int = 16,
) -> Path:
    """Export `source` (a `SourceModel`) as Triton model `name`: Grad-CAM on the default
    layer (method gradcam), or the forward pass alone with `predictions_only`."""
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    started = time.perf_counter()
    folder = export(
        source,
        repository,
        name=name,
        layers=[] if predictions_only else None,
        methods=["gradcam"],
        options=ServingOptions(max_batch_size=max_batch_size),
    )
    log(f"exported {name} in {time.perf_counter() - started:.0f} s")
    return folder


def load_source(model: str) -> Any:
    """A built-in `SourceModel`: EfficientNet-Lite0 with its real offline weights, or VGG16
    with random weights (its ImageNet weights need a download)."""
    from gradcam_server import model_sources

    if model == "efficientnet-lite0":
        return model_sources.efficientnet_lite0("imagenet")
    if model == "vgg16":
        import keras

        keras.utils.set_random_seed(0)
        return model_sources.vgg16(None)
    raise SystemExit(f"unknown model {model!r}: use efficientnet-lite0 or vgg16")


def server_cpu_seconds(server: Any) -> float:
    """User + system CPU seconds used so far by Triton and its backend stubs."""
    import psutil

    total = 0.0
    for pid in server.pids():
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def triton_compute(client: Any) -> dict[str, float]:
    """Cumulative Triton statistics of the client's model: executions, inferences, seconds."""
    stats = client.statistics()[0]["model_stats"]
    out = {"executions": 0.0, "inferences": 0.0, "queue_s": 0.0, "compute_s": 0.0}
    for model in stats:
        inference = model.get("inference_stats", {})
        out["executions"] += float(model.get("execution_count", 0))
        out["inferences"] += float(model.get("inference_count", 0))
        out["queue_s"] += float(inference.get("queue", {}).get("ns", 0)) / 1e9
        for part in ("compute_input", "compute_infer", "compute_output"):
            out["compute_s"] += float(inference.get(part, {}).get("ns", 0)) / 1e9
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in after}


# --------------------------------------------------------------------------- load generation


@dataclass
class StreamTiming:
    """One run of batches through the server."""

    frames: int
    seconds: float
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    triton: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def stream_batches(
    client: Any,
    frames: np.ndarray,
    total: int,
    batch_size: int,
    in_flight: int,
    server: Any | None = None,
    keep: Callable[[int, Any], None] | None = None,
) -> StreamTiming:
    """Send `total` frames (cycling through `frames`, already at the model's input size) in
    requests of `batch_size` frames with at most `in_flight` requests outstanding, the way
    the client pipeline does; ``keep(offset, result)`` receives every answer in order."""
    targets = np.full(batch_size, -1, np.int32)
    n = len(frames)
    offsets = list(range(0, total, batch_size))

    def batch(offset: int) -> np.ndarray:
        size = min(batch_size, total - offset)
        index = (np.arange(offset, offset + size)) % n
        return np.ascontiguousarray(frames[index])

    prepared = [batch(offset) for offset in offsets]
    before_stats = triton_compute(client)
    before_server = server_cpu_seconds(server) if server is not None else 0.0
    with ThreadPoolExecutor(in_flight, thread_name_prefix="bench") as pool:
        pending: deque[tuple[int, Future[Any]]] = deque()
        cpu0, started = time.process_time(), time.perf_counter()
        for offset, images in zip(offsets, prepared, strict=True):
            if len(pending) >= in_flight:
                done_offset, future = pending.popleft()
                result = future.result()
                if keep:
                    keep(done_offset, result)
            pending.append((offset, pool.submit(client.infer, images, targets[: len(images)])))
        while pending:
            done_offset, future = pending.popleft()
            result = future.result()
            if keep:
                keep(done_offset, result)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return StreamTiming(
        frames=total,
        seconds=seconds,
        client_cpu_s=cpu,
        server_cpu_s=(server_cpu_seconds(server) - before_server) if server is not None else 0.0,
        triton=delta(triton_compute(client), before_stats),
    )


# --------------------------------------------------------------------------- the tutorial recipe


class EagerGradCam:
    """Grad-CAM the way the common tutorials do it (Keras' "Grad-CAM class activation
    visualization" example): a Keras model returning the layer's output and the predictions,
    one `tf.GradientTape` call per frame in eager mode, numpy for the weights and the map."""

    def __init__(self, source: Any, layer: str | None = None) -> None:
        import keras

        from gradcam_server.keras_network import logits_model

        model = logits_model(source.model)  # same weights; scores before the softmax
        self.layer = layer or source.default_layers[0]
        self.preprocess = source.preprocess
        self.grad_model = keras.Model(
            model.inputs, [model.get_layer(self.layer).output, model.output]
        )

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        """The [0, 1] heat map ([h, w]) and the predicted class of one model-size RGB frame."""
        import tensorflow as tf

        batch = np.asarray(self.preprocess(rgb[None].astype(np.float32)))
        with tf.GradientTape() as tape:
            conv_output, preds = self.grad_model([batch])
            pred_index = int(tf.argmax(preds[0]))
            class_channel = preds[:, pred_index]
        grads = tape.gradient(class_channel, conv_output).numpy()
        pooled = grads.mean(axis=(0, 1, 2))
        heatmap = np.maximum(conv_output.numpy()[0] @ pooled, 0.0)
        peak = heatmap.max()
        return (heatmap / peak if peak > 0 else heatmap), pred_index


# --------------------------------------------------------------------------- reporting


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """ "min..max" of a list of numbers, for the tables."""
    return f"{min(values):.2f}..{max(values):.2f}" if values else "-"


def rotated(items: Sequence[Any], round_index: int) -> list[Any]:
    """`items` rotated by the round number, so no variant always runs first."""
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


def machine_info() -> dict[str, Any]:
    """What the figures depend on: cores, load, versions."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "nvidia-pytriton", "tritonclient"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def check(ratio: float, target: float, higher_is_better: bool = True) -> str:
    met = ratio >= target if higher_is_better else ratio < target
    return "met" if met else "MISSED"


def ratio_line(label: str, ratio: float, target: float, higher_is_better: bool = True) -> str:
    sign = ">=" if higher_is_better else "<"
    return (
        f"{label}: {ratio:.2f} (target {sign} {target:g}) {check(ratio, target, higher_is_better)}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, str]:
    """The same table as plain text (for the terminal) and as markdown."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    text = "\n".join(
        "  ".join(
            cell.rjust(width) if i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    )
    md = "\n".join(
        ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        + ["| " + " | ".join(row) + " |" for row in cells[1:]]
    )
    return text, md


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_results(name: str, data: dict[str, Any], markdown: str, output_dir: Path) -> None:
    """Write ``<name>.json`` and ``<name>.md`` into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{name}.json").write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    (output_dir / f"{name}.md").write_text(markdown.rstrip() + "\n")
    log(f"wrote {output_dir / name}.json and .md")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@contextlib.contextmanager
def work_dir(keep: bool) -> Iterator[Path]:
    """A temporary folder for the repository, clips and logs (kept with ``keep``)."""
    path = Path(tempfile.mkdtemp(prefix="gradcam-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
