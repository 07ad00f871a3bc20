"""Comparing two models on one video: its cost against two runs back to back, where that cost
goes (client and server), and what the agreement figures mean against baselines.

Exports into a temporary repository EfficientNet-Lite0 (real weights) as version 1, the same
network with Gaussian noise added to its last layer's weights as version 2 (version policy
``all``), VGG16 with random weights (seed 0) as version 1 and with other random weights
(seed 1) as version 2, and the zero-cost model of `client_cost.py` (EfficientNet-Lite0's
contract, ready answers, no network: the stand-in for a server whose model costs nothing, as
on a fast GPU); starts Triton on it, then on a sample clip (a camera panning over the cat):

* cost: in each round, in turns (the order rotates), for EfficientNet-Lite0 (versions 1 | 2)
  and for the zero-cost model (against itself): ``compare_media``, the same composed through
  RGB (``JobSettings(yuv=False)``: how a comparison was composed before), and ``process_media``
  of A alone then B alone. Each job's wall time, the client's CPU (this process, every thread)
  and the server's (Triton and its backend stubs). Printed side by side: compare / (A alone +
  B alone) in wall time, client CPU and server CPU, per model (goal <= 0.75);
* agreement: EfficientNet-Lite0 against itself (must be exactly 1 / 1.0 / 0), against its
  noisy copy, and against VGG16 with random weights; VGG16 against VGG16 with other random
  weights (a shorter clip: VGG16 is slow on a CPU). Then baselines on the raw maps the runs
  wrote: each model's maps against its own maps of other frames of the clip and A's against
  B's of other frames (the chance level for maps of this clip), against a centre blob and a
  constant map (image-independent structure), and the resampling check (7x7 against 14x14
  maps, noise against noise; VGG16's 14x14 pooled to 7x7 instead of EfficientNet's upsampled).

Writes ``bench/results/compare.json`` and ``.md``::

    .venv/bin/python bench/compare.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import client_cost
import numpy as np

NOISE = 0.5
"""Noise on the last layer: this times the standard deviation of its weights."""

GOAL = 0.75
"""compare / (A alone + B alone), at most."""

COST_MODELS = {
    "efficientnet-lite0": ("efficientnet-lite0:1", "efficientnet-lite0:2"),
    "zero-cost model": (client_cost.MODEL, client_cost.MODEL),
}
JOBS = ("compare", "compare, RGB (before)", "A alone", "B alone")


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


# --------------------------------------------------------------------------- models and clips


def noisy_copy(source: Any, noise: float) -> Any:
    """The source model with Gaussian noise (`noise` x the weights' spread) on its last
    layer's kernel."""
    last = next(layer for layer in reversed(source.model.layers) if layer.get_weights())
    kernel, *rest = last.get_weights()
    rng = np.random.default_rng(0)
    last.set_weights([kernel + rng.normal(0, noise * kernel.std(), kernel.shape), *rest])
    return source


def random_vgg16(seed: int) -> Any:
    import keras

    from gradcam_server import model_sources

    keras.utils.set_random_seed(seed)
    return model_sources.vgg16(None)


def export_models(repository: Path, noise: float) -> None:
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions, VersionPolicy

    options = ServingOptions(version_policy=VersionPolicy.parse("all"))
    name = "efficientnet-lite0"
    export(benchlib.load_source(name), repository, name=name, options=options)
    export(noisy_copy(benchlib.load_source(name), noise), repository, name=name, version=2)
    export(random_vgg16(0), repository, name="vgg16", options=options)
    export(random_vgg16(1), repository, name="vgg16", version=2)
    client_cost.write_zero_model(repository)


def write_clip(path: Path, frames: int, size: tuple[int, int]) -> Path:
    from gradcam_client.media.samples import pan_zoom_frames, write_frames

    return write_frames(path, pan_zoom_frames(frames, size), frames, size, 15)


# --------------------------------------------------------------------------- cost


def cost_round(
    triton: Any, pair: tuple[str, str], clip: Path, work: Path, round_index: int
) -> dict[str, dict[str, float]]:
    """Wall seconds, client and server CPU seconds of each job of `JOBS`, in turns."""
    from gradcam_client.compare.job import compare_media
    from gradcam_client.jobs.file_job import process_media
    from gradcam_client.jobs.settings import JobSettings
    from gradcam_client.remote.server import GradcamServer

    url = triton.urls.grpc

    def server(ref: str) -> GradcamServer:
        return GradcamServer(url, ref, max_in_flight=4)

    a, b = pair
    rgb = JobSettings(yuv=False)
    jobs: dict[str, Callable[[], Any]] = {
        "compare": lambda: compare_media(server(a), server(b), clip, work / "c.mp4"),
        "compare, RGB (before)": lambda: compare_media(
            server(a), server(b), clip, work / "c.mp4", rgb
        ),
        "A alone": lambda: process_media(server(a), clip, work / "a.mp4"),
        "B alone": lambda: process_media(server(b), clip, work / "b.mp4"),
    }
    measured = {}
    for label in benchlib.rotated(list(jobs), round_index):
        server_cpu = benchlib.server_cpu_seconds(triton)
        cpu, started = time.process_time(), time.perf_counter()
        frames = jobs[label]().frames
        measured[label] = {
            "frames": frames,
            "wall_s": time.perf_counter() - started,
            "client_cpu_s": time.process_time() - cpu,
            "server_cpu_s": benchlib.server_cpu_seconds(triton) - server_cpu,
        }
        benchlib.log(
            f"round {round_index + 1} {a} | {b}: {label} {measured[label]['wall_s']:.2f} s"
        )
    return measured


def cost_ratios(rounds: list[dict[str, dict[str, float]]], job: str) -> dict[str, float]:
    """Medians over the rounds of `job` / (A alone + B alone), within each round."""
    out = {}
    for key in ("wall_s", "client_cpu_s", "server_cpu_s"):
        ratios = [r[job][key] / (r["A alone"][key] + r["B alone"][key]) for r in rounds]
        out[key] = benchlib.median(ratios)
        out[key + "_range"] = benchlib.spread(ratios)
    return out


def per_frame_ms(rounds: list[dict[str, dict[str, float]]], job: str, key: str) -> float:
    return benchlib.median([1000 * r[job][key] / r[job]["frames"] for r in rounds])


def goal_line(label: str, ratio: float, spread: str) -> str:
    verdict = "met" if ratio <= GOAL else "MISSED"
    return f"{label}: {ratio:.2f} (goal <= {GOAL}) {verdict} (per round {spread})"


# --------------------------------------------------------------------------- agreement


def agreement(
    url: str, a: str, b: str, clip: Path, work: Path
) -> tuple[dict[str, Any], tuple[Path, Path]]:
    """The comparison's summary figures, and the files of each side's raw maps."""
    from gradcam_client.compare.job import compare_media
    from gradcam_client.remote.server import GradcamServer

    stem = f"{a}-{b}".replace(":", "_")
    result = compare_media(
        GradcamServer(url, a),
        GradcamServer(url, b),
        clip,
        work / f"{stem}.mp4",
        maps=(work / f"{stem}-a.npz", work / f"{stem}-b.npz"),
    )
    summary = result.summary
    benchlib.log(" / ".join(summary.lines()[:4]))
    figures = {
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
    assert result.maps is not None
    return figures, result.maps


def first_map(path: Path) -> np.ndarray:
    """[frames, h, w]: the first layer's first method's raw maps of a --maps file."""
    with np.load(path) as data:
        layer = next(name for name in data.files if name != "frame_time")
        return np.asarray(data[layer][:, 0], np.float64)


def measured(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Means of the three map measures over pairs of maps."""
    from gradcam_client.compare.agreement import compare_maps

    found = [compare_maps(a, b) for a, b in pairs]
    return {
        "pairs": len(found),
        "correlation_mean": float(np.mean([m.correlation for m in found])),
        "hot_iou_mean": float(np.mean([m.hot_iou for m in found])),
        "distance_mean": float(np.mean([m.distance for m in found])),
    }


def other_frames(a: np.ndarray, b: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A's map of each frame against B's maps of frames at least a quarter of the clip away
    (the camera shows another part of the photo there): the chance level for this clip."""
    n = len(a)
    gap = max(1, n // 4)
    return [(a[i], b[j]) for i in range(n) for j in range(n) if abs(i - j) >= gap]


def above_chance(figures: dict[str, Any], files: tuple[Path, Path]) -> dict[str, Any]:
    """`figures` with the correlation at chance (A's maps against B's of other frames) and
    the correlation above it: (r - chance) / (1 - chance), 1 for identical maps, about 0 for
    maps that agree no more than maps of different frames do."""
    a, b = first_map(files[0]), first_map(files[1])
    chance = measured(other_frames(a, b))["correlation_mean"]
    above = (figures["correlation_mean"] - chance) / (1 - chance) if chance < 1 else 0.0
    return figures | {"correlation_chance": chance, "correlation_above_chance": above}


def centre_blob(shape: tuple[int, int]) -> np.ndarray:
    """A Gaussian at the frame's centre, a sixth of the frame wide: a map that ignores the
    image."""
    ys = (np.arange(shape[0]) + 0.5) / shape[0] - 0.5
    xs = (np.arange(shape[1]) + 0.5) / shape[1] - 0.5
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * (1 / 6) ** 2))


def pooled(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Maps averaged down to `shape` (area interpolation), frame by frame."""
    import cv2

    return np.stack(
        [cv2.resize(m, shape[::-1], interpolation=cv2.INTER_AREA) for m in maps.astype(np.float32)]
    ).astype(np.float64)


def baselines(maps: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The reference points of the agreement figures (see the module's docstring)."""
    eff, eff_short, vgg, vgg_other = (
        maps["efficientnet"],
        maps["efficientnet short"],
        maps["vgg16"],
        maps["vgg16 seed 1"],
    )
    rng = np.random.default_rng(0)
    rows = [
        ("EfficientNet-Lite0 vs its maps of other frames", other_frames(eff, eff)),
        ("EfficientNet-Lite0 vs a centre blob", [(m, centre_blob(m.shape)) for m in eff]),
        ("EfficientNet-Lite0 vs a constant map", [(m, np.ones_like(m)) for m in eff]),
        ("VGG16 (random) vs its maps of other frames", other_frames(vgg, vgg)),
        ("VGG16 (random) vs a centre blob", [(m, centre_blob(m.shape)) for m in vgg]),
        ("VGG16 (random) vs VGG16 (other random weights)", list(zip(vgg, vgg_other, strict=True))),
        ("EfficientNet-Lite0 vs VGG16 (random), other frames", other_frames(eff_short, vgg)),
        (
            "EfficientNet-Lite0 vs VGG16 (random) pooled to 7x7",
            list(zip(eff_short, pooled(vgg, eff_short.shape[1:]), strict=True)),
        ),
        (
            "uniform noise 7x7 vs uniform noise 14x14",
            [(rng.random((7, 7)), rng.random((14, 14))) for _ in range(500)],
        ),
    ]
    out = []
    for label, pairs in rows:
        out.append({"baseline": label, **measured(pairs)})
        benchlib.log(f"baseline {label}: r {out[-1]['correlation_mean']:.3f}")
    return out


# --------------------------------------------------------------------------- report


def report(
    args: argparse.Namespace,
    argv: list[str] | None,
    machine: dict[str, Any],
    load_after: list[float],
    cost: dict[str, list[dict[str, dict[str, float]]]],
    figures: list[dict[str, Any]],
    references: list[dict[str, Any]],
) -> tuple[str, dict[str, Any]]:
    ratio_rows, frame_rows, data_cost = [], [], {}
    for model, rounds in cost.items():
        data_cost[model] = {"rounds": rounds}
        for job in JOBS[:2]:
            ratios = cost_ratios(rounds, job)
            data_cost[model][job] = ratios
            ratio_rows.append(
                [model, job]
                + [f"{ratios[k]:.2f} ({ratios[k + '_range']})" for k in ratios if "range" not in k]
            )
        frame_rows.append(
            [model]
            + [per_frame_ms(rounds, job, "client_cpu_s") for job in JOBS]
            + [per_frame_ms(rounds, job, "server_cpu_s") for job in JOBS]
        )
    ratio_text, ratio_md = benchlib.table(
        ["model", "comparison", "wall time", "client CPU", "server CPU"], ratio_rows
    )
    short = ["compare", "compare RGB", "A", "B"]
    frame_text, frame_md = benchlib.table(
        ["model", *[f"client {j}" for j in short], *[f"server {j}" for j in short]], frame_rows
    )
    eff, zero = data_cost["efficientnet-lite0"]["compare"], data_cost["zero-cost model"]["compare"]
    goals = [
        goal_line("wall time, EfficientNet-Lite0 (the issue's goal)", eff["wall_s"],
                  eff["wall_s_range"]),
        goal_line("client CPU, EfficientNet-Lite0", eff["client_cpu_s"],
                  eff["client_cpu_s_range"]),
        goal_line("wall time, zero-cost model (a fast GPU server)", zero["wall_s"],
                  zero["wall_s_range"]),
        goal_line("client CPU, zero-cost model", zero["client_cpu_s"],
                  zero["client_cpu_s_range"]),
    ]  # fmt: skip
    agree_rows = [
        (f"{f['a']} vs {f['b']}", f["frames"], f["agreement_rate"], f["correlation_mean"],
         f["correlation_worst"], f["correlation_chance"], f["correlation_above_chance"],
         f["hot_iou_mean"], f["hot_iou_worst"], f["distance_mean"], f["distance_worst"])
        for f in figures
    ]  # fmt: skip
    agree_text, agree_md = benchlib.table(
        ["models", "frames", "top-1 agreement", "correlation mean", "worst",
         "at chance (other frames)", "above chance", "IoU mean", "worst", "distance mean",
         "worst"],
        agree_rows,
    )  # fmt: skip
    base_rows = [
        (r["baseline"], r["pairs"], r["correlation_mean"], r["hot_iou_mean"], r["distance_mean"])
        for r in references
    ]
    base_text, base_md = benchlib.table(
        ["baseline", "map pairs", "correlation mean", "IoU mean", "distance mean"], base_rows
    )
    command = "bench/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(ratio_text, frame_text, "\n".join(goals), agree_text, base_text, sep="\n\n")
    goal_md = "\n".join(f"- {line}" for line in goals)
    markdown = f"""# Comparing two models on one video

`{command.strip()}` on {machine["time"]}; {machine["cpus"]} CPUs, load average
{machine["load_average"]} at the start, {load_after} at the end. Clip: {args.frames} frames at
{args.size} (VGG16: {args.vgg_frames} frames). EfficientNet-Lite0 version 2 has Gaussian
noise of {args.noise} x its spread on the last layer's weights; VGG16 has random weights
(seed 0; version 2 seed 1). The zero-cost model answers with ready maps (`client_cost.py`).

## Cost: one comparison against the two runs back to back

compare / (A alone + B alone), medians of the ratios within each round (their range):

{ratio_md}

{goal_md}

Milliseconds of CPU per frame (medians), the client's (this process) and the server's
(Triton and its backend stubs):

{frame_md}

## Agreement

{agree_md}

Baselines, on the raw maps of the runs above (means over the pairs of maps):

{base_md}
"""
    data = {
        "command": command.strip(),
        "machine": machine,
        "load_average_end": load_after,
        "settings": vars(args) | {"output_dir": str(args.output_dir)},
        "goal": GOAL,
        "cost": data_cost,
        "agreement": figures,
        "baselines": references,
    }
    return markdown, data


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
            cost: dict[str, list[dict[str, dict[str, float]]]] = {m: [] for m in COST_MODELS}
            for i in range(args.rounds):
                for model, pair in COST_MODELS.items():
                    cost[model].append(cost_round(triton, pair, clip, work, i))
            runs = [
                ("efficientnet-lite0:1", "efficientnet-lite0:1", clip),
                ("efficientnet-lite0:1", "efficientnet-lite0:2", clip),
                ("efficientnet-lite0:1", "vgg16:1", short),
                ("vgg16:1", "vgg16:2", short),
            ]
            done = [agreement(url, a, b, path, work) for a, b, path in runs]
            figures = [above_chance(figure, files) for figure, files in done]
            maps = {
                "efficientnet": first_map(done[1][1][0]),
                "efficientnet short": first_map(done[2][1][0]),
                "vgg16": first_map(done[3][1][0]),
                "vgg16 seed 1": first_map(done[3][1][1]),
            }
        references = baselines(maps)
        load_after = [round(x, 2) for x in os.getloadavg()]
    markdown, data = report(args, argv, machine, load_after, cost, figures, references)
    benchlib.write_results("compare", data, markdown, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
