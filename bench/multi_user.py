"""Several users on one server: throughput, fairness, latency, overload and memory, measured.

One Triton serves EfficientNet-Lite0 (Grad-CAM of its default layer, the stock serving
options: batches of up to 16 frames, 5 ms queue delay, a queue of 64 requests) and a copy of
the same SavedModel whose queue holds only ``--overload-queue`` requests. Every client is a
subprocess of its own (this script with ``--worker``) using
`gradcam_client.remote.server.GradcamServer` as the file job does: requests of
``--batch-size`` frames, at most ``--in-flight`` at once.

* Fairness and throughput: 1, 2, 4 and 8 clients at once (``--levels``) send frames for a
  common window of ``--seconds`` after a warm-up; the levels run in interleaved rounds whose
  order rotates. Per level: aggregate frames/s against one client alone (target >= 0.9x),
  each client's share of the frames against an equal share (target 0.75x..1.33x), p50/p95
  latency per request, and the mean batch size the server formed (inferences / executions
  from its statistics over the window).
* Overload: ``--overload-clients`` clients with ``--overload-in-flight`` requests in flight
  each, against the small queue, in interleaved rounds with the client as shipped (after a
  full-queue refusal it sends fewer requests at once) and with a baseline client that treats
  a full queue like a server that is down (the same number in flight whatever happens); both
  back off before resending: refusals seen, frames/s, each client's share, latency.
* Memory: the real ``gradcam-video`` CLI on a clip of ``--memory-frames`` frames; RSS of the
  client and of Triton plus its backend stubs (psutil), sampled all along. The server's RSS is
  also sampled during the whole benchmark, per process, against the frames it has served, and
  recorded after every phase.

    .venv/bin/python bench/multi_user.py            # ~10 min on 2 cores
    .venv/bin/python bench/multi_user.py --quick    # smoke run, ~2-3 min

Writes ``bench/results/multi_user.{json,md,png}`` (``multi_user-quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import log, median

NAME = "multi_user"
MODEL = "efficientnet-lite0"
SMALL_QUEUE = "efficientnet-lite0-small-queue"
THROUGHPUT_TARGET = 0.9
SHARE_RANGE = (0.75, 1.33)
OVERLOAD_VARIANTS = {"as shipped": False, "baseline": True}  # label -> baseline client
WORKER_GRACE_S = 120.0  # how long a worker may take past its window before it is killed


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--levels", type=_ints, help="clients at once (default 1,2,4,8)")
    parser.add_argument("--rounds", type=int, help="rounds over the levels (default 3)")
    parser.add_argument("--seconds", type=float, help="measured window per run (default 20)")
    parser.add_argument("--warmup", type=float, help="seconds before the window (default 4)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per request")
    parser.add_argument("--in-flight", type=int, default=2, help="requests in flight per client")
    parser.add_argument("--overload-clients", type=int, default=4)
    parser.add_argument("--overload-in-flight", type=int, default=4)
    parser.add_argument("--overload-queue", type=int, default=2, help="max_queue_size")
    parser.add_argument("--overload-seconds", type=float, help="window (default 15)")
    parser.add_argument("--memory-frames", type=int, help="frames of the CLI run (default 2400)")
    parser.add_argument("--memory-size", default="160x120", help="WIDTHxHEIGHT of that clip")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # JSON spec: run as one client
    args = parser.parse_args(argv)
    quick = {
        "levels": [1, 2, 4],
        "rounds": 1,
        "seconds": 6.0,
        "warmup": 2.0,
        "overload_seconds": 6.0,
        "memory_frames": 300,
    }
    full = {
        "levels": [1, 2, 4, 8],
        "rounds": 3,
        "seconds": 20.0,
        "warmup": 4.0,
        "overload_seconds": 15.0,
        "memory_frames": 2400,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# --------------------------------------------------------------------------- one client


@dataclass
class WorkerSpec:
    """What one client subprocess does."""

    url: str
    model: str
    index: int
    batch_size: int
    in_flight: int
    baseline: bool = False


def worker_main(spec_json: str) -> int:
    """One client: prepare frames, say ready, wait for "go T0 T1", stream until T1, report.

    Requests finishing in [T0, T1] count; each thread keeps one request outstanding, and the
    client's `GradcamServer` caps them at ``in_flight``. With ``baseline``, the client does
    not recognise a full queue: every refusal is retried on its own with the exponential
    back-off of any unavailable server and the window never shrinks (the client before it
    learnt about full queues). Prints one JSON line: every request's (sent, done, frames) and
    the retries the client saw.
    """
    import gradcam_client.remote.server as triton_client
    from gradcam_client.media.samples import PHOTOS, pan_zoom_frames

    spec = WorkerSpec(**json.loads(spec_json))
    if spec.baseline:
        triton_client.is_queue_full = lambda error: False
    server = triton_client.GradcamServer(
        spec.url,
        spec.model,
        retry=triton_client.RetryPolicy(deadline_s=60),
        max_in_flight=spec.in_flight,
    )
    info = server.model_info()
    size = (info.input_width, info.input_height)
    frames = np.stack(pan_zoom_frames(16, size, PHOTOS[spec.index % len(PHOTOS)]))
    targets = np.full(spec.batch_size, -1, np.int32)
    print("ready", flush=True)
    command = sys.stdin.readline().split()
    if not command or command[0] != "go":
        return 1
    start, stop = float(command[1]), float(command[2])
    records: list[tuple[float, float, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def stream(thread: int) -> None:
        offset = thread * spec.batch_size
        for _ in range(100_000):  # bounded; ends at `stop`
            if time.time() >= stop:
                return
            index = np.arange(offset, offset + spec.batch_size) % len(frames)
            offset += spec.batch_size * spec.in_flight
            sent = time.time()
            try:
                server.infer(frames[index], targets)
            except Exception as error:  # reported in the output
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                return
            with lock:
                records.append((sent, time.time(), spec.batch_size))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(spec.in_flight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = server.retried
    print(
        json.dumps(
            {
                "index": spec.index,
                "start": start,
                "stop": stop,
                "records": records,
                "errors": errors,
                "queue_full": counts.queue_full,
                "unavailable": counts.unavailable,
            }
        ),
        flush=True,
    )
    return 0


# --------------------------------------------------------------------------- runs of clients


@dataclass
class Run:
    """Several clients at once over one window, with the server's view of it."""

    label: str
    clients: int
    seconds: float
    client_frames: list[int]
    latencies_s: list[float]
    inferences: float
    executions: float
    server_cpu_s: float
    queue_full: int
    unavailable: int
    errors: list[str] = field(default_factory=list)

    @property
    def total_frames(self) -> int:
        return sum(self.client_frames)

    @property
    def fps(self) -> float:
        return self.total_frames / self.seconds

    @property
    def shares(self) -> list[float]:
        """Each client's frames over an equal share of the total."""
        equal = self.total_frames / self.clients
        return [frames / equal if equal else 0.0 for frames in self.client_frames]

    @property
    def refusals(self) -> int:
        """Requests refused and retried (only full queues here: the server stays up)."""
        return self.queue_full + self.unavailable

    @property
    def mean_batch(self) -> float:
        return self.inferences / self.executions if self.executions else float("nan")

    def latency(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "clients": self.clients,
            "seconds": self.seconds,
            "client_frames": self.client_frames,
            "fps": self.fps,
            "shares": self.shares,
            "p50_ms": self.latency(50) * 1000,
            "p95_ms": self.latency(95) * 1000,
            "requests": len(self.latencies_s),
            "mean_batch": self.mean_batch,
            "inferences": self.inferences,
            "executions": self.executions,
            "server_cpu_s": self.server_cpu_s,
            "queue_full": self.queue_full,
            "unavailable": self.unavailable,
            "errors": self.errors,
        }


def run_clients(
    server: Any,
    model: str,
    clients: int,
    *,
    batch_size: int,
    in_flight: int,
    seconds: float,
    warmup: float,
    label: str,
    baseline: bool = False,
) -> Run:
    """Start `clients` worker subprocesses, let them stream, and measure the common window."""
    from gradcam_client.remote.server import GradcamServer

    stats_client = GradcamServer(server.urls.grpc, model)
    procs = []
    for index in range(clients):
        spec = WorkerSpec(server.urls.grpc, model, index, batch_size, in_flight, baseline)
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(spec.__dict__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for proc in procs:  # each prints "ready" once connected and prepared
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a client failed to start (said {line!r})")
        start = time.time() + warmup
        stop = start + seconds
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"go {start!r} {stop!r}\n")
            proc.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        before = benchlib.triton_compute(stats_client)
        cpu_before = benchlib.server_cpu_seconds(server)
        time.sleep(max(0.0, stop - time.time()))
        after = benchlib.triton_compute(stats_client)
        cpu_after = benchlib.server_cpu_seconds(server)
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=WORKER_GRACE_S)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stats_client.close()

    client_frames, latencies, errors = [], [], []
    for report in sorted(reports, key=lambda r: r["index"]):
        done = [(s, d, n) for s, d, n in report["records"] if start <= d <= stop]
        client_frames.append(sum(n for _, _, n in done))
        latencies.extend(d - s for s, d, _ in done)
        errors.extend(report["errors"])
    delta = benchlib.delta(after, before)
    return Run(
        label=label,
        clients=clients,
        seconds=seconds,
        client_frames=client_frames,
        latencies_s=latencies,
        inferences=delta["inferences"],
        executions=delta["executions"],
        server_cpu_s=cpu_after - cpu_before,
        queue_full=sum(r["queue_full"] for r in reports),
        unavailable=sum(r["unavailable"] for r in reports),
        errors=errors,
    )


# --------------------------------------------------------------------------- memory


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes, in MB (those that have gone count zero)."""
    import psutil

    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / 1e6


@dataclass
class ServerSample:
    """Triton's memory at one moment, with the frames it had served by then."""

    t: float
    frames: float
    total_mb: float
    processes: dict[str, float]  # "tritonserver" or "stub <model>" -> MB


def process_label(pid: int) -> str:
    """ "tritonserver", or "stub <model>" for a python backend stub (named in its command)."""
    import psutil

    with contextlib.suppress(psutil.Error, IndexError):
        command = psutil.Process(pid).cmdline()
        if "backend_stub" in command[0]:
            return f"stub {Path(command[1]).parent.parent.name}"
    return "tritonserver"


class ServerMemory:
    """Samples the RSS of Triton and each backend stub, and the frames served, every second."""

    def __init__(self, server: Any, models: list[str], every_s: float = 1.0) -> None:
        from gradcam_client.remote.server import GradcamServer

        self.server = server
        self.clients = [GradcamServer(server.urls.grpc, model) for model in models]
        self.every_s = every_s
        self.samples: list[ServerSample] = []
        self.checkpoints: list[tuple[str, ServerSample]] = []  # after each phase or round
        self._labels: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _served(self) -> float:
        return sum(benchlib.triton_compute(client)["inferences"] for client in self.clients)

    def sample(self) -> ServerSample:
        processes: dict[str, float] = {}
        for pid in self.server.pids():
            label = self._labels.setdefault(pid, process_label(pid))
            processes[label] = processes.get(label, 0.0) + rss_mb([pid])
        return ServerSample(
            time.monotonic() - self._started,
            self._served(),
            sum(processes.values()),
            processes,
        )

    def checkpoint(self, label: str) -> None:
        """Record the memory now, after the work named `label`."""
        self.checkpoints.append((label, self.sample()))

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self.sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> ServerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for client in self.clients:
            client.close()


def spans(values: list[float], progress: list[float]) -> dict[str, float]:
    """Start, end and peak of RSS samples taken as work progressed.

    Start: median of the samples taken between 10 % and 20 % of the work (frames), once the
    start-up (imports, first buffers, first batch shapes) is over; end: median over the last
    10 % of the work; peak: the highest sample.
    """
    if not values:
        return {"start": float("nan"), "end": float("nan"), "peak": float("nan")}
    total = max(progress) or 1.0
    first = [v for v, p in zip(values, progress, strict=True) if 0.1 <= p / total <= 0.2]
    last = [v for v, p in zip(values, progress, strict=True) if p / total >= 0.9]
    return {
        "start": median(first or values[:1]),
        "end": median(last or values[-1:]),
        "peak": max(values),
    }


def memory_run(server: Any, folder: Path, frames: int, size: tuple[int, int]) -> dict[str, Any]:
    """The `gradcam-video` CLI on a long clip; RSS of the client and the server, every 0.5 s."""
    from gradcam_client.media.samples import write_sample_clip

    fps = 24
    clip = write_sample_clip(
        folder / "long.mp4", "coffee", seconds=frames / fps, fps=fps, size=size
    )
    log(f"memory run: {frames} frames of {size[0]}x{size[1]} through gradcam-video")
    out = folder / "long-out.mp4"
    predictions = folder / "long.jsonl"
    command = [
        sys.executable,
        "-m",
        "gradcam_client.cli",
        str(clip),
        "-o",
        str(out),
        "--url",
        server.urls.grpc,
        "--model",
        MODEL,
        "--predictions",
        str(predictions),
    ]
    idle_server = rss_mb(server.pids())
    samples: list[tuple[float, float, float, int]] = []  # (time, client MB, server MB, frames)
    partial = predictions.with_name(predictions.name + ".partial")
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            if time.monotonic() - started > 3600:
                raise RuntimeError("the memory run took more than an hour")
            done = 0
            for path in (partial, predictions):  # bytes: turned into frames below
                with contextlib.suppress(OSError):
                    done = path.stat().st_size
                    break
            samples.append(
                (
                    time.monotonic() - started,
                    rss_mb([proc.pid]),
                    rss_mb(server.pids()),
                    done,
                )
            )
            time.sleep(0.5)
        out_text, err_text = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"gradcam-video failed: {err_text.strip()}")
    written = predictions.read_text().count("\n")
    bytes_per_frame = predictions.stat().st_size / max(written, 1)
    samples = [s for s in samples if s[1] > 0]  # the client's RSS is 0 once it has exited
    client = [s[1] for s in samples]
    served = [s[2] for s in samples]
    progress = [float(s[3]) for s in samples]
    return {
        "frames": written,
        "seconds": seconds,
        "fps": written / seconds,
        "clip": f"{size[0]}x{size[1]}, {frames} frames",
        "server_idle_mb": idle_server,
        "client": spans(client, progress),
        "server": spans(served, progress),
        "samples": [
            {"t": t, "client_mb": c, "server_mb": s, "frames": round(b / bytes_per_frame)}
            for t, c, s, b in samples
        ],
        "stdout": out_text.strip().splitlines(),
    }


# --------------------------------------------------------------------------- setup


def export_models(repository: Path, overload_queue: int) -> None:
    """EfficientNet-Lite0 as served by default, and a copy of it whose queue is tiny."""
    from gradcam_server.triton_config import (
        ServingOptions,
        build_config,
        config_text,
        model_info_from_config,
        parse_config_text,
    )

    folder = benchlib.export_model(benchlib.load_source(MODEL), repository, MODEL)
    info = model_info_from_config(parse_config_text((folder / "config.pbtxt").read_text()))
    copy = repository / SMALL_QUEUE
    shutil.copytree(folder, copy)
    options = ServingOptions(max_queue_size=overload_queue)
    (copy / "config.pbtxt").write_text(
        config_text(build_config(replace(info, name=SMALL_QUEUE), options))
    )


# --------------------------------------------------------------------------- report


def fairness_rows(runs: list[Run], levels: list[int]) -> tuple[list[list[Any]], dict[int, Any]]:
    """One row per level: medians over the rounds, shares and latencies over all of them."""
    single = median([r.fps for r in runs if r.clients == 1]) if 1 in levels else float("nan")
    rows, per_level = [], {}
    for n in levels:
        mine = [r for r in runs if r.clients == n]
        fps = [r.fps for r in mine]
        shares = [s for r in mine for s in r.shares]
        latencies = [x for r in mine for x in r.latencies_s]
        batch = median([r.mean_batch for r in mine])
        level = {
            "fps": median(fps),
            "fps_range": benchlib.spread(fps),
            "ratio": median(fps) / single if single else float("nan"),
            "min_share": min(shares),
            "max_share": max(shares),
            "p50_ms": float(np.percentile(latencies, 50)) * 1000 if latencies else float("nan"),
            "p95_ms": float(np.percentile(latencies, 95)) * 1000 if latencies else float("nan"),
            "mean_batch": batch,
            "queue_full": sum(r.queue_full for r in mine),
            "errors": sum(len(r.errors) for r in mine),
        }
        per_level[n] = level
        rows.append(
            [
                n,
                level["fps"],
                level["fps_range"],
                level["ratio"],
                level["min_share"],
                level["max_share"],
                level["p50_ms"],
                level["p95_ms"],
                level["mean_batch"],
                level["queue_full"],
            ]
        )
    return rows, per_level


def overload_rows(overload: list[Run]) -> tuple[list[list[Any]], dict[str, Any]]:
    """One row per client variant, over its rounds."""
    rows, per_variant = [], {}
    for label in OVERLOAD_VARIANTS:
        mine = [run for run in overload if run.label == label]
        if not mine:
            continue
        frames = sum(run.total_frames for run in mine)
        refusals = sum(run.refusals for run in mine)
        latencies = [x for run in mine for x in run.latencies_s]
        shares = [share for run in mine for share in run.shares]
        variant = {
            "fps": median([run.fps for run in mine]),
            "fps_range": benchlib.spread([run.fps for run in mine]),
            "refusals": refusals,
            "per_100_frames": refusals / max(frames, 1) * 100,
            "min_share": min(shares),
            "max_share": max(shares),
            "p50_ms": float(np.percentile(latencies, 50)) * 1000 if latencies else float("nan"),
            "p95_ms": float(np.percentile(latencies, 95)) * 1000 if latencies else float("nan"),
            "mean_batch": median([run.mean_batch for run in mine]),
            "gave_up": sum(len(run.errors) for run in mine),
        }
        per_variant[label] = variant
        rows.append([label, len(mine), variant["fps"], variant["fps_range"], refusals,
                     variant["per_100_frames"], variant["min_share"], variant["max_share"],
                     variant["p50_ms"], variant["p95_ms"], variant["mean_batch"],
                     variant["gave_up"]])  # fmt: skip
    return rows, per_variant


def fairness_findings(per_level: dict[int, Any]) -> list[str]:
    lines = []
    for n, level in per_level.items():
        if n == 1:
            continue
        lines.append(
            benchlib.ratio_line(
                f"{n} clients, aggregate / 1 client", level["ratio"], THROUGHPUT_TARGET
            )
        )
    low, high = SHARE_RANGE
    for n, level in per_level.items():
        if n == 1:
            continue
        inside = low <= level["min_share"] and level["max_share"] <= high
        lines.append(
            f"{n} clients, shares {level['min_share']:.2f}..{level['max_share']:.2f} of an equal "
            f"share (target {low}..{high}) {'met' if inside else 'MISSED'}"
        )
    batches = [per_level[n]["mean_batch"] for n in sorted(per_level)]
    rises = all(b2 >= b1 - 0.05 for b1, b2 in itertools.pairwise(batches))
    shown = " -> ".join(f"{b:.1f}" for b in batches)
    lines.append(
        f"mean batch size by level: {shown} (rises with load) "
        f"{'met' if rises and batches[-1] > batches[0] else 'MISSED'}"
    )
    return lines


def plot(
    path: Path,
    runs: list[Run],
    per_level: dict[int, Any],
    overload: list[Run],
    memory: dict[str, Any],
    server_memory: list[ServerSample],
) -> None:
    """Six panels: throughput, shares, latency, batch size, memory, overload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(per_level)
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))

    def by_clients(ax: Any, ylabel: str, title: str) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(n) for n in levels])
        ax.minorticks_off()
        ax.set(xlabel="clients at once", ylabel=ylabel, title=title)

    ax = axes[0, 0]
    ax.plot(levels, [per_level[n]["fps"] for n in levels], "o-", label="aggregate (median)")
    for run in runs:
        ax.plot(run.clients, run.fps, ".", color="grey", alpha=0.6)
    if 1 in per_level:
        single = per_level[1]["fps"]
        ax.axhline(single, color="k", lw=0.8, ls="--", label="1 client")
        ax.axhline(single * THROUGHPUT_TARGET, color="r", lw=0.8, ls=":", label="0.9 x 1 client")
    by_clients(ax, "frames/s", "Aggregate throughput (dots: rounds)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[0, 1]
    for run in runs:
        ax.plot([run.clients] * run.clients, run.shares, "o", alpha=0.5, color="C0")
    ax.axhspan(*SHARE_RANGE, color="green", alpha=0.1, label="target 0.75..1.33")
    ax.axhline(1, color="k", lw=0.8)
    by_clients(ax, "frames / equal share", "Each client's share (every round)")
    ax.set_ylim(0, 2)
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    ax.plot(levels, [per_level[n]["p50_ms"] for n in levels], "o-", label="p50")
    ax.plot(levels, [per_level[n]["p95_ms"] for n in levels], "s--", label="p95")
    by_clients(ax, "ms per request", "Latency per request")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ax.plot(levels, [per_level[n]["mean_batch"] for n in levels], "o-")
    by_clients(ax, "frames per execution", "Mean batch size formed by Triton")
    ax.set_ylim(0, 17)

    ax = axes[1, 1]
    served = [sample.frames for sample in server_memory]
    labels = sorted({label for sample in server_memory for label in sample.processes})
    ax.plot(served, [sample.total_mb for sample in server_memory], "-", label="Triton in all")
    for label in labels:
        ax.plot(served, [sample.processes.get(label, 0.0) for sample in server_memory], "-",
                lw=0.9, label=label)  # fmt: skip
    ax.set(xlabel="frames served by Triton (whole benchmark)", ylabel="RSS (MB)",
           title="Memory")  # fmt: skip
    samples = memory.get("samples", [])
    if samples:
        twin = ax.twiny()
        twin.plot([s["frames"] for s in samples], [s["client_mb"] for s in samples], "--",
                  color="k", label="client (top axis)")  # fmt: skip
        twin.set_xlabel("frames done by the client (memory run)")
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper left")
    top = max([sample.total_mb for sample in server_memory], default=1000.0)
    ax.set_ylim(0, top * 1.6)

    ax = axes[1, 2]
    labels = [label for label in OVERLOAD_VARIANTS if any(r.label == label for r in overload)]
    for x, label in enumerate(labels):
        mine = [run for run in overload if run.label == label]
        shares = [share for run in mine for share in run.shares]
        ax.plot([x] * len(shares), shares, "o", alpha=0.5, color="C0")
        refusals = sum(run.refusals for run in mine)
        frames = sum(run.total_frames for run in mine)
        fps = median([run.fps for run in mine])
        ax.annotate(f"{fps:.1f} frames/s\n{refusals / max(frames, 1) * 100:.0f} refusals"
                    " per 100 frames", (x, 2.45), ha="center", va="top", fontsize=8)  # fmt: skip
    ax.axhspan(*SHARE_RANGE, color="green", alpha=0.1)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, 2.5)
    ax.set(ylabel="frames / equal share", title="Overload (queue of 2): each client's share")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    name = f"{NAME}-quick" if args.quick else NAME
    machine = benchlib.machine_info()
    log(f"{name}: levels {args.levels}, {args.rounds} round(s) of {args.seconds:g} s")
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        export_models(repository, args.overload_queue)
        with (
            benchlib.running_triton(repository, work) as server,
            ServerMemory(server, [MODEL, SMALL_QUEUE]) as server_memory,
        ):
            runs: list[Run] = []
            for round_index in range(args.rounds):
                for n in benchlib.rotated(args.levels, round_index):
                    run = run_clients(
                        server,
                        MODEL,
                        n,
                        batch_size=args.batch_size,
                        in_flight=args.in_flight,
                        seconds=args.seconds,
                        warmup=args.warmup,
                        label=f"{n} clients",
                    )
                    log(
                        f"round {round_index + 1}, {n} client(s): {run.fps:.1f} frames/s, "
                        f"shares {[round(s, 2) for s in run.shares]}, "
                        f"batch {run.mean_batch:.1f}, p95 {run.latency(95) * 1000:.0f} ms"
                    )
                    runs.append(run)
                server_memory.checkpoint(f"after fairness round {round_index + 1}")
            overload = []
            for round_index in range(args.rounds):
                for label in benchlib.rotated(list(OVERLOAD_VARIANTS), round_index):
                    run = run_clients(
                        server,
                        SMALL_QUEUE,
                        args.overload_clients,
                        batch_size=args.batch_size,
                        in_flight=args.overload_in_flight,
                        seconds=args.overload_seconds,
                        warmup=args.warmup,
                        label=label,
                        baseline=OVERLOAD_VARIANTS[label],
                    )
                    log(
                        f"overload round {round_index + 1}, {label}: {run.fps:.1f} frames/s, "
                        f"{run.refusals} refusals, shares {[round(s, 2) for s in run.shares]}"
                    )
                    overload.append(run)
                server_memory.checkpoint(f"after overload round {round_index + 1}")
            width, _, height = args.memory_size.partition("x")
            memory = memory_run(server, work, args.memory_frames, (int(width), int(height)))
            log(
                f"memory run: {memory['frames']} frames at {memory['fps']:.1f} frames/s; "
                f"client {memory['client']}, server {memory['server']}"
            )
            server_memory.checkpoint("after the memory run")
        server_samples = list(server_memory.samples)
        report = write_report(
            args, name, machine, runs, overload, memory, server_samples, server_memory.checkpoints
        )
        print(report)
    return 0


def write_report(
    args: argparse.Namespace,
    name: str,
    machine: dict[str, Any],
    runs: list[Run],
    overload: list[Run],
    memory: dict[str, Any],
    server_samples: list[ServerSample],
    checkpoints: list[tuple[str, ServerSample]],
) -> str:
    """The tables and findings as markdown; writes the JSON, the markdown and the plot."""
    rows, per_level = fairness_rows(runs, args.levels)
    headers = [
        "clients",
        "frames/s",
        "range",
        "vs 1 client",
        "min share",
        "max share",
        "p50 ms",
        "p95 ms",
        "mean batch",
        "queue full",
    ]
    text, fairness_md = benchlib.table(headers, rows)
    over_rows, per_variant = overload_rows(overload)
    _, overload_md = benchlib.table(
        ["client", "rounds", "frames/s", "range", "refusals", "per 100 frames", "min share",
         "max share", "p50 ms", "p95 ms", "mean batch", "gave up"],
        over_rows,
    )  # fmt: skip
    first_mb = server_samples[0].total_mb if server_samples else float("nan")
    mem_rows = [
        [
            "gradcam-video client (memory run)",
            memory["client"]["start"],
            memory["client"]["end"],
            memory["client"]["peak"],
            memory["client"]["end"] / memory["client"]["start"],
        ],
        [
            "Triton + stubs (memory run)",
            memory["server"]["start"],
            memory["server"]["end"],
            memory["server"]["peak"],
            memory["server"]["end"] / memory["server"]["start"],
        ],
    ]
    _, memory_md = benchlib.table(
        ["process", "start MB", "end MB", "peak MB", "end/start"], mem_rows
    )
    labels = sorted({label for _, sample in checkpoints for label in sample.processes})
    _, checkpoints_md = benchlib.table(
        ["when", "frames served", *[f"{label} MB" for label in labels], "total MB"],
        [
            [name, int(sample.frames), *[sample.processes.get(label) for label in labels],
             sample.total_mb]
            for name, sample in checkpoints
        ],
    )  # fmt: skip
    findings = fairness_findings(per_level)
    title = "Several users on one server" + (" (quick run)" if args.quick else "")
    markdown = "\n".join(
        [
            f"# {title}",
            "",
            f"{machine['time']}: {MODEL} (Grad-CAM, default layer) on one Triton; each client a "
            f"subprocess sending requests of {args.batch_size} frames with {args.in_flight} in "
            f"flight; {args.rounds} round(s) of a {args.seconds:g} s window per level after "
            f"{args.warmup:g} s of warm-up; {machine['cpus']} CPUs shared by server and clients, "
            f"load average at start {machine['load_average']}.",
            "",
            "## Fairness and throughput",
            "",
            fairness_md,
            "",
            *[f"- {line}" for line in findings],
            "",
            "## Overload",
            "",
            f"{args.overload_clients} clients with {args.overload_in_flight} requests of "
            f"{args.batch_size} frames in flight each, against a copy of the model whose queue "
            f"holds {args.overload_queue} requests, {args.overload_seconds:g} s each; "
            "'as shipped' sends fewer requests at once after a refusal (halving its window, "
            "growing it back by one per window of answers); 'baseline' keeps the same number "
            "in flight. Both back off exponentially before resending a refused request. "
            "Refusals: requests the server refused, as the clients counted them.",
            "",
            overload_md,
            "",
            "## Memory",
            "",
            f"`gradcam-video` on a {memory['clip']} clip ({memory['frames']} frames at "
            f"{memory['fps']:.1f} frames/s); RSS sampled every 0.5 s. Start: median of the "
            "samples taken between 10 % and 20 % of the frames (after start-up); end: median "
            "over the last 10 %.",
            "",
            memory_md,
            "",
            "Triton's RSS over the whole benchmark, per process, after each phase (the same "
            "work repeated should leave it where it was): "
            f"{first_mb:.0f} MB in all before the first request. The stub of {SMALL_QUEUE} "
            "serves frames only in the overload phase: its rise there is its first use (first "
            "batch shapes), not growth over time.",
            "",
            checkpoints_md,
            "",
            f"![plots]({name}.png)",
        ]
    )
    data = {
        "machine": machine,
        "settings": {key: value for key, value in vars(args).items() if key != "output_dir"},
        "fairness": {
            "levels": {str(n): level for n, level in per_level.items()},
            "runs": [run.summary() for run in runs],
            "findings": findings,
        },
        "overload": {"runs": [run.summary() for run in overload], "variants": per_variant},
        "memory": memory,
        "server_memory": [sample.__dict__ for sample in server_samples],
    }
    benchlib.write_results(name, data, markdown, args.output_dir)
    plot(args.output_dir / f"{name}.png", runs, per_level, overload, memory, server_samples)
    log(f"wrote {args.output_dir / name}.png")
    return text + "\n\n" + "\n".join(findings)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
