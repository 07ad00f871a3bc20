"""Your own model through ONNX, per family: export time, Grad-CAM / forward-only throughput
through Triton, the maps' agreement with pytorch-grad-cam, and a side-by-side picture.

The models are those of the cross-check tier (`tests/crosscheck/torch_families.py`: small
random-weight PyTorch networks of the main families) built for `--size` (224 by default) and
EfficientNet-Lite0 with its real ImageNet weights (224), each exported to ONNX with
`torch.onnx.export` as the documentation shows, then with `gradcam-server export --model
x.onnx` three times: the default layer (Grad-CAM), `--predictions-only` (the forward pass
alone) and every method the layer allows. A family the exporter refuses is listed with its
one-line error. One Triton serves every export; requests of `--batch-size` frames of the
sample clip, `--in-flight` outstanding, in interleaved rounds whose order rotates.

Reported per model: the time of `torch.onnx.export` and of `gradcam-server export` (in this
process, TensorFlow already imported); Grad-CAM and forward-only frames/s and the median of the
per-round ratios (goal >= 0.9); for every method, the largest difference between the served
map (float32) and pytorch-grad-cam's on the PyTorch model in float64, over a map's maximum, on
four frames, and the largest difference of the probabilities. The picture: one frame of the
sample clip, the served Grad-CAM map beside pytorch-grad-cam's, for every converted model.

Needs the cross-check tier (`make crosscheck` installs PyTorch and pytorch-grad-cam).

    .venv/bin/python bench/onnx_models.py            # ~10 min on 2 cores
    .venv/bin/python bench/onnx_models.py --quick    # smoke run, a few models at 96x96
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import log, median
from onnx_side_by_side import Row, write_picture

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "crosscheck"))

NAME = "onnx_models"
RATIO_GOAL = 0.9
AGREEMENT_FRAMES = 4
PICTURE_FRAME = 30  # of the 60-frame sample clip
NONNEGATIVE_ONLY = ("gradcampp", "xgradcam")
QUICK_MODELS = ("resnet-basic", "vit", "normalized-255")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated family names (default: every one)")
    parser.add_argument("--size", type=int, help="input size of the random-weight models (224)")
    parser.add_argument(
        "--frames",
        type=int,
        help="frames per variant and round (640 for the small random-weight models, a few "
        "seconds each; 160 for EfficientNet-Lite0)",
    )
    parser.add_argument("--rounds", type=int, help="rounds (5)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--warmup-batches", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 models at 96x96")
    parser.add_argument(
        "--transformer",
        metavar="WIDTHxDEPTH",
        help="width and depth of the ViT and DeiT models, e.g. 192x12 (ViT-Ti/DeiT-Ti's); "
        "default: the cross-check's small ones",
    )
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    args.size = args.size or (96 if args.quick else 224)
    args.rounds = args.rounds or (1 if args.quick else 5)
    return args


TRANSFORMERS = ("vit", "deit")
"""The families whose width and depth --transformer sets."""


def families(args: argparse.Namespace) -> list[Any]:
    import torch_families

    if args.models:
        names = args.models.split(",")
    elif args.quick:
        names = list(QUICK_MODELS)
    else:
        names = list(torch_families.BY_NAME)
    unknown = [n for n in names if n not in torch_families.BY_NAME]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}: use {', '.join(torch_families.BY_NAME)}")
    chosen = [torch_families.BY_NAME[n] for n in names]
    if not args.transformer:
        return chosen
    width, depth = (int(n) for n in args.transformer.lower().split("x"))
    return [
        dataclasses.replace(f, make=functools.partial(f.make, dim=width, depth=depth))
        if f.name in TRANSFORMERS
        else f
        for f in chosen
    ]


def gradcam_server_export(arguments: list[str]) -> tuple[float, str]:
    """Run `gradcam-server export ARGUMENTS` in this process: (seconds, its error line or '')."""
    from gradcam_server import cli

    errors = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["export", *arguments])
    seconds = time.perf_counter() - started
    message = errors.getvalue().strip().splitlines()
    if code == 0:
        return seconds, ""
    line = message[-1] if message else f"exit code {code}"
    return seconds, line.removeprefix("gradcam-server export: ")


def warm_up_onnx_export() -> None:
    """One throwaway `torch.onnx.export`, so the first family's time is not PyTorch's start."""
    import torch
    import torch_families

    with benchlib.work_dir(keep=False) as work:
        torch_families.export_onnx(torch.nn.Conv2d(3, 1, 1), 8, work / "warm-up.onnx")


def export_family(family: Any, size: int, work: Path, repository: Path) -> dict[str, Any]:
    """The PyTorch model, its ONNX file and the three exports of it (timed)."""
    import torch_families
    from library_cams import LIBRARY_METHODS

    network = family.build(size if not family.pretrained else None)
    size = family.input_size if family.pretrained else size
    started = time.perf_counter()
    path = torch_families.export_onnx(network, size, work / f"{family.name}.onnx")
    onnx_seconds = time.perf_counter() - started
    signed_ok = [m for m in LIBRARY_METHODS if m not in NONNEGATIVE_ONLY]
    methods = list(LIBRARY_METHODS) if family.nonnegative else signed_ok
    common = ["--model", str(path), "--repository", str(repository)]
    common += ["--preprocessing", family.preprocessing]
    seconds, error = gradcam_server_export([*common, "--name", family.name])
    result: dict[str, Any] = {
        "model": family.name,
        "what": family.what,
        "network": network,
        "input_size": size,
        "onnx_export_s": onnx_seconds,
        "export_s": seconds,
        "error": error,
        "methods": methods,
        "pretrained": family.pretrained,
    }
    log(f"{family.name}: ONNX {onnx_seconds:.1f} s, export {seconds:.1f} s {error}".rstrip())
    if error:
        return result
    seconds, error = gradcam_server_export(
        [*common, "--name", f"{family.name}-forward", "--predictions-only"]
    )
    result["export_forward_s"] = seconds
    if error:
        result["error"] = f"{family.name}-forward: {error}"
        return result
    for attempt in (methods, signed_ok):
        _, error = gradcam_server_export(
            [*common, "--name", f"{family.name}-methods", "--methods", ",".join(attempt)]
        )
        if not error:
            break
        result["methods_refused"] = error  # the exporter judged the layer signed
        log(f"{family.name}: {error}")
    result["methods"] = attempt
    if error:
        result["error"] = f"{family.name}-methods: {error}"
    return result


def clip_frames(work: Path) -> np.ndarray:
    """The decoded frames of the sample clip (a pan over scikit-image's cat), RGB."""
    import av

    from gradcam_client.media.samples import write_sample_clip

    path = write_sample_clip(work / "chelsea.mp4")
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def at_size(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def throughput(server: Any, family: dict[str, Any], frames: np.ndarray, args) -> dict[str, Any]:
    """Interleaved rounds of Grad-CAM and forward-only through Triton."""
    from gradcam_client.remote.server import GradcamServer

    name = family["model"]
    clients = {
        "gradcam": GradcamServer(server.urls.grpc, name),
        "forward": GradcamServer(server.urls.grpc, f"{name}-forward"),
    }
    for client in clients.values():
        benchlib.stream_batches(
            client, frames, args.warmup_batches * args.batch_size, args.batch_size, args.in_flight
        )
    rounds = []
    count = args.frames or (48 if args.quick else 160 if family["pretrained"] else 640)
    family["frames_per_round"] = count
    for r in range(args.rounds):
        row = {}
        for variant in benchlib.rotated(list(clients), r):
            timing = benchlib.stream_batches(
                clients[variant], frames, count, args.batch_size, args.in_flight, server
            )
            row[variant] = timing.fps
        row["ratio"] = row["gradcam"] / row["forward"]
        rounds.append(row)
        log(
            f"{name} round {r + 1}/{args.rounds}: Grad-CAM {row['gradcam']:.1f}, "
            f"forward {row['forward']:.1f} frames/s"
        )
    layer = clients["gradcam"].model_info().layers[0]
    for client in clients.values():
        client.close()
    return {
        "layer": f"{layer.name} ({layer.height}x{layer.width})",
        "rounds": rounds,
        "gradcam_fps": median([r["gradcam"] for r in rounds]),
        "forward_fps": median([r["forward"] for r in rounds]),
        "ratio": median([r["ratio"] for r in rounds]),
        "ratio_range": [min(r["ratio"] for r in rounds), max(r["ratio"] for r in rounds)],
    }


def agreement(server: Any, family: Any, exported: dict[str, Any], frames: np.ndarray):
    """Served maps (every method) against pytorch-grad-cam's in float64, per method; and
    the served Grad-CAM map and the library's of the first frame and its class, for the
    picture."""
    import torch
    from library_cams import library_maps, logits
    from torch_families import model_input

    from gradcam_client.remote.server import GradcamServer

    client = GradcamServer(server.urls.grpc, f"{exported['model']}-methods")
    try:
        result = client.infer(frames, np.full(len(frames), -1, np.int32))
        info = client.model_info()
    finally:
        client.close()
    served = result.maps[info.layers[0].name]  # [n, methods, h, w]
    network = exported["network"].to(torch.float64)
    inputs = model_input(frames, family.preprocessing, torch.float64)
    reference = logits(network, inputs)
    probabilities = np.exp(reference - reference.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    layer = family.target(network)
    per_method: dict[str, float | None] = {}
    first = None
    for m, method in enumerate(info.methods):
        theirs = library_maps(network, layer, family.reshape, method, inputs, result.class_index)
        ours = served[:, m]
        if method == "gradcam":
            label = info.class_names[int(result.class_index[0])]
            first = (ours[0], theirs[0], label)
        if ours.shape != theirs.shape:  # the exporter explains another layer
            per_method[method] = None
            continue
        peaks = np.maximum(np.abs(theirs).max(axis=(1, 2)), 1e-12)
        per_method[method] = float((np.abs(ours - theirs).max(axis=(1, 2)) / peaks).max())
    network.to(torch.float32)
    return {
        "map_difference": per_method,
        "probability_difference": float(np.abs(result.probabilities - probabilities).max()),
        "same_class": bool((result.class_index == reference.argmax(axis=1)).all()),
    }, first


def report(
    results: list[dict[str, Any]], args, machine: dict[str, Any], picture: str
) -> tuple[str, str]:
    headers = [
        "model",
        "input",
        "layer",
        "ONNX export s",
        "export s",
        "Grad-CAM frames/s",
        "forward frames/s",
        "ratio (range)",
        "frames/round",
        "max map diff / max (methods)",
        "max prob. diff",
    ]
    rows = []
    for res in results:
        size = f"{res['input_size']}x{res['input_size']}"
        if res["error"]:
            rows.append([res["model"], size, "-", res["onnx_export_s"], res["export_s"]])
            rows[-1] += ["refused", "-", "-", "-", "-", "-"]
            continue
        low, high = res["ratio_range"]
        diffs = ", ".join(
            f"{m} {d:.1e}" if d is not None else f"{m}: another layer"
            for m, d in res["map_difference"].items()
        )
        rows.append(
            [
                res["model"],
                size,
                res["layer"],
                res["onnx_export_s"],
                res["export_s"],
                res["gradcam_fps"],
                res["forward_fps"],
                f"{res['ratio']:.2f} ({low:.2f}..{high:.2f})",
                res["frames_per_round"],
                diffs,
                f"{res['probability_difference']:.1e}",
            ]
        )
    text, md = benchlib.table(headers, rows)
    refused = [f"- {r['model']}: {r['error']}" for r in results if r["error"]]
    refused += [
        f"- {r['model']}, every method: {r['methods_refused']} (compared: "
        f"{', '.join(r['methods'])})"
        for r in results
        if r.get("methods_refused")
    ]
    settings = (
        f"batch {args.batch_size}, {args.in_flight} requests in flight, {args.rounds} rounds "
        f"per variant, {machine['cpus']} CPUs, load average at start "
        f"{machine['load_average']}"
    )
    markdown = (
        f"# Your own model through ONNX{' (quick run)' if args.quick else ''}\n\n"
        f"{machine['time']}: {settings}. Command: `.venv/bin/python bench/onnx_models.py"
        f"{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`.\n\n"
        "Random-weight models of each family (`tests/crosscheck/torch_families.py`, few "
        "channels: cheap, so fixed costs weigh more in the ratio than in full-size networks) "
        "and EfficientNet-Lite0 with its real weights. Map differences: served (float32) "
        "against pytorch-grad-cam on the PyTorch model in float64, over each map's maximum, "
        f"worst of {AGREEMENT_FRAMES} frames. Goal for the ratio: >= {RATIO_GOAL}.\n\n"
        f"{md}\n"
        + ("\nRefused by the exporter:\n\n" + "\n".join(refused) + "\n" if refused else "")
        + f"\n![one frame per model: served and pytorch-grad-cam's Grad-CAM]({picture})\n"
    )
    return text, markdown


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torchvision_standin

    torchvision_standin.install()
    import tensorflow  # noqa: F401  (imported once here, not inside the first export's time)

    chosen = families(args)
    warm_up_onnx_export()
    machine = benchlib.machine_info()
    started = time.perf_counter()
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        exported = [export_family(f, args.size, work, repository) for f in chosen]
        video = clip_frames(work)
        results, rows = [], []
        converted = [(f, e) for f, e in zip(chosen, exported, strict=True) if not e["error"]]
        if converted:
            with benchlib.running_triton(repository, work) as server:
                for family, res in converted:
                    frames = at_size(video, res["input_size"])
                    res.update(throughput(server, res, frames, args))
                    picked = frames[PICTURE_FRAME : PICTURE_FRAME + AGREEMENT_FRAMES]
                    agreed, first = agreement(server, family, res, picked)
                    res.update(agreed)
                    rows.append(Row(family.name, picked[0], *first))
        for res in exported:
            res.pop("network")
            results.append(res)
    name = f"{NAME}-quick" if args.quick else NAME
    if rows:
        write_picture(rows, args.output_dir / f"{name}.png")
    terminal, markdown = report(results, args, machine, f"{name}.png")
    print(terminal)
    data = {
        "benchmark": NAME,
        "quick": args.quick,
        "machine": machine,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "size": args.size,
            "batch_size": args.batch_size,
            "in_flight": args.in_flight,
            "rounds": args.rounds,
        },
        "goal": {"gradcam_over_forward": RATIO_GOAL},
        "results": results,
        "wall_seconds": time.perf_counter() - started,
    }
    benchlib.write_results(name, data, markdown, args.output_dir)
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
