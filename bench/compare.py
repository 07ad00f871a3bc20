"""Comparing two models on one video: its cost against two runs back to back, and how well the
agreement measures tell models apart.

Exports into a temporary repository EfficientNet-Lite0 (real weights) as version 1, the same
network with Gaussian noise added to its last layer's weights as version 2 (version policy
``all``), and VGG16 with random weights; starts Triton on it, then on a sample clip (a camera
panning over the cat photo):

* cost: in each round, in turns, ``compare_media`` of versions 1 and 2, and ``process_media``
  of version 1 alone then version 2 alone; the ratio compare / (A alone + B alone) of wall
  times (goal <= 0.75: decoding, composing and encoding are shared, the two models' requests
  are in flight together);
* agreement: EfficientNet-Lite0 against itself (must be exactly 1 / 1.0 / 0), against its
  noisy copy, and against VGG16 with random weights (a shorter clip: VGG16 is slow on a CPU).

Writes ``bench/results/compare.json`` and ``.md``::

    .venv/bin/python bench/compare.py --rounds 3
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

NOISE = 0.5
"""Noise on the last layer: this times the standard deviation of its weights."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150, help="frames of the timed clip")
    parser.add_argument("--vgg-frames", type=int, default=24, help="frames of the VGG16 clip")
    parser.add_argument("--size", default="640x360", help="WxH of the clips")
    parser.add_argument("--noise", type=float, default=NOISE, help="noise on the last layer")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def noisy_copy(source: Any, noise: float) -> Any:
    """The source model with Gaussian noise (`noise` x the weights' spread) on its last
    layer's kernel."""
    last = next(layer for layer in reversed(source.model.layers) if layer.get_weights())
    kernel, *rest = last.get_weights()
    rng = np.random.default_rng(0)
    last.set_weights([kernel + rng.normal(0, noise * kernel.std(), kernel.shape), *rest])
    return source


def export_models(repository: Path, noise: float) -> None:
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions, VersionPolicy

    options = ServingOptions(version_policy=VersionPolicy.parse("all"))
    name = "efficientnet-lite0"
    export(benchlib.load_source(name), repository, name=name, options=options)
    export(noisy_copy(benchlib.load_source(name), noise), repository, name=name, version=2)
    benchlib.export_model(benchlib.load_source("vgg16"), repository, "vgg16")


def write_clip(path: Path, frames: int, size: tuple[int, int]) -> Path:
    from gradcam_client.samples import pan_zoom_frames, write_frames

    return write_frames(path, pan_zoom_frames(frames, size), frames, size, 15)


def timed_round(url: str, clip: Path, work: Path, round_index: int) -> dict[str, float]:
    """Wall seconds of the comparison and of each model alone, in turns."""
    from gradcam_client.compare import compare_media
    from gradcam_client.pipeline import process_media
    from gradcam_client.triton import GradcamServer

    def server(version: int) -> GradcamServer:
        return GradcamServer(url, f"efficientnet-lite0:{version}", max_in_flight=4)

    jobs = {
        "compare": lambda: compare_media(server(1), server(2), clip, work / "compare.mp4"),
        "a": lambda: process_media(server(1), clip, work / "a.mp4"),
        "b": lambda: process_media(server(2), clip, work / "b.mp4"),
    }
    seconds = {}
    for label in benchlib.rotated(list(jobs), round_index):
        started = time.perf_counter()
        jobs[label]()
        seconds[label] = time.perf_counter() - started
        benchlib.log(f"round {round_index + 1}: {label} {seconds[label]:.2f} s")
    return seconds


def agreement(url: str, a: str, b: str, clip: Path, work: Path) -> dict[str, Any]:
    from gradcam_client.compare import compare_media
    from gradcam_client.triton import GradcamServer

    result = compare_media(
        GradcamServer(url, a), GradcamServer(url, b), clip, work / f"{a}-{b}.mp4".replace(":", "_")
    )
    summary = result.summary
    benchlib.log(" / ".join(summary.lines()[:4]))
    return {
        "a": a,
        "b": b,
        "frames": summary.frames,
        "agreement_rate": summary.agreement_rate,
        "correlation_mean": summary.map_correlation.mean,
        "correlation_worst": summary.map_correlation.worst,
        "hot_iou_mean": summary.hot_iou.mean,
        "hot_iou_worst": summary.hot_iou.worst,
        "distance_mean": summary.map_distance.mean,
        "distance_worst": summary.map_distance.worst,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    machine = benchlib.machine_info()
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repo"
        export_models(repository, args.noise)
        clip = write_clip(work / "clip.mp4", args.frames, (width, height))
        short = write_clip(work / "short.mp4", args.vgg_frames, (width, height))
        with benchlib.running_triton(repository, work) as triton:
            url = triton.urls.grpc
            rounds = [timed_round(url, clip, work, i) for i in range(args.rounds)]
            pairs = [
                ("efficientnet-lite0:1", "efficientnet-lite0:1", clip),
                ("efficientnet-lite0:1", "efficientnet-lite0:2", clip),
                ("efficientnet-lite0:1", "vgg16", short),
            ]
            figures = [agreement(url, a, b, path, work) for a, b, path in pairs]
        load_after = [round(x, 2) for x in os.getloadavg()]

    ratios = [r["compare"] / (r["a"] + r["b"]) for r in rounds]
    ratio = benchlib.median(ratios)
    cost_rows = [
        (i + 1, r["compare"], r["a"], r["b"], r["compare"] / (r["a"] + r["b"]))
        for i, r in enumerate(rounds)
    ]
    cost_text, cost_md = benchlib.table(
        ["round", "compare s", "A alone s", "B alone s", "compare / (A + B)"], cost_rows
    )
    rows = [
        (f"{f['a']} vs {f['b']}", f["frames"], f["agreement_rate"], f["correlation_mean"],
         f["correlation_worst"], f["hot_iou_mean"], f["hot_iou_worst"], f["distance_mean"],
         f["distance_worst"])
        for f in figures
    ]  # fmt: skip
    agree_text, agree_md = benchlib.table(
        ["models", "frames", "top-1 agreement", "correlation mean", "worst", "IoU mean",
         "worst", "distance mean", "worst"],
        rows,
    )  # fmt: skip
    line = benchlib.ratio_line(
        "compare / (A alone + B alone), median", ratio, 0.75, higher_is_better=False
    )
    command = "bench/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(cost_text, agree_text, line, sep="\n\n")
    markdown = f"""# Comparing two models on one video

`{command.strip()}` on {machine["time"]}; {machine["cpus"]} CPUs, load average
{machine["load_average"]} at the start, {load_after} at the end. Clip: {args.frames} frames at
{args.size} (VGG16: {args.vgg_frames} frames). Version 2 is EfficientNet-Lite0 with Gaussian
noise of {args.noise} x its spread on the last layer's weights; VGG16 has random weights.

## Cost: one comparison against the two runs back to back

{cost_md}

{line} (per round {benchlib.spread(ratios)}).

## Agreement

{agree_md}
"""
    data = {
        "command": command.strip(),
        "machine": machine,
        "load_average_end": load_after,
        "settings": vars(args) | {"output_dir": str(args.output_dir)},
        "rounds": rounds,
        "ratio_median": ratio,
        "ratios": ratios,
        "agreement": figures,
    }
    benchlib.write_results("compare", data, markdown, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
