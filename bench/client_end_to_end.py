"""Client benchmark: a video in, an H.264 heat-map video out, against the naive loop and
against the server alone, plus where the client's time goes and its peak memory.

One run, on one Triton serving EfficientNet-Lite0 (Grad-CAM, default layer), measures side by
side in interleaved rounds (the order rotates every round):

* ``end-to-end``: `gradcam_client.jobs.file_job.process_media` on a sample clip (decode, resize,
  batched requests, compose on full-resolution frames, H.264 encode);
* ``server only``: the same frames, decoded and resized beforehand, sent with the same batch
  size and requests in flight, nothing else;
* ``SavedModel loop``: the strongest naive baseline, the per-frame loop a user would write
  with the exported model: OpenCV VideoCapture, the exported SavedModel's serving signature
  called in-process (graph mode, batch 1) on each frame, cv2.applyColorMap + addWeighted,
  cv2.VideoWriter mp4v, on the whole clip;
* ``eager loop``: the tutorials' way (OpenCV VideoCapture, one eager `tf.GradientTape` call
  per frame, cv2.applyColorMap + addWeighted, cv2.VideoWriter mp4v), same model and weights,
  on the first ``--naive-frames`` frames of the same clip (a much weaker baseline);
* ``what if``: end-to-end again with other job settings (``--what-if``, default
  ``encoder_threads=1``: libx264 on one thread, leaving the other core to the server).

Then, once: a run with timers around the pipeline's stages (waiting for the decoder, for
the server, composing, encoding), the cost of each client stage measured alone on the same
clip, and the peak memory (VmHWM) of the `gradcam-video` CLI in a subprocess on a short and a
long clip.

    .venv/bin/python bench/client_end_to_end.py            # a few minutes on 2 cores
    .venv/bin/python bench/client_end_to_end.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import benchlib
import cv2
import numpy as np
from benchlib import log, median

NAME = "client_end_to_end"
MODEL = "efficientnet-lite0"
NAIVE_TARGET = 5.0
SAVEDMODEL_TARGET = 1.5
SERVER_TARGET = 0.8
MEMORY_TARGET = 1.1


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="length of the sample clip (10)")
    parser.add_argument("--fps", type=int, default=15, help="frame rate of the sample clips")
    parser.add_argument("--size", type=_size, default=(640, 360), help="WxH of the sample clip")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3)")
    parser.add_argument("--naive-frames", type=int, help="frames of the naive loop per round (45)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per request")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight")
    parser.add_argument(
        "--memory-frames", type=_ints, help="frame counts of the memory clips (300,3000)"
    )
    parser.add_argument(
        "--memory-size", type=_size, default=(320, 240), help="WxH of the memory clips"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--no-profile", action="store_true", help="skip the timed-stages run")
    parser.add_argument(
        "--what-if",
        default="encoder_threads=1",
        help="also run end to end with these JobSettings, e.g. encoder_preset=superfast or "
        "encoder_threads=1 (comma-separated; '' to skip)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run (about a minute)")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    defaults = (
        {"seconds": 2.0, "rounds": 1, "naive_frames": 6, "memory_frames": [30, 150]}
        if args.quick
        else {"seconds": 10.0, "rounds": 3, "naive_frames": 45, "memory_frames": [300, 3000]}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# --------------------------------------------------------------------------- clips


def write_clip(path: Path, frames: int, size: tuple[int, int], fps: int) -> Path:
    """An H.264 clip of `frames` frames panning across a photo; past 300 frames the camera
    goes back and forth over the same 300 positions (so at most 300 frames are in memory)."""
    from gradcam_client.media.samples import pan_zoom_frames, write_frames

    base = pan_zoom_frames(min(frames, 300), size)
    cycle = base + base[-2:0:-1] if len(base) > 2 else base
    images = (cycle[index % len(cycle)] for index in range(frames))
    return write_frames(path, images, frames, size, fps)


# --------------------------------------------------------------------------- the variants


def savedmodel_loop(clip: Path, output: Path, runner: Any, size: tuple[int, int], layer: str):
    """The per-frame loop around the exported SavedModel, in-process; (frames, seconds)."""
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    target = np.array([-1], np.int32)
    count = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        small = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)
        cam = runner(small[None], target)[f"CAM__{layer}"][0, 0]
        heat = cv2.resize(cam / max(float(cam.max()), 1e-8), (width, height))
        colored = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
        writer.write(cv2.addWeighted(bgr, 0.6, colored, 0.4, 0))
        count += 1
    writer.release()
    capture.release()
    return count, time.perf_counter() - started


def naive_loop(
    clip: Path, output: Path, eager: benchlib.EagerGradCam, size: tuple[int, int], limit: int
) -> tuple[int, float]:
    """The tutorials' video loop; returns (frames, seconds)."""
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 15.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    count = 0
    while count < limit:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        heatmap, _ = eager(cv2.resize(rgb, size))
        heatmap = cv2.resize(heatmap.astype(np.float32), (width, height))
        colored = cv2.applyColorMap(np.uint8(255 * heatmap), cv2.COLORMAP_JET)
        writer.write(cv2.addWeighted(bgr, 0.6, colored, 0.4, 0))
        count += 1
    writer.release()
    capture.release()
    return count, time.perf_counter() - started


def end_to_end(client: Any, server: Any, clip: Path, output: Path, settings: Any) -> dict:
    """One `process_media` run with the CPU time of the client and of the server."""
    from gradcam_client.jobs.file_job import process_media

    before_triton = benchlib.triton_compute(client)
    server_cpu = benchlib.server_cpu_seconds(server)
    cpu, started = time.process_time(), time.perf_counter()
    result = process_media(client, clip, output, settings)
    seconds = time.perf_counter() - started
    return {
        "frames": result.frames,
        "seconds": seconds,
        "client_cpu_s": time.process_time() - cpu,
        "server_cpu_s": benchlib.server_cpu_seconds(server) - server_cpu,
        "triton": benchlib.delta(benchlib.triton_compute(client), before_triton),
    }


def decoded_frames(clip: Path) -> list[Any]:
    from gradcam_client.media import open_media

    return list(open_media(clip))


# --------------------------------------------------------------------------- where time goes


def stage_costs(client: Any, clip: Path, work: Path, args) -> dict[str, dict[str, float | None]]:
    """Each client stage alone on the clip, one thread: wall and CPU ms per frame."""
    from gradcam_client.jobs.file_stream import resize_for_model
    from gradcam_client.jobs.settings import JobSettings, select_panels
    from gradcam_client.media import VideoWriter, open_media
    from gradcam_client.render.renderer import MapRenderer

    info = client.model_info()
    settings = JobSettings(batch_size=args.batch_size, max_in_flight=args.in_flight)
    costs: dict[str, dict[str, float | None]] = {}

    def timed(name: str, count: int | None, run) -> Any:
        cpu, started = time.process_time(), time.perf_counter()
        value = run()
        count = count or len(value)
        costs[name] = {
            "wall_ms": 1000 * (time.perf_counter() - started) / count,
            "cpu_ms": 1000 * (time.process_time() - cpu) / count,
        }
        return value

    reader = open_media(clip)
    frames = timed("decode (PyAV, RGB)", None, lambda: list(reader))
    n = len(frames)
    small = timed(
        "resize to model input",
        n,
        lambda: np.stack([resize_for_model(f.image, info) for f in frames]),
    )
    answers: dict[int, Any] = {}
    timing = benchlib.stream_batches(
        client,
        small,
        n,
        settings.batch_size,
        settings.max_in_flight,
        keep=lambda offset, result: answers.__setitem__(offset, result),
    )
    costs["requests (client CPU of server-only run)"] = {
        "wall_ms": None,
        "cpu_ms": 1000 * timing.client_cpu_s / n,
    }
    outputs = []
    for offset in sorted(answers):
        result = answers[offset]
        for i in range(len(result.class_index)):
            index = int(result.class_index[i])
            maps = {layer: m[i] for layer, m in result.maps.items()}
            outputs.append((maps, index, float(result.probabilities[i][index])))
    renderer = MapRenderer(select_panels(info, settings), settings, info.class_names)
    composed = timed(
        "compose (overlay + label)",
        n,
        lambda: [renderer.render(f.image, *o) for f, o in zip(frames, outputs, strict=True)],
    )

    def encode(preset: str) -> list[None]:
        with VideoWriter(work / f"stage-{preset}.mp4", reader.info, preset=preset) as writer:
            for frame, image in zip(frames, composed, strict=True):
                writer.write(image, frame.pts, duration=frame.duration)
        return []

    # The pipeline encodes with JobSettings' preset (veryfast); medium is shown for comparison.
    pipeline_preset = settings.encoder_preset
    for preset, label in ((pipeline_preset, "pipeline's setting"), ("medium", "for comparison")):
        timed(f"encode (H.264 preset {preset}, {label})", n, lambda p=preset: encode(p))
    return costs


class StageTimers:
    """Adds up the time spent in some client functions during one run, by wrapping them for
    the duration of the run (the product code is not changed). Waiting on the decoder's
    queue and on the requests' futures is counted for the pipeline's main thread only."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._patches: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str, thread: str = "any") -> None:
        """Time `owner.attr` under `label` when called on `thread`: "any", "main", or a thread
        whose name contains it."""
        original = getattr(owner, attr)
        totals = self.totals
        main = threading.main_thread()

        def timed(*args: Any, **kwargs: Any) -> Any:
            current = threading.current_thread()
            if thread == "main":
                counted = current is main
            else:
                counted = thread == "any" or (current is not main and thread in current.name)
            if not counted:
                return original(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started

        setattr(owner, attr, timed)
        self._patches.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()


def profile_run(client: Any, clip: Path, output: Path, settings: Any) -> dict[str, Any]:
    """One `process_media` run with timers around its stages: ms per frame spent by the main
    thread (setup, waiting for the decoder, the server and the compose thread), by the decoder
    thread (resizing, blocked on a full queue; the rest of its time is decoding), by the compose
    thread and by the encode thread (each: working, waiting for frames, blocked)."""
    from concurrent.futures import Future

    from gradcam_client import media as video_io
    from gradcam_client.jobs import file_job as pipeline

    timers = StageTimers()
    parts = {
        "main": {
            "setup (open input, model info)": (pipeline._Job, "__init__"),
            "wait for the decoder (queue get)": (queue.Queue, "get"),
            "wait for the server (future result)": (Future, "result"),
            "blocked on the compose queue (queue put)": (queue.Queue, "put"),
            "encoder flush (VideoWriter.close)": (video_io.VideoWriter, "close"),
        },
        "_decode": {
            "resize (resize_for_model)": (pipeline, "resize_for_model"),
            "blocked on a full queue (queue put)": (queue.Queue, "put"),
        },
        "compose": {
            "compose, RGB (MapRenderer.render)": (pipeline.MapRenderer, "render"),
            "compose, YUV (MapRenderer.render_picture)": (pipeline.MapRenderer, "render_picture"),
            "wait for frames (queue get)": (queue.Queue, "get"),
            "blocked on the encode queue (queue put)": (queue.Queue, "put"),
        },
        "encode": {
            "encode, RGB (VideoWriter.write)": (video_io.VideoWriter, "write"),
            "encode, YUV (VideoWriter.write_picture)": (video_io.VideoWriter, "write_picture"),
            "wait for composed frames (queue get)": (queue.Queue, "get"),
        },
    }
    for thread, labels in parts.items():
        for label, (owner, attr) in labels.items():
            timers.wrap(owner, attr, label, thread=thread)
    started = time.perf_counter()
    try:
        result = pipeline.process_media(client, clip, output, settings)
    finally:
        timers.restore()
    seconds = time.perf_counter() - started
    n = result.frames
    per_thread = {
        thread: {label: 1000 * timers.totals[label] / n for label in labels}
        for thread, labels in parts.items()
    }
    main = per_thread["main"]
    main["other (batching, bookkeeping)"] = 1000 * seconds / n - sum(main.values())
    return {
        "frames": n,
        "ms_per_frame": 1000 * seconds / n,
        "main": main,
        "decoder": per_thread["_decode"],
        "compose": per_thread["compose"],
        "encoder": per_thread["encode"],
    }


# --------------------------------------------------------------------------- memory


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "gradcam-video"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gradcam_client.cli"]


def _vm_hwm_kb(pid: int) -> int | None:
    """The peak resident set size (VmHWM) of a live process, in kB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def peak_memory(clip: Path, output: Path, url: str, work: Path, args) -> dict[str, float]:
    """Run the gradcam-video CLI in a subprocess and follow its peak RSS.

    The peak is the kernel's high-water mark of the child's own memory (VmHWM in
    /proc/PID/status), polled every 20 ms until the child exits (it only grows, so polling
    misses at most the last 20 ms). `ru_maxrss` of the child is not used: Linux carries the
    parent's peak over to a child across fork and exec, so it would report this process's
    memory (TensorFlow and the model) instead of the client's.
    """
    command = [
        *cli_command(),
        str(clip),
        "-o",
        str(output),
        "--url",
        url,
        "--model",
        MODEL,
        "--batch-size",
        str(args.batch_size),
        "--max-in-flight",
        str(args.in_flight),
        "-q",
    ]
    peak_kb, samples = 0, 0
    errors_path = work / "gradcam-video.stderr"
    started = time.perf_counter()
    with errors_path.open("wb") as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        while process.poll() is None:
            hwm = _vm_hwm_kb(process.pid)
            if hwm is not None:
                peak_kb, samples = max(peak_kb, hwm), samples + 1
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        message = errors_path.read_text(errors="replace").strip()
        raise RuntimeError(f"gradcam-video failed ({process.returncode}): {message}")
    return {"peak_rss_mb": peak_kb / 1024, "seconds": seconds, "samples": samples}


# --------------------------------------------------------------------------- report


def report(data: dict[str, Any], args) -> tuple[str, str]:
    s = data["summary"]
    rows = [
        ["end-to-end (process_media, H.264 out)", s["fps"]["end_to_end"], s["range"]["end_to_end"]],
        ["server only (pre-resized frames)", s["fps"]["server_only"], s["range"]["server_only"]],
        [
            "SavedModel loop (in-process, graph mode, batch 1, cv2, mp4v)",
            s["fps"]["savedmodel"],
            s["range"]["savedmodel"],
        ],
        ["eager loop (GradientTape per frame, cv2, mp4v)", s["fps"]["naive"], s["range"]["naive"]],
    ]
    what_if = data["config"]["what_if"]
    if "what_if" in s["fps"]:
        rows.append(
            [
                f"what if: end-to-end, {what_if}",
                s["fps"]["what_if"],
                s["range"]["what_if"],
            ]
        )
    text, md = benchlib.table(["variant", "frames/s", "range"], rows)
    cpu_rows = [
        [
            variant,
            data["cpu_ms_per_frame"][key]["wall"],
            data["cpu_ms_per_frame"][key]["client"],
            data["cpu_ms_per_frame"][key]["server"],
        ]
        for variant, key in (
            ("end-to-end", "end_to_end"),
            ("server only", "server_only"),
            (f"what if: {what_if}", "what_if"),
        )
        if key in data["cpu_ms_per_frame"]
    ]
    cpu_text, cpu_md = benchlib.table(
        ["variant", "wall ms/frame", "client CPU ms/frame", "server CPU ms/frame"], cpu_rows
    )
    stage_rows = [[k, v["wall_ms"], v["cpu_ms"]] for k, v in data["stages"].items()]
    stage_text, stage_md = benchlib.table(
        ["client stage, alone", "wall ms/frame", "CPU ms/frame"], stage_rows
    )
    sections_text = [text, cpu_text, stage_text]
    sections_md = [md, "CPU time per frame (all threads):\n\n" + cpu_md, stage_md]
    if data.get("profile"):
        prof = data["profile"]
        rows = [[f"main thread: {k}", v] for k, v in prof["main"].items()]
        rows += [[f"decoder thread: {k}", v] for k, v in prof["decoder"].items()]
        rows += [[f"compose thread: {k}", v] for k, v in prof.get("compose", {}).items()]
        rows += [[f"encode thread: {k}", v] for k, v in prof.get("encoder", {}).items()]
        prof_text, prof_md = benchlib.table(
            [f"timed run, {prof['ms_per_frame']:.1f} ms/frame in all", "ms/frame"], rows
        )
        sections_text.append(prof_text)
        sections_md.append(prof_md)
    lines = [
        benchlib.ratio_line(
            "end-to-end/SavedModel loop ratio", s["end_to_end_over_savedmodel"], SAVEDMODEL_TARGET
        ),
        benchlib.ratio_line(
            "end-to-end/eager loop ratio", s["end_to_end_over_naive"], NAIVE_TARGET
        ),
        benchlib.ratio_line(
            "end-to-end/server-only ratio", s["end_to_end_over_server"], SERVER_TARGET
        ),
    ]
    if "what_if_over_server" in s:
        lines.append(
            f"what if {what_if}: end-to-end/server-only ratio {s['what_if_over_server']:.2f}, "
            f"end-to-end/SavedModel loop ratio {s['what_if_over_savedmodel']:.2f} "
            "(information, no target)"
        )
    if data.get("memory"):
        mem = data["memory"]
        mem_rows = [
            [f"{m['frames']} frames", m["peak_rss_mb"], m["seconds"], m["fps"]] for m in mem["runs"]
        ]
        mem_text, mem_md = benchlib.table(
            ["gradcam-video CLI", "peak RSS MB", "seconds", "frames/s"], mem_rows
        )
        sections_text.append(mem_text)
        sections_md.append(mem_md)
        lines.append(
            benchlib.ratio_line(
                f"peak memory {mem['runs'][-1]['frames']}/{mem['runs'][0]['frames']} frames ratio",
                mem["ratio"],
                MEMORY_TARGET,
                higher_is_better=False,
            )
        )
    lines.append(data["analysis"])
    c = data["config"]
    header = (
        f"{data['machine']['time']}: {c['clip']}; batch {args.batch_size}, {args.in_flight} "
        f"requests in flight; {args.rounds} rounds (naive loop: first {args.naive_frames} "
        f"frames); {data['machine']['cpus']} CPUs, load average at start "
        f"{data['machine']['load_average']}."
    )
    terminal = "\n\n".join(sections_text) + "\n\n" + "\n".join(lines)
    markdown = (
        f"# Client end to end{' (quick run)' if args.quick else ''}\n\n{header}\n\n"
        + "\n\n".join(sections_md)
        + "\n\nRatios (median of the per-round ratios):\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + "\n"
    )
    return terminal, markdown


def analysis(cpu: dict[str, dict[str, float]], cores: int) -> str:
    """What the CPU figures say about the client being the bottleneck."""
    e2e = cpu["end_to_end"]
    share = e2e["client"] / (e2e["client"] + e2e["server"])
    busy = (e2e["client"] + e2e["server"]) / e2e["wall"]
    return (
        f"where the time goes: per frame the client used {e2e['client']:.1f} ms CPU and the "
        f"server {e2e['server']:.1f} ms ({share:.0%} client); {busy:.2f} of {cores} cores busy "
        "end to end"
    )


def what_if_settings(settings: Any, spec: str) -> Any:
    """`settings` with the ``key=value`` pairs of `spec` (comma-separated) replaced."""
    changes: dict[str, Any] = {}
    for pair in filter(None, (part.strip() for part in spec.split(","))):
        key, _, value = pair.partition("=")
        changes[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    return dataclasses.replace(settings, **changes)


def measure_rounds(
    client: Any,
    server: Any,
    eager: benchlib.EagerGradCam,
    runner: Any,
    layer: str,
    clip: Path,
    small: np.ndarray,
    work: Path,
    settings: Any,
    args,
) -> list[dict[str, Any]]:
    """Interleaved rounds of every variant; the order rotates each round."""
    model_size = (small.shape[2], small.shape[1])
    variants = ["end_to_end", "server_only", "savedmodel", "naive"]
    if args.what_if:
        variants.append("what_if")
        other = what_if_settings(settings, args.what_if)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        row: dict[str, Any] = {}
        for variant in benchlib.rotated(variants, r):
            if variant == "end_to_end":
                row[variant] = end_to_end(client, server, clip, work / f"out-{r}.mp4", settings)
            elif variant == "what_if":
                row[variant] = end_to_end(client, server, clip, work / f"out-{r}-if.mp4", other)
            elif variant == "server_only":
                t = benchlib.stream_batches(
                    client, small, len(small), args.batch_size, args.in_flight, server
                )
                row[variant] = {
                    "frames": t.frames,
                    "seconds": t.seconds,
                    "client_cpu_s": t.client_cpu_s,
                    "server_cpu_s": t.server_cpu_s,
                    "triton": t.triton,
                }
            elif variant == "savedmodel":
                count, seconds = savedmodel_loop(
                    clip, work / f"savedmodel-{r}.mp4", runner, model_size, layer
                )
                row[variant] = {"frames": count, "seconds": seconds}
            else:
                count, seconds = naive_loop(
                    clip, work / f"naive-{r}.mp4", eager, model_size, args.naive_frames
                )
                row[variant] = {"frames": count, "seconds": seconds}
        for part in row.values():
            part["fps"] = part["frames"] / part["seconds"]
        row["end_to_end_over_server"] = row["end_to_end"]["fps"] / row["server_only"]["fps"]
        row["end_to_end_over_naive"] = row["end_to_end"]["fps"] / row["naive"]["fps"]
        row["end_to_end_over_savedmodel"] = row["end_to_end"]["fps"] / row["savedmodel"]["fps"]
        if "what_if" in row:
            row["what_if_over_server"] = row["what_if"]["fps"] / row["server_only"]["fps"]
            row["what_if_over_savedmodel"] = row["what_if"]["fps"] / row["savedmodel"]["fps"]
        rounds.append(row)
        log(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{v} {row[v]['fps']:.2f}" for v in variants)
            + " frames/s"
        )
    return rounds


def measure_memory(server: Any, work: Path, args) -> dict[str, Any]:
    """Peak RSS of the CLI on clips of each of ``--memory-frames`` frames."""
    runs = []
    for count in args.memory_frames:
        clip = write_clip(work / f"memory-{count}.mp4", count, args.memory_size, args.fps)
        log(f"memory: gradcam-video on {count} frames")
        run = peak_memory(clip, work / f"memory-{count}-out.mp4", server.urls.grpc, work, args)
        run.update(frames=count, fps=count / run["seconds"])
        runs.append(run)
        clip.unlink()
        (work / f"memory-{count}-out.mp4").unlink(missing_ok=True)
    return {
        "size": list(args.memory_size),
        "runs": runs,
        "ratio": runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"],
    }


def summarize(rounds: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Medians over the rounds: frames/s and ratios, and CPU time per frame."""
    variants = [
        v for v in ("end_to_end", "server_only", "savedmodel", "naive", "what_if") if v in rounds[0]
    ]

    def fps(variant: str) -> list[float]:
        return [row[variant]["fps"] for row in rounds]

    def per_frame(variant: str, key: str) -> float:
        return median([1000 * row[variant][key] / row[variant]["frames"] for row in rounds])

    summary: dict[str, Any] = {
        "fps": {v: median(fps(v)) for v in variants},
        "range": {v: benchlib.spread(fps(v)) for v in variants},
        "end_to_end_over_naive": median([r["end_to_end_over_naive"] for r in rounds]),
        "end_to_end_over_savedmodel": median([r["end_to_end_over_savedmodel"] for r in rounds]),
        "end_to_end_over_server": median([r["end_to_end_over_server"] for r in rounds]),
    }
    if "what_if" in variants:
        summary["what_if_over_server"] = median([r["what_if_over_server"] for r in rounds])
        summary["what_if_over_savedmodel"] = median([r["what_if_over_savedmodel"] for r in rounds])
    cpu = {
        v: {
            "wall": per_frame(v, "seconds"),
            "client": per_frame(v, "client_cpu_s"),
            "server": per_frame(v, "server_cpu_s"),
        }
        for v in variants
        if v not in ("naive", "savedmodel")
    }
    return summary, cpu


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gradcam_client.jobs.file_stream import resize_for_model
    from gradcam_client.jobs.settings import JobSettings
    from gradcam_client.remote.server import GradcamServer

    machine = benchlib.machine_info()
    started = time.perf_counter()
    settings = JobSettings(batch_size=args.batch_size, max_in_flight=args.in_flight)
    frames_in_clip = max(1, round(args.seconds * args.fps))
    with benchlib.work_dir(args.keep) as work:
        clip = write_clip(work / "clip.mp4", frames_in_clip, args.size, args.fps)
        warm_clip = write_clip(work / "warm.mp4", min(16, frames_in_clip), args.size, args.fps)
        log(f"wrote a {args.size[0]}x{args.size[1]} clip of {frames_in_clip} frames")
        source = benchlib.load_source(MODEL)
        repository = work / "repository"
        benchlib.export_model(source, repository, MODEL)
        eager = benchlib.EagerGradCam(source)
        from gradcam_server.triton_model import SAVEDMODEL_DIR, SavedModelRunner

        runner = SavedModelRunner(repository / MODEL / "1" / SAVEDMODEL_DIR)
        with benchlib.running_triton(repository, work) as server:
            client = GradcamServer(server.urls.grpc, MODEL)
            info = client.model_info()
            small = np.stack([resize_for_model(f.image, info) for f in decoded_frames(clip)])
            log("warm-up")
            benchlib.stream_batches(client, small, 2 * args.batch_size, args.batch_size, 2)
            end_to_end(client, server, warm_clip, work / "warm-out.mp4", settings)
            naive_loop(warm_clip, work / "warm-naive.mp4", eager, small.shape[2:0:-1], 2)
            layer = info.layer_names[0]
            savedmodel_loop(warm_clip, work / "warm-sm.mp4", runner, small.shape[2:0:-1], layer)
            rounds = measure_rounds(
                client, server, eager, runner, layer, clip, small, work, settings, args
            )
            log("stage costs")
            stages = stage_costs(client, clip, work, args)
            profile = None
            if not args.no_profile:
                log("timed stages")
                profile = profile_run(client, clip, work / "profiled.mp4", settings)
            memory = None if args.no_memory else measure_memory(server, work, args)
            client.close()

    summary, cpu = summarize(rounds)
    data: dict[str, Any] = {
        "benchmark": NAME,
        "quick": args.quick,
        "machine": machine,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "config": {
            "model": f"{MODEL} (ImageNet weights), Grad-CAM of {info.layer_names[0]}",
            "clip": f"{args.size[0]}x{args.size[1]} sample clip, {frames_in_clip} frames at "
            f"{args.fps} fps",
            "batch_size": args.batch_size,
            "in_flight": args.in_flight,
            "rounds": args.rounds,
            "naive_frames": args.naive_frames,
            "what_if": args.what_if,
        },
        "targets": {
            "end_to_end_over_naive": NAIVE_TARGET,
            "end_to_end_over_savedmodel": SAVEDMODEL_TARGET,
            "end_to_end_over_server": SERVER_TARGET,
            "memory_ratio_below": MEMORY_TARGET,
        },
        "rounds": rounds,
        "summary": summary,
        "cpu_ms_per_frame": cpu,
        "stages": stages,
        "profile": profile,
        "memory": memory,
        "analysis": analysis(cpu, machine["cpus"] or 1),
        "wall_seconds": time.perf_counter() - started,
    }
    terminal, markdown = report(data, args)
    print(terminal)
    name = NAME if tuple(args.size) == (640, 360) else f"{NAME}-{args.size[0]}x{args.size[1]}"
    name = f"{name}-quick" if args.quick else name
    benchlib.write_results(name, data, markdown, args.output_dir)
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
