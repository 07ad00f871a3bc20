"""Server benchmark: Grad-CAM through Triton vs the forward pass alone vs the eager recipe.

For each network, one run measures side by side, in interleaved rounds (the order rotates
every round, so drift hits every variant alike):

* ``gradcam``: the exported Grad-CAM model (default layer, method gradcam) through Triton;
* ``forward``: the same network exported with ``--predictions-only`` (the forward pass
  alone) through the same Triton;
* ``blocks``: the same network exported with ``--layers blocks --methods all`` (every
  block's last convolution, all five methods, from one pass) through the same Triton;
* ``eager``: the per-frame recipe of the common tutorials in this process (a Keras model
  returning the layer output and the predictions, one `tf.GradientTape` per frame, numpy
  for the weights), same model and weights.

Triton is fed with requests of ``--batch-size`` frames, ``--in-flight`` of them outstanding,
after a warm-up. Reported: frames/s of each variant (median over rounds) and the medians of
the per-round ratios gradcam/forward (target >= 0.85), blocks/forward (no target) and
gradcam/eager (target >= 5). A ratio whose two variants' per-round ranges overlap is
reported as about equal.

    .venv/bin/python bench/server_throughput.py            # a few minutes on 2 cores
    .venv/bin/python bench/server_throughput.py --quick    # smoke run, EfficientNet-Lite0 only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import log, median

NAME = "server_throughput"
FORWARD_TARGET = 0.85
EAGER_TARGET = 5.0

# Per network: frames through Triton per variant and round, eager frames per round, rounds.
DEFAULTS = {
    "efficientnet-lite0": {"frames": 160, "eager_frames": 24, "rounds": 5},
    "vgg16": {"frames": 32, "eager_frames": 6, "rounds": 3},
}
QUICK = {
    "efficientnet-lite0": {"frames": 64, "eager_frames": 3, "rounds": 2},
    "vgg16": {"frames": 16, "eager_frames": 2, "rounds": 1},
}
WEIGHTS = {"efficientnet-lite0": "ImageNet weights, offline", "vgg16": "random weights"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        help="comma-separated: efficientnet-lite0,vgg16 (default: both; --quick: "
        "efficientnet-lite0)",
    )
    parser.add_argument(
        "--frames", type=int, help="EfficientNet-Lite0 frames per Triton variant and round (160)"
    )
    parser.add_argument("--eager-frames", type=int, help="EfficientNet-Lite0 eager frames (24)")
    parser.add_argument("--rounds", type=int, help="EfficientNet-Lite0 rounds (5)")
    parser.add_argument("--vgg16-frames", type=int, help="VGG16 frames per variant and round (32)")
    parser.add_argument("--vgg16-eager-frames", type=int, help="VGG16 eager frames per round (6)")
    parser.add_argument("--vgg16-rounds", type=int, help="VGG16 rounds (3)")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per request")
    parser.add_argument("--in-flight", type=int, default=2, help="requests outstanding")
    parser.add_argument("--warmup-batches", type=int, help="batches per variant first (2)")
    parser.add_argument("--quick", action="store_true", help="smoke run (< 1 minute)")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    args.models = (
        [m.strip() for m in args.models.split(",") if m.strip()]
        if args.models
        else (["efficientnet-lite0"] if args.quick else list(DEFAULTS))
    )
    args.plan = {}
    for model in args.models:
        if model not in DEFAULTS:
            parser.error(f"unknown model {model!r}: use {', '.join(DEFAULTS)}")
        prefix = "vgg16_" if model == "vgg16" else ""
        plan = dict(preset[model])
        for key in plan:
            value = getattr(args, prefix + key)
            if value is not None:
                plan[key] = value
        args.plan[model] = plan
    if args.warmup_batches is None:
        args.warmup_batches = 1 if args.quick else 2
    return args


TRITON_VARIANTS = ["gradcam", "blocks", "forward"]


def export_blocks(source: Any, repository: Path, name: str, max_batch_size: int) -> Path:
    """Export `source` with every block's last convolution and all five methods."""
    from gradcam_client.remote.contract import METHODS
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    started = time.perf_counter()
    folder = export(
        source,
        repository,
        name=name,
        layers=["blocks"],
        methods=list(METHODS),
        options=ServingOptions(max_batch_size=max(16, max_batch_size)),
    )
    log(f"exported {name} in {time.perf_counter() - started:.0f} s")
    return folder


def sample_frames(height: int, width: int, count: int = 32) -> np.ndarray:
    """Model-size RGB frames of a real photo (a pan-and-zoom across scikit-image's cat)."""
    from gradcam_client.media.samples import pan_zoom_frames

    return np.stack(pan_zoom_frames(count, (width, height)))


def time_eager(eager: benchlib.EagerGradCam, frames: np.ndarray, count: int) -> float:
    """Seconds for `count` frames through the eager recipe, one frame at a time."""
    started = time.perf_counter()
    for i in range(count):
        eager(frames[i % len(frames)])
    return time.perf_counter() - started


def map_agreement(client: Any, eager: benchlib.EagerGradCam, frames: np.ndarray) -> float:
    """Largest difference between the served and the eager map (both scaled to [0, 1]) on a
    few frames: a check that both sides compute the same Grad-CAM."""
    result = client.infer(frames[:4], np.full(4, -1, np.int32))
    served = next(iter(result.maps.values()))[:, 0]
    worst = 0.0
    for i in range(len(served)):
        mine, _ = eager(frames[i])
        theirs = served[i] / served[i].max() if served[i].max() > 0 else served[i]
        worst = max(worst, float(np.abs(mine - theirs).max()))
    return worst


def bench_model(
    model: str, plan: dict[str, int], server: Any, eager: benchlib.EagerGradCam, args
) -> dict[str, Any]:
    """Interleaved rounds of gradcam / forward / eager for one network."""
    from gradcam_client.remote.server import GradcamServer

    clients = {
        "gradcam": GradcamServer(server.urls.grpc, model),
        "blocks": GradcamServer(server.urls.grpc, f"{model}-blocks"),
        "forward": GradcamServer(server.urls.grpc, f"{model}-forward"),
    }
    info = clients["gradcam"].model_info()
    frames = sample_frames(info.input_height, info.input_width)
    log(f"{model}: warm-up")
    for client in clients.values():
        benchlib.stream_batches(
            client, frames, args.warmup_batches * args.batch_size, args.batch_size, args.in_flight
        )
    time_eager(eager, frames, 2)
    agreement = map_agreement(clients["gradcam"], eager, frames)

    rounds: list[dict[str, Any]] = []
    for r in range(plan["rounds"]):
        row: dict[str, Any] = {}
        for variant in benchlib.rotated([*TRITON_VARIANTS, "eager"], r):
            if variant == "eager":
                seconds = time_eager(eager, frames, plan["eager_frames"])
                row["eager"] = {"frames": plan["eager_frames"], "seconds": seconds}
            else:
                timing = benchlib.stream_batches(
                    clients[variant],
                    frames,
                    plan["frames"],
                    args.batch_size,
                    args.in_flight,
                    server=server,
                )
                row[variant] = {
                    "frames": timing.frames,
                    "seconds": timing.seconds,
                    "server_cpu_s": timing.server_cpu_s,
                    "client_cpu_s": timing.client_cpu_s,
                    "triton": timing.triton,
                }
        for variant in (*TRITON_VARIANTS, "eager"):
            row[variant]["fps"] = row[variant]["frames"] / row[variant]["seconds"]
        row["gradcam_over_forward"] = row["gradcam"]["fps"] / row["forward"]["fps"]
        row["blocks_over_forward"] = row["blocks"]["fps"] / row["forward"]["fps"]
        row["gradcam_over_eager"] = row["gradcam"]["fps"] / row["eager"]["fps"]
        rounds.append(row)
        log(
            f"{model} round {r + 1}/{plan['rounds']}: gradcam {row['gradcam']['fps']:.1f}, "
            f"blocks {row['blocks']['fps']:.1f}, forward {row['forward']['fps']:.1f}, "
            f"eager {row['eager']['fps']:.2f} frames/s"
        )
    clients_layers = len(clients["blocks"].model_info().layers)
    for client in clients.values():
        client.close()

    def fps(variant: str) -> list[float]:
        return [row[variant]["fps"] for row in rounds]

    def compute_ms(variant: str) -> float:
        """Triton's compute time per frame (inside the model), median over rounds."""
        return median(
            [
                1000
                * row[variant]["triton"]["compute_s"]
                / max(row[variant]["triton"]["inferences"], 1)
                for row in rounds
            ]
        )

    return {
        "model": model,
        "weights": WEIGHTS[model],
        "input": [info.input_height, info.input_width],
        "layer": info.layer_names[0],
        "plan": plan,
        "map_max_abs_difference": agreement,
        "rounds": rounds,
        "blocks_layers": clients_layers,
        "fps": {variant: median(fps(variant)) for variant in (*TRITON_VARIANTS, "eager")},
        "fps_range": {
            variant: [min(fps(variant)), max(fps(variant))]
            for variant in (*TRITON_VARIANTS, "eager")
        },
        "triton_compute_ms_per_frame": {v: compute_ms(v) for v in TRITON_VARIANTS},
        "gradcam_over_forward": median([row["gradcam_over_forward"] for row in rounds]),
        "blocks_over_forward": median([row["blocks_over_forward"] for row in rounds]),
        "gradcam_over_eager": median([row["gradcam_over_eager"] for row in rounds]),
    }


def overlap_note(res: dict[str, Any], variant: str) -> str:
    """ ", rounds overlap: about equal" when the variant's and forward's ranges overlap."""
    low, high = res["fps_range"][variant]
    forward_low, forward_high = res["fps_range"]["forward"]
    overlap = low <= forward_high and forward_low <= high
    return "; the rounds overlap: about equal" if overlap else ""


def report(results: list[dict[str, Any]], args, machine: dict[str, Any]) -> tuple[str, str]:
    """The terminal text and the markdown of the results."""
    headers = ["model", "variant", "frames/s", "range", "ms/frame", "Triton compute ms/frame"]
    rows = []
    for res in results:
        for variant, label in (
            ("gradcam", "Grad-CAM via Triton (head layer)"),
            ("blocks", f"{res['blocks_layers']} layers x 5 methods via Triton"),
            ("forward", "forward only via Triton"),
            ("eager", "eager GradientTape per frame"),
        ):
            fps = res["fps"][variant]
            low, high = res["fps_range"][variant]
            compute = res["triton_compute_ms_per_frame"].get(variant)
            rows.append(
                [
                    res["model"],
                    label,
                    fps,
                    f"{low:.3g}..{high:.3g}",
                    1000 / fps,
                    "-" if compute is None else compute,
                ]
            )
    text, md = benchlib.table(headers, rows)
    lines = []
    for res in results:
        lines.append(
            benchlib.ratio_line(
                f"{res['model']} gradcam/forward ratio", res["gradcam_over_forward"], FORWARD_TARGET
            )
            + overlap_note(res, "gradcam")
        )
        lines.append(
            f"{res['model']} blocks, all methods/forward ratio: "
            f"{res['blocks_over_forward']:.2f} (no target)" + overlap_note(res, "blocks")
        )
        lines.append(
            benchlib.ratio_line(
                f"{res['model']} gradcam(Triton)/eager ratio",
                res["gradcam_over_eager"],
                EAGER_TARGET,
            )
        )
    settings = (
        f"batch {args.batch_size}, {args.in_flight} requests in flight, "
        f"{machine['cpus']} CPUs, load average at start {machine['load_average']}"
    )
    plans = "; ".join(
        f"{r['model']} ({r['weights']}, {r['input'][0]}x{r['input'][1]}, layer {r['layer']}): "
        f"{r['plan']['rounds']} rounds of {r['plan']['frames']} Triton frames and "
        f"{r['plan']['eager_frames']} eager frames; served vs eager map max |diff| "
        f"{r['map_max_abs_difference']:.2g}"
        for r in results
    )
    terminal = f"{text}\n\n" + "\n".join(lines)
    markdown = (
        f"# Server throughput{' (quick run)' if args.quick else ''}\n\n"
        f"{machine['time']}: {settings}.\n\n{plans}.\n\n{md}\n\n"
        "Ratios (median of the per-round ratios):\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + "\n"
    )
    return terminal, markdown


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = benchlib.machine_info()
    started = time.perf_counter()
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        eagers: dict[str, benchlib.EagerGradCam] = {}
        for model in args.models:
            source = benchlib.load_source(model)
            benchlib.export_model(source, repository, model)
            benchlib.export_model(source, repository, f"{model}-forward", predictions_only=True)
            export_blocks(source, repository, f"{model}-blocks", args.batch_size)
            eagers[model] = benchlib.EagerGradCam(source)
        results = []
        with benchlib.running_triton(repository, work) as server:
            for model in args.models:
                results.append(bench_model(model, args.plan[model], server, eagers[model], args))
    terminal, markdown = report(results, args, machine)
    print(terminal)
    data = {
        "benchmark": NAME,
        "quick": args.quick,
        "machine": machine,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {"batch_size": args.batch_size, "in_flight": args.in_flight},
        "targets": {"gradcam_over_forward": FORWARD_TARGET, "gradcam_over_eager": EAGER_TARGET},
        "results": results,
        "wall_seconds": time.perf_counter() - started,
    }
    name = f"{NAME}-quick" if args.quick else NAME
    benchlib.write_results(name, data, markdown, args.output_dir)
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
