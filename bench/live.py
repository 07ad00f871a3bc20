"""Live benchmark: how far behind a live source the client stays, and what it skips.

A sample clip (a camera panning over scikit-image's cat) is sent as MPEG-TS over UDP on
127.0.0.1 at 10, 25 and 50 frames/s, at 640x360 and 1280x720, from a separate process (as a
camera would), and `gradcam_client.live.job.LiveJob` explains it in real time against one Triton
serving EfficientNet-Lite0 (Grad-CAM, default layer), recording a fragmented MP4 and writing
the predictions. Per source it reports:

* latency p50 / p95: from a frame's arrival (decoded) to its composed frame (target p95 <= 1 s
  at 640x360, 25 frames/s);
* the skipped fraction (frames dropped to keep up, counted by the client; checked against the
  frames the source sent);
* frames explained per second, and the ceiling side by side: the same client and server on a
  file of the same frames (`process_media`, every frame, as fast as they go) in the same round.
  ``explained / min(source rate, file ceiling)`` near 1 means real-time mode loses nothing
  beyond what the machine cannot do;
* CPU per explained frame: the client process and Triton.

Sources and sizes run in interleaved rounds whose order rotates.

    .venv/bin/python bench/live.py            # about 5 minutes on 2 cores
    .venv/bin/python bench/live.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import log
from local_triton import free_port

from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.live.job import LiveJob, LiveSettings
from gradcam_client.live.sample_stream import SampleStream
from gradcam_client.media.samples import pan_zoom_frames, write_frames
from gradcam_client.remote.server import GradcamServer

NAME = "live"
MODEL = "efficientnet-lite0"


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,25,50", help="source frame rates")
    parser.add_argument("--sizes", default="640x360,1280x720", help="source sizes")
    parser.add_argument("--seconds", type=float, help="length of each live run (10)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (2)")
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


def live_run(
    server: Any, size: tuple[int, int], fps: float, seconds: float, work: Path
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
        LiveSettings(reconnect_deadline=0, read_timeout=2),
        predictions=work / f"live-{size[0]}x{size[1]}-{fps:g}.jsonl",
    )
    outcome: dict[str, Any] = {}
    cpu = time.process_time()
    server_cpu = benchlib.server_cpu_seconds(server)
    thread = threading.Thread(target=lambda: outcome.setdefault("result", job.run()))
    thread.start()
    time.sleep(0.5)
    stream = SampleStream(job.address, fps=fps, size=size, seconds=seconds).start()
    sent = stream.wait(seconds + 60)
    thread.join(60)
    stats = outcome["result"].stats
    client_cpu = time.process_time() - cpu
    server_cpu = benchlib.server_cpu_seconds(server) - server_cpu
    processed = max(1, stats.processed)
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
        "client_cpu_ms_per_frame": 1000 * client_cpu / processed,
        "server_cpu_ms_per_frame": 1000 * server_cpu / processed,
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
        for size in args.sizes:
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
                    run = live_run(server, size, fps, args.seconds, work)
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
    load = machine["load_average"]
    markdown = (
        f"# Live sources ({machine['time']}, {machine['cpus']} CPUs, load {load})\n\n"
        f"{args.rounds} round(s) of {args.seconds:g} s per source; medians over rounds.\n\n"
        f"{md}\n"
    )
    benchlib.write_results(
        name,
        {"machine": machine, "args": vars(args), "runs": runs, "ceilings": ceilings},
        markdown,
        args.output_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
