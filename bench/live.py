"""Live benchmark: how far behind a live source the client stays, and what it skips.

A sample clip (a camera panning over scikit-image's cat) is sent as MPEG-TS over UDP on
127.0.0.1 at 10, 25 and 50 frames/s, at 640x360, 1280x720 and 1920x1080, from a separate
process that encodes its looping clip once and then sends the packets in real time (as a
camera that encodes in hardware: it costs the machine almost nothing), and
`gradcam_client.live.job.LiveJob` explains it in real time against one Triton serving
EfficientNet-Lite0 (Grad-CAM, default layer), recording a fragmented MP4 and writing the
predictions. Per source it reports:

* latency p50 / p95: from a frame's arrival (decoded) to its composed frame (targets: p95 <= 1 s
  at 640x360, 25 frames/s; p95 <= 300 ms at 1920x1080, 25 frames/s), over the whole run and
  over the frames sent after the first `--warmup` seconds (FFmpeg hands over the frames that
  came while it probed the stream all at once);
* the share of the frames sent after the first `--warmup` (2) seconds that were explained
  (target >= 95 % at 1920x1080, 25 frames/s): the sender paces frame i at i / rate seconds after
  its start, and the predictions file names each explained frame's `source_frame`;
* the skipped fraction (frames dropped to keep up, counted by the client; checked against the
  frames the source sent);
* frames explained per second, and the ceiling side by side: the same client and server on a
  file of the same frames (`process_media`, every frame, as fast as they go) in the same round.
  ``explained / min(source rate, file ceiling)`` near 1 means real-time mode loses nothing
  beyond what the machine cannot do;
* CPU per explained frame: the client process and Triton, and the client's by stage (its
  threads, while the source sends): reading and decoding, preparing and sending, the gRPC
  calls, composing, recording and logging, FFmpeg's own threads (decoder and recording
  encoder), the rest. At 25 frames/s two cores give 80 ms of CPU a frame to share.

Sources and sizes run in interleaved rounds whose order rotates.

    .venv/bin/python bench/live.py            # about 10 minutes on 2 cores
    .venv/bin/python bench/live.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import log

from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.live.job import LiveJob, LiveSettings
from gradcam_client.live.sample_stream import SampleStream, send
from gradcam_client.media.samples import pan_zoom_frames, write_frames
from gradcam_client.remote.server import GradcamServer
from gradcam_server.local_triton import free_port

NAME = "live"
MODEL = "efficientnet-lite0"


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,25,50", help="source frame rates")
    parser.add_argument(
        "--sizes", default="640x360,1280x720,1920x1080", help="source sizes (WIDTHxHEIGHT,...)"
    )
    parser.add_argument("--seconds", type=float, help="length of each live run (10)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (2)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of sending left out of the steady share"
    )
    parser.add_argument(
        "--preset",
        default=LiveSettings.encoder_preset,
        help=f"libx264 preset of the recordings ({LiveSettings.encoder_preset})",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run (about a minute)")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    defaults = {"seconds": 4.0, "rounds": 1} if args.quick else {"seconds": 10.0, "rounds": 2}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.rates = [float(r) for r in args.rates.split(",")]
    args.sizes = [_size(s) for s in args.sizes.split(",")]
    return args


def steady_figures(predictions: Path | None, sent: int, first: int) -> dict[str, Any]:
    """The frames sent from the `first` on (after the warm-up): the share explained and their
    latency p50 / p95 (from the predictions file's `source_frame` and `latency_ms`)."""
    records = []
    if predictions is not None and predictions.exists():
        with predictions.open() as lines:
            records = [json.loads(line) for line in lines if line.strip()]
    latencies = [r["latency_ms"] / 1000 for r in records if r["source_frame"] >= first]
    after = max(0, sent - first)
    p50, p95 = (float(v) for v in np.percentile(latencies, [50, 95])) if latencies else (0, 0)
    return {
        "steady_sent": after,
        "steady_explained": len(latencies),
        "steady_explained_share": len(latencies) / after if after else 0.0,
        "steady_p50_s": p50,
        "steady_p95_s": p95,
    }


STAGES = {
    "live-source": "read and decode",
    "live-infer-dispatch": "prepare and send",
    "live-infer": "gRPC calls",
    "live-run": "hand answers on",
    "compose": "compose",
    "deliver": "record and log",
    "ffmpeg": "FFmpeg threads (decoder, encoder)",
}
"""The client's threads by stage (`LiveJob`'s thread names; FFmpeg's threads have none)."""


def thread_cpu() -> dict[str, tuple[str, float]]:
    """Each thread of this process: its stage (`STAGES`, else "other") and CPU seconds."""
    names = {str(t.native_id): t.name.rstrip("0123456789_") for t in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        name = names.get(task.name) or ("ffmpeg" if comm.startswith("python") else comm)
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        threads[task.name] = (name if name in STAGES else "other", seconds)
    return threads


def stage_cpu(before: dict[str, tuple[str, float]]) -> Counter[str]:
    """CPU seconds by stage since `before` (a `thread_cpu`), of the threads still running."""
    spent: Counter[str] = Counter()
    for tid, (stage, seconds) in thread_cpu().items():
        spent[stage] += seconds - before.get(tid, (stage, 0.0))[1]
    return spent


def live_run(
    server: Any, size: tuple[int, int], fps: float, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One live run: the source sends for `seconds`, the client explains what it can."""
    client = GradcamServer(server.urls.grpc, MODEL)
    client.model_info()
    port = free_port()
    job = LiveJob(
        client,
        f"udp://127.0.0.1:{port}",
        work / f"live-{size[0]}x{size[1]}-{fps:g}.mp4",
        JobSettings(),
        LiveSettings(
            reconnect_deadline=0, read_timeout=2, open_timeout=30, encoder_preset=args.preset
        ),
        predictions=work / f"live-{size[0]}x{size[1]}-{fps:g}.jsonl",
    )
    outcome: dict[str, Any] = {}
    cpu = time.process_time()
    server_cpu = benchlib.server_cpu_seconds(server)
    threads = thread_cpu()
    thread = threading.Thread(
        target=lambda: outcome.setdefault("result", job.run()), name="live-run"
    )
    thread.start()
    time.sleep(0.5)
    seconds = args.seconds
    stream = SampleStream(job.address, fps=fps, size=size, seconds=seconds).start()
    sent = stream.wait(seconds + 60)
    stages = stage_cpu(threads)  # before the run ends, while FFmpeg's threads are there
    sent_processed = job.stats.processed
    thread.join(60)
    stats = outcome["result"].stats
    client_cpu = time.process_time() - cpu
    server_cpu = benchlib.server_cpu_seconds(server) - server_cpu
    processed = max(1, stats.processed)
    steady = steady_figures(job.predictions_path, sent, round(args.warmup * fps))
    return {
        "size": f"{size[0]}x{size[1]}",
        "fps": fps,
        "sent": sent,
        "received": stats.received,
        "processed": stats.processed,
        "skipped": stats.skipped,
        "skipped_fraction": stats.skipped / sent if sent else 0.0,
        "counted_right": stats.skipped == sent - stats.processed,
        "p50_s": stats.latency_p50,
        "p95_s": stats.latency_p95,
        "explained_fps": stats.processed / seconds,
        **steady,
        "client_cpu_ms_per_frame": 1000 * client_cpu / processed,
        "server_cpu_ms_per_frame": 1000 * server_cpu / processed,
        "stage_cpu_ms_per_frame": {
            stage: 1000 * stages[stage] / max(1, sent_processed) for stage in [*STAGES, "other"]
        },
    }


def stage_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> tuple[str, str]:
    """Medians over rounds of each source's CPU per explained frame, by stage."""
    stages = [*STAGES, "other"]
    rows = []
    for size, fps in [(s, f) for s in args.sizes for f in args.rates]:
        label = f"{size[0]}x{size[1]}"
        mine = [r for r in runs if r["size"] == label and r["fps"] == fps]
        cells = [benchlib.median([r["stage_cpu_ms_per_frame"][s] for r in mine]) for s in stages]
        triton = benchlib.median([r["server_cpu_ms_per_frame"] for r in mine])
        rows.append(
            [
                label,
                f"{fps:g}",
                *(f"{c:.1f}" for c in cells),
                f"{sum(cells):.1f}",
                f"{triton:.1f}",
                f"{sum(cells) + triton:.1f}",
                f"{1000 * (os.cpu_count() or 1) / fps:.0f}",
            ]
        )
    headers = [
        "source",
        "frames/s",
        *(STAGES.get(s, s) for s in stages),
        "client",
        "Triton",
        "client + Triton",
        "budget",
    ]
    return benchlib.table(headers, rows)


def sender_cost(size: tuple[int, int], fps: float, seconds: float = 4.0) -> dict[str, float]:
    """CPU of the sample sender in this process: its one-off encode of the loop, then per
    frame sent (to a UDP port nobody reads)."""
    started = time.process_time()
    first: list[float] = []

    def sent(count: int) -> None:
        if count == 1:
            first.append(time.process_time())

    frames = send(
        f"udp://127.0.0.1:{free_port()}", fps=fps, size=size, seconds=seconds, on_frame=sent
    )
    done = time.process_time()
    return {
        "encode_once_s": first[0] - started,
        "ms_per_frame_sent": 1000 * (done - first[0]) / max(1, frames - 1),
    }


def file_ceiling(server: Any, clip: Path, work: Path) -> float:
    """Frames/s of the file pipeline on `clip`: the most this client and server can do."""
    client = GradcamServer(server.urls.grpc, MODEL)
    result = process_media(client, clip, work / "ceiling.mp4", JobSettings())
    return result.fps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = f"{NAME}-quick" if args.quick else NAME
    machine = benchlib.machine_info()
    log(f"{name}: rates {args.rates}, sizes {args.sizes}, {args.rounds} round(s)")
    runs: list[dict[str, Any]] = []
    ceilings: dict[str, list[float]] = {}
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        benchlib.export_model(benchlib.load_source(MODEL), repository, MODEL)
        clips = {}
        senders = {}
        for size in args.sizes:
            senders[f"{size[0]}x{size[1]}"] = sender_cost(size, args.rates[0])
            n = 150
            clips[size] = write_frames(
                work / f"clip-{size[0]}x{size[1]}.mp4", pan_zoom_frames(n, size), n, size, 25
            )
        with benchlib.running_triton(repository, work) as server:
            file_ceiling(server, clips[args.sizes[0]], work)  # warm-up
            variants = [(size, fps) for size in args.sizes for fps in args.rates]
            for round_index in range(args.rounds):
                for size in benchlib.rotated(args.sizes, round_index):
                    label = f"{size[0]}x{size[1]}"
                    ceiling = file_ceiling(server, clips[size], work)
                    ceilings.setdefault(label, []).append(ceiling)
                    log(f"round {round_index + 1}, file ceiling {label}: {ceiling:.1f} frames/s")
                for size, fps in benchlib.rotated(variants, round_index):
                    run = live_run(server, size, fps, args, work)
                    run["round"] = round_index + 1
                    run["ceiling_fps"] = benchlib.median(ceilings[run["size"]])
                    run["explained_vs_possible"] = run["explained_fps"] / min(
                        fps, run["ceiling_fps"]
                    )
                    runs.append(run)
                    log(
                        f"round {round_index + 1}, {run['size']} at {fps:g} frames/s: "
                        f"p50 {1000 * run['p50_s']:.0f} ms, p95 {1000 * run['p95_s']:.0f} ms, "
                        f"skipped {100 * run['skipped_fraction']:.0f} %, "
                        f"after {args.warmup:g} s: p95 {1000 * run['steady_p95_s']:.0f} ms, "
                        f"{100 * run['steady_explained_share']:.1f} % explained, "
                        f"{run['explained_fps']:.1f} explained/s"
                    )
    rows = []
    for size, fps in [(s, f) for s in args.sizes for f in args.rates]:
        label = f"{size[0]}x{size[1]}"
        mine = [r for r in runs if r["size"] == label and r["fps"] == fps]
        rows.append(
            [
                label,
                f"{fps:g}",
                f"{1000 * benchlib.median([r['p50_s'] for r in mine]):.0f}",
                f"{1000 * benchlib.median([r['p95_s'] for r in mine]):.0f}",
                f"{1000 * benchlib.median([r['steady_p95_s'] for r in mine]):.0f}",
                f"{100 * benchlib.median([r['steady_explained_share'] for r in mine]):.1f} %",
                f"{100 * benchlib.median([r['skipped_fraction'] for r in mine]):.0f} %",
                f"{benchlib.median([r['explained_fps'] for r in mine]):.1f}",
                f"{benchlib.median(ceilings[label]):.1f}",
                f"{benchlib.median([r['explained_vs_possible'] for r in mine]):.2f}",
                f"{benchlib.median([r['client_cpu_ms_per_frame'] for r in mine]):.1f}",
                f"{benchlib.median([r['server_cpu_ms_per_frame'] for r in mine]):.1f}",
                "yes" if all(r["counted_right"] for r in mine) else "NO",
            ]
        )
    headers = [
        "source",
        "frames/s",
        "latency p50 ms",
        "latency p95 ms",
        f"p95 after {args.warmup:g} s ms",
        f"explained of sent after {args.warmup:g} s",
        "skipped",
        "explained/s",
        "file ceiling/s",
        "explained / min(rate, ceiling)",
        "client CPU ms/frame",
        "Triton CPU ms/frame",
        "skipped = sent - explained",
    ]
    text, md = benchlib.table(headers, rows)
    print(text)
    stage_text, stage_md = stage_table(runs, args)
    print(stage_text)
    load, load_end = machine["load_average"], [round(x, 2) for x in os.getloadavg()]
    markdown = (
        f"# Live sources ({machine['time']}, {machine['cpus']} CPUs, load {load} at the start, "
        f"{load_end} at the end)\n\n"
        f"`.venv/bin/python bench/live.py {' '.join(sys.argv[1:] if argv is None else argv)}`: "
        f"{args.rounds} round(s) of {args.seconds:g} s per source; medians over rounds.\n\n"
        f"{md}\n\n"
        f"The sample sender, measured alone at {args.rates[0]:g} frames/s: "
        + ", ".join(
            f"{label}: {c['encode_once_s']:.1f} s of CPU to encode its loop once, then "
            f"{c['ms_per_frame_sent']:.2f} ms a frame sent"
            for label, c in senders.items()
        )
        + ".\n"
        f"\n## CPU per explained frame, by stage (ms)\n\n"
        f"The client's threads while the source sent (recordings: libx264 {args.preset}), "
        f"Triton's processes over the run; the budget is what the machine's "
        f"{machine['cpus']} cores give a frame at the source's rate.\n\n"
        f"{stage_md}\n"
    )
    benchlib.write_results(
        name,
        {
            "machine": machine,
            "load_average_end": load_end,
            "args": vars(args),
            "runs": runs,
            "ceilings": ceilings,
            "sender": senders,
        },
        markdown,
        args.output_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
