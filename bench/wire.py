"""Frames over a slow link: frames/s and bytes per frame for raw, gzip, JPEG and PNG.

The server (Triton, this namespace) and the client (a network namespace made here, joined by a
veth pair: `tests/slow_link.py`) talk over a 100 Mbit/s link, with a 20 ms round trip or
none. Two measures, each at both round trips:

- the link: a client sending a panning clip's 224x224 frames with a window of requests in
  flight (`tests/wire_client.py`, batches of 8, 4 in flight: gradcam-video's defaults) to
  `tiny224`, a small CNN with EfficientNet-Lite0's shapes (224x224 in, 1,000 classes, a 7x7
  map) that costs the server little, so the link is the limit; and raw and JPEG frames to
  EfficientNet-Lite0 (real weights), whose own cost on these 2 cores is then the limit. Bytes
  per frame are counted on the veth (both directions, TCP and gRPC included); answers carry
  the top 5 only.
- end to end: the whole `gradcam-video` job in the namespace (decode, resize, requests,
  compose, H.264 encode) on a 640x360 clip, against `tiny224` and against EfficientNet-Lite0
  with its real weights, with the client's and the server's CPU per frame.

    sudo .venv/bin/python bench/wire.py            # needs root and iproute2; about 6 minutes

Also measured, without a network: the correlation of EfficientNet-Lite0's Grad-CAM maps from
JPEG q95 frames with those from raw frames, on the scikit-image photos and a panning clip.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]
import benchlib  # noqa: E402
import slow_link  # noqa: E402
import wire_client  # noqa: E402
from served_models import EFFNET, SMALL_224, export_small_224  # noqa: E402

WIRES = [("raw", None), ("raw", "gzip"), ("jpeg", None), ("png", None)]
# The link with the cheap model (every wire), and with EfficientNet-Lite0's cost on the server.
LINK_CELLS = [(SMALL_224, w, c) for w, c in WIRES] + [(EFFNET, "raw", None), (EFFNET, "jpeg", None)]
RATE_MBIT, RTT_MS = slow_link.RATE_MBIT, slow_link.RTT_MS
CLIP_SIZE = (640, 360)
JPEG_TARGET = 5.0  # JPEG frames/s over raw frames/s on the link, at least
RTT_TARGET = 0.9  # frames/s at 20 ms over frames/s at 0 ms, at least


def label(wire: str, compression: str | None) -> str:
    return f"{wire}+{compression}" if compression else wire


def run_inside(link: slow_link.SlowLink, command: list[str]) -> tuple[dict[str, Any], float]:
    """Run `command` in the namespace; its last JSON line, and bytes up per frame sent."""
    before = link.host_bytes()
    done = subprocess.run(link.run_inside(command), capture_output=True, text=True, check=False)
    after = link.host_bytes()
    if done.returncode != 0:
        raise SystemExit(f"client failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["up_bytes"] = (after[0] - before[0]) / result["sent_frames"]
    result["down_bytes"] = (after[1] - before[1]) / result["sent_frames"]
    return result, after[0] - before[0]


def link_rate(link, url: str, model: str, wire: str, compression, args) -> dict[str, Any]:
    command = [sys.executable, wire_client.__file__, "--url", url, "--model", model]
    command += ["--wire", wire, "--frames", str(args.frames), "--batch", str(args.batch)]
    command += ["--in-flight", str(args.in_flight)]
    if compression:
        command += ["--compression", compression]
    result, _ = run_inside(link, command)
    result.pop("classes")
    return result


def job_rate(link, server, url: str, model: str, wire: str, compression, clip: Path):
    """One gradcam-video job in the namespace; frames/s of the job, CPU per frame both sides."""
    out = clip.with_name("out.mp4")
    command = [sys.executable, __file__, "--job", str(clip), "--url", url, "--model", model]
    command += ["--out", str(out), "--wire", wire]
    if compression:
        command += ["--compression", compression]
    server_cpu = benchlib.server_cpu_seconds(server)
    result, _ = run_inside(link, command)
    result["server_cpu_ms"] = 1000 * (benchlib.server_cpu_seconds(server) - server_cpu)
    result["server_cpu_ms"] /= result["sent_frames"]
    out.unlink(missing_ok=True)
    return result


def run_job(args: argparse.Namespace) -> None:
    """Inside the namespace: the gradcam-video job, timed without the interpreter's start."""
    from gradcam_client import cli

    argv = [str(args.job), "-o", str(args.out), "--url", args.url, "--model", args.model]
    argv += ["--wire", args.wire, "-q"]
    if args.compression:
        argv += ["--compression", args.compression]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    code = cli.main(argv)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    if code != 0:
        raise SystemExit(code)
    from gradcam_client.media import read_timestamps

    frames = len(read_timestamps(args.out))
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        json.dumps(
            {"fps": frames / seconds, "client_cpu_ms": 1000 * cpu / frames, "sent_frames": frames}
        )
    )


def correlations() -> dict[str, dict[str, float]]:
    """Grad-CAM map correlation, JPEG q95 frames against raw frames (same explained class)."""
    import cv2
    import tensorflow as tf
    from map_quality import pearson

    from gradcam_client.media.samples import PHOTOS, photo
    from gradcam_client.remote import contract
    from gradcam_client.remote.wire import Wire
    from gradcam_server import model_sources
    from gradcam_server.explainer import GradCamModule

    source = model_sources.efficientnet_lite0()
    module = GradCamModule(
        source.model, source.preprocess, source.resolve_layers(None), ["gradcam"]
    )
    sets = {
        "photos": np.stack(
            [cv2.resize(photo(n), (224, 224), interpolation=cv2.INTER_AREA) for n in PHOTOS]
        ),
        "panning clip (16 frames)": wire_client.clip_frames(16),
    }
    out = {}
    for name, frames in sets.items():
        raw = module.serve(tf.constant(frames), tf.fill([len(frames), 1], -1))
        files = Wire("jpeg", 95).encode(frames)
        jpeg = module.serve_encoded(tf.constant(files), raw[contract.CLASS_INDEX])
        layer = contract.cam_output_name(module.layers[0])
        a, b = raw[layer].numpy()[:, 0], jpeg[layer].numpy()[:, 0]
        values = [pearson(x, y) for x, y in zip(a, b, strict=True)]
        out[name] = {
            "mean": float(np.mean(values)),
            "worst": float(np.min(values)),
            "jpeg_bytes": float(np.mean([len(f[0]) for f in files])),
        }
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=400, help="frames per link measure")
    parser.add_argument("--batch", type=int, default=8, help="frames per request")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight")
    parser.add_argument("--clip-frames", type=int, default=300, help="frames of the job's clip")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every link measure")
    parser.add_argument("--no-jobs", action="store_true", help="skip the end-to-end jobs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--wire", default="raw", help=argparse.SUPPRESS)
    parser.add_argument("--compression", help=argparse.SUPPRESS)
    return parser.parse_args()


def measure_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from media import write_clip

    repository = export_small_224(work / "repository")
    benchlib.export_model(benchlib.load_source(EFFNET), repository, EFFNET)
    clip = write_clip(work / "pan.mp4", size=CLIP_SIZE, n_frames=args.clip_frames, fps=30)
    links: dict[str, list[dict[str, Any]]] = {}
    jobs: dict[str, list[dict[str, Any]]] = {}
    with (
        benchlib.running_triton(repository, work) as server,
        slow_link.SlowLink() as link,
    ):
        link.shape(RATE_MBIT)
        target = f"{link.host_address}:{server.urls.grpc.rsplit(':', 1)[1]}"
        for round_index in range(args.rounds):
            for rtt in benchlib.rotated([0, RTT_MS], round_index):
                with link.delayed(target, rtt) as url:
                    for model, wire, compression in benchlib.rotated(LINK_CELLS, round_index):
                        key = f"{model} {label(wire, compression)} rtt{rtt}"
                        result = link_rate(link, url, model, wire, compression, args)
                        links.setdefault(key, []).append(result)
                        benchlib.log(f"link {key}: {result}")
                    if args.no_jobs:
                        continue
                    for model in (SMALL_224, EFFNET):
                        for wire, compression in benchlib.rotated(WIRES, round_index):
                            key = f"{model} {label(wire, compression)} rtt{rtt}"
                            result = job_rate(link, server, url, model, wire, compression, clip)
                            jobs.setdefault(key, []).append(result)
                            benchlib.log(f"job {key}: {result}")
    return {"links": links, "jobs": jobs}


def link_table(links: dict[str, list[dict[str, Any]]]) -> str:
    def fps(key: str) -> float:
        return benchlib.median([r["fps"] for r in links[key]])

    rows = []
    for model, wire, compression in LINK_CELLS:
        name = f"{model} {label(wire, compression)}"
        fast, slow = f"{name} rtt0", f"{name} rtt{RTT_MS}"
        last = links[slow]
        rows.append(
            [
                model,
                label(wire, compression),
                f"{benchlib.median([r['up_bytes'] for r in last]) / 1000:.1f}",
                f"{benchlib.median([r['down_bytes'] for r in last]) / 1000:.2f}",
                benchlib.spread([r["fps"] for r in links[fast]]),
                benchlib.spread([r["fps"] for r in last]),
                f"{fps(slow) / fps(fast):.2f}",
                f"{fps(fast) / fps(f'{model} raw rtt0'):.1f}",
                f"{fps(slow) / fps(f'{model} raw rtt{RTT_MS}'):.1f}",
                f"{benchlib.median([r['client_cpu_ms'] for r in last]):.2f}",
            ]
        )
    headers = [
        "model", "wire", "KB/frame up", "KB/frame down", "frames/s 0 ms",
        f"frames/s {RTT_MS} ms", f"{RTT_MS} ms / 0 ms", "vs raw, 0 ms", f"vs raw, {RTT_MS} ms",
        "client CPU ms/frame",
    ]  # fmt: skip
    return benchlib.table(headers, rows)[1]


def job_table(jobs: dict[str, list[dict[str, Any]]]) -> str:
    def fps(key: str) -> float:
        return benchlib.median([r["fps"] for r in jobs[key]])

    rows = []
    for model in (SMALL_224, EFFNET):
        for wire, compression in WIRES:
            name = label(wire, compression)
            fast, slow = f"{model} {name} rtt0", f"{model} {name} rtt{RTT_MS}"
            rows.append(
                [
                    model,
                    name,
                    benchlib.spread([r["fps"] for r in jobs[fast]]),
                    benchlib.spread([r["fps"] for r in jobs[slow]]),
                    f"{fps(slow) / fps(fast):.2f}",
                    f"{fps(slow) / fps(f'{model} raw rtt{RTT_MS}'):.1f}",
                    f"{benchlib.median([r['client_cpu_ms'] for r in jobs[slow]]):.1f}",
                    f"{benchlib.median([r['server_cpu_ms'] for r in jobs[slow]]):.1f}",
                ]
            )
    headers = [
        "model", "wire", "frames/s 0 ms", f"frames/s {RTT_MS} ms", f"{RTT_MS} ms / 0 ms",
        f"vs raw, {RTT_MS} ms", "client CPU ms/frame", "server CPU ms/frame",
    ]  # fmt: skip
    return benchlib.table(headers, rows)[1]


def main() -> None:
    args = parse_args()
    if args.job:
        run_job(args)
        return
    problem = slow_link.available()
    if problem:
        raise SystemExit(f"bench/wire.py: {problem}")
    with benchlib.work_dir(args.keep) as work:
        results = measure_all(args, work)
    results["correlation"] = correlation = correlations()
    links = results["links"]

    def fps(key: str) -> float:
        return benchlib.median([r["fps"] for r in links[key]])

    lines = [
        benchlib.ratio_line(
            f"JPEG / raw frames/s on the link ({SMALL_224}), {rtt} ms",
            fps(f"{SMALL_224} jpeg rtt{rtt}") / fps(f"{SMALL_224} raw rtt{rtt}"),
            JPEG_TARGET,
        )
        for rtt in (0, RTT_MS)
    ]
    for model, wire, compression in LINK_CELLS:
        name = f"{model} {label(wire, compression)}"
        ratio = fps(f"{name} rtt{RTT_MS}") / fps(f"{name} rtt0")
        lines.append(benchlib.ratio_line(f"{name}: {RTT_MS} ms / 0 ms", ratio, RTT_TARGET))
    corr_rows = [
        [name, f"{c['mean']:.4f}", f"{c['worst']:.4f}", f"{c['jpeg_bytes'] / 1000:.1f}"]
        for name, c in correlation.items()
    ]
    _, corr_text = benchlib.table(
        ["frames", "mean correlation", "worst frame", "JPEG KB/frame"], corr_rows
    )
    bullets = "\n".join(f"- {line}" for line in lines)
    markdown = (
        f"# Frames over a {RATE_MBIT} Mbit/s link\n\n"
        f"## The link\n\n"
        f"{SMALL_224} is a small CNN with EfficientNet-Lite0's shapes that costs the server "
        f"little: the link is the limit. {EFFNET} (real weights) shows what its own cost on "
        f"these 2 cores leaves.\n\n"
        f"{args.frames} frames of 224x224, {args.batch} per request, {args.in_flight} "
        f"requests in flight, top-5 answers; {args.rounds} rounds per cell (range; ratios "
        f"of the medians).\n\n{link_table(links)}\n\n{bullets}\n\n"
    )
    if results["jobs"]:
        markdown += (
            f"## End to end: gradcam-video over the link\n\n"
            f"A {CLIP_SIZE[0]}x{CLIP_SIZE[1]} clip of {args.clip_frames} frames; decode, "
            f"resize, requests, compose and H.264 encode in the namespace; frames/s of the "
            f"job (without the interpreter's start), {args.rounds} rounds (range; ratios of the "
            f"medians); CPU per frame at {RTT_MS} ms.\n\n"
            f"{job_table(results['jobs'])}\n\n"
        )
    markdown += (
        f"## Grad-CAM maps from JPEG q95 frames against raw frames (EfficientNet-Lite0)\n\n"
        f"{corr_text}\n\nMachine: {benchlib.machine_info()}\n"
    )
    print(markdown)
    benchlib.write_results("wire", results, markdown, args.output_dir)


if __name__ == "__main__":
    main()
