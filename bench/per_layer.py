"""The per-layer view: localisation of every method on every layer of the `blocks` preset.

Exports EfficientNet-Lite0 (real offline weights) with ``--layers blocks --methods all`` (the
last ReLU6 of each stage plus the head), serves it with Triton on free ports, explains the
hand-labelled photos (tests/data/boxes.json) and measures per layer and method:

- localisation: share of the map's energy inside the box, and the pointing game;
- agreement: Pearson correlation of each method's map with Grad-CAM's, and its raw peak
  relative to Grad-CAM's (methods that assume activations >= 0 blow up where they are not);
- the share of channels whose spatial sum is negative (0 on a post-activation layer).

For comparison, the same figures on each stage's block *output* (BatchNorm or residual Add,
no activation: the layers the preset named before), computed in this process with the same
method functions, since the exporter now refuses Grad-CAM++ and XGrad-CAM there.

Draws the per-layer panel (one Grad-CAM heat map per layer for every labelled photo) and the
methods-by-layers panel of the cat photo. Writes ``per_layer.json``, ``per_layer.md``,
``per_layer_panel.png`` and ``per_layer_methods.png`` into ``--output-dir`` (default
bench/results).

    .venv/bin/python bench/per_layer.py      # under a minute on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import benchlib
import map_quality as quality
from benchlib import log
from explanation_quality import Case, labelled_cases

from gradcam_client.jobs.targets import find_class
from gradcam_client.remote.contract import METHODS
from gradcam_client.remote.server import GradcamServer
from gradcam_client.render.compose import overlay
from gradcam_client.render.normalize import normalize_map

MODEL = "efficientnet-lite0"
ALL_METHODS = list(METHODS)


def short(layer: str) -> str:
    """A column title: "block4_dw_activation" -> "block4", "head_activation" -> "head"."""
    return layer.split("_")[0]


def explain(url: str, cases: list[Case], class_names: list[str]) -> dict[str, np.ndarray]:
    """Maps of every layer for every case: layer -> [case, method, h, w]."""
    server = GradcamServer(url, MODEL)
    targets = np.array(
        [-1 if c.target_name is None else find_class(c.target_name, class_names) for c in cases]
    )
    result = server.infer(np.stack([c.frame for c in cases]), targets)
    for i, case in enumerate(cases):
        case.target = int(result.class_index[i])
        case.probability = float(result.probabilities[i, case.target])
    return result.maps


def signed_layer_maps(source: Any, layers: list[str], cases: list[Case]) -> dict[str, Any]:
    """Every method's maps on the given layers, in process, with the product's method code."""
    import keras
    import tensorflow as tf

    from gradcam_server.cam_methods import CAM_METHODS
    from gradcam_server.keras_network import logits_model

    model = logits_model(source.model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in layers] + [model.output])
    images = source.preprocess(tf.constant(np.stack([c.frame for c in cases]), tf.float32))
    targets = tf.constant([c.target for c in cases])
    with tf.GradientTape() as tape:
        *acts, logits = probe(images, training=False)
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, acts)
    maps = {
        name: np.stack([CAM_METHODS[m](a, g).numpy() for m in ALL_METHODS], axis=1)
        for name, a, g in zip(layers, acts, grads, strict=True)
    }
    negative = {
        name: float(np.mean(tf.reduce_sum(a, axis=(1, 2)).numpy() < 0))
        for name, a in zip(layers, acts, strict=True)
    }
    return {"maps": maps, "negative_channels": negative}


def served_negative_channels(source: Any, layers: list[str], cases: list[Case]) -> dict:
    import keras
    import tensorflow as tf

    probe = keras.Model(source.model.inputs, [source.model.get_layer(n).output for n in layers])
    images = source.preprocess(tf.constant(np.stack([c.frame for c in cases]), tf.float32))
    acts = probe(images, training=False)
    return {
        name: float(np.mean(tf.reduce_sum(a, axis=(1, 2)).numpy() < 0))
        for name, a in zip(layers, acts, strict=True)
    }


def measure(maps: dict[str, np.ndarray], cases: list[Case]) -> dict[str, dict[str, dict]]:
    """layer -> method -> localisation and agreement with Grad-CAM, over the labelled cases."""
    out: dict[str, dict[str, dict]] = {}
    for layer, stack in maps.items():
        out[layer] = {}
        reference = stack[:, ALL_METHODS.index("gradcam")]
        for m, method in enumerate(ALL_METHODS):
            cams = stack[:, m]
            energy = [
                quality.energy_in_box(c, k.box, k.image.shape)
                for c, k in zip(cams, cases, strict=True)
            ]
            hits = [
                quality.pointing_hit(c, k.box, k.image.shape)
                for c, k in zip(cams, cases, strict=True)
            ]
            correlations = [quality.pearson(c, r) for c, r in zip(cams, reference, strict=True)]
            peaks = [
                float(c.max() / r.max()) if r.max() > 0 else float("nan")
                for c, r in zip(cams, reference, strict=True)
            ]
            out[layer][method] = {
                "energy_in_box": float(np.mean(energy)),
                "pointing_hits": int(sum(hits)),
                "correlation_with_gradcam": float(np.nanmean(correlations)),
                "min_correlation_with_gradcam": float(np.nanmin(correlations)),
                "peak_over_gradcam": float(np.nanmedian(peaks)),
                "per_case_energy": energy,
            }
    return out


def baselines(maps: dict[str, np.ndarray], cases: list[Case]) -> dict[str, dict[str, float]]:
    """Model-free references per layer shape: a centred Gaussian blob and a random map."""
    out = {}
    for layer, stack in maps.items():
        shape = stack.shape[-2:]
        centre = quality.centre_blob(shape)
        out[layer] = {
            "centre": float(
                np.mean([quality.energy_in_box(centre, c.box, c.image.shape) for c in cases])
            ),
            "random": float(
                np.mean(
                    [
                        quality.energy_in_box(
                            quality.random_map(shape, 1000 + i), c.box, c.image.shape
                        )
                        for i, c in enumerate(cases)
                    ]
                )
            ),
        }
    return out


# -- pictures ---------------------------------------------------------------------------------


def heat_panel(case: Case, cam: np.ndarray) -> np.ndarray:
    """The frame the model saw with the map overlaid (per-map maximum) and the box drawn."""
    import cv2

    picture = overlay(case.frame, normalize_map(cam), "jet", 0.5)
    height, width = case.image.shape[:2]
    x0, y0, x1, y1 = case.box
    sx, sy = case.frame.shape[1] / width, case.frame.shape[0] / height
    corner0 = (round(x0 * sx), round(y0 * sy))
    corner1 = (round(x1 * sx) - 1, round(y1 * sy) - 1)
    return cv2.rectangle(picture, corner0, corner1, (255, 255, 255), 2)


def plot_grid(
    rows: list[tuple[str, Case, dict[str, np.ndarray]]],
    layers: list[str],
    title: str,
    path: Path,
) -> None:
    """A grid of overlays: one row per (label, case, layer -> map), one column per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(rows), len(layers), figsize=(1.7 * len(layers), 1.85 * len(rows)), squeeze=False
    )
    for r, (label, case, cams) in enumerate(rows):
        for c, layer in enumerate(layers):
            ax = axes[r][c]
            ax.imshow(heat_panel(case, cams[layer]))
            if not cams[layer].max() > 0:  # shown uniformly cold: say why
                ax.text(0.5, 0.5, "all zero", color="white", ha="center", va="center",
                        transform=ax.transAxes, fontsize=9)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                h, w = cams[layer].shape
                ax.set_title(f"{short(layer)}\n{h}x{w}", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"wrote {path}")


# -- report -----------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    layers = results["layers"]
    n = len(results["cases"])
    lines = [
        "# The per-layer view: every method on every layer",
        "",
        f"EfficientNet-Lite0 with its ImageNet weights exported with `--layers blocks --methods "
        f"all` and served by Triton; {n} hand-labelled boxes (tests/data/boxes.json); "
        f"`bench/per_layer.py` ({results['seconds']:.0f} s). Panels: `per_layer_panel.png` "
        "(Grad-CAM, one heat map per layer, every labelled photo) and `per_layer_methods.png` "
        "(the cat photo, every method on every layer).",
        "",
        "## Localisation on the preset's post-activation layers",
        "",
        "Energy in box (mean share of the upsampled map's energy inside the box) / pointing "
        f"hits (of {n}); last columns: model-free maps of the same size.",
        "",
        "| layer | size | " + " | ".join(METHODS[m] for m in ALL_METHODS) + " | centre | random |",
        "|---|---|" + "---|" * (len(ALL_METHODS) + 2),
    ]
    for layer in layers:
        row = results["served"][layer]
        size = "x".join(map(str, results["sizes"][layer]))
        cells = [f"{row[m]['energy_in_box']:.2f} / {row[m]['pointing_hits']}" for m in ALL_METHODS]
        base = results["baselines"][layer]
        lines.append(
            f"| {layer} | {size} | "
            + " | ".join(cells)
            + f" | {base['centre']:.2f} | {base['random']:.2f} |"
        )
    lines += [
        "",
        "## Do the methods agree?",
        "",
        "Mean (minimum) Pearson correlation with Grad-CAM's map over the labelled photos, and "
        "the median raw peak relative to Grad-CAM's; the share of channels whose spatial sum "
        "is negative. Post-activation layers (served) against the block outputs the preset "
        "named before (BatchNorm or residual Add, computed in process: the exporter refuses "
        "Grad-CAM++ and XGrad-CAM there).",
        "",
        "| layer | channels < 0 | "
        + " | ".join(f"{METHODS[m]} corr (min) / peak" for m in ALL_METHODS[1:])
        + " |",
        "|---|---|" + "---|" * (len(ALL_METHODS) - 1),
    ]
    for kind, table in (("served", layers), ("signed", results["signed_layers"])):
        for layer in table:
            row = results[kind][layer]
            negative = results["negative_channels"][kind][layer]
            cells = [
                f"{row[m]['correlation_with_gradcam']:.2f} "
                f"({row[m]['min_correlation_with_gradcam']:.2f}) / "
                f"{row[m]['peak_over_gradcam']:.3g}"
                for m in ALL_METHODS[1:]
            ]
            lines.append(f"| {layer} | {negative:.0%} | " + " | ".join(cells) + " |")
    lines += ["", *findings(results), "", "Explained classes:", ""]
    for label, info in results["cases"].items():
        lines.append(f"- {label}: {info['class']} ({info['probability']:.2f})")
    lines += [
        "",
        f"Machine: {results['machine']['cpus']} CPUs, load {results['machine']['load_average']}.",
    ]
    return "\n".join(lines) + "\n"


def findings(results: dict) -> list[str]:
    """What the tables say, with the numbers they say it with."""
    negative = results["negative_channels"]
    served, signed = negative["served"].values(), negative["signed"].values()
    head = results["served"][results["layers"][-1]]
    head_corr = min(head[m]["correlation_with_gradcam"] for m in ALL_METHODS[1:])
    best = {
        layer: max(ALL_METHODS, key=lambda m: results["served"][layer][m]["energy_in_box"])
        for layer in results["layers"]
    }
    n_boxes = len(results["cases"])
    pointing = {
        layer: sum(results["served"][layer][m]["pointing_hits"] for m in ALL_METHODS)
        for layer in results["layers"]
    }
    xgrad = [results["served"][n]["xgradcam"]["peak_over_gradcam"] for n in results["layers"]]
    xgrad_signed = [
        results["signed"][n]["xgradcam"]["peak_over_gradcam"] for n in results["signed_layers"]
    ]
    return [
        "Reading:",
        "",
        f"- Channels with a negative sum: {max(served):.0%} on the preset's layers, "
        f"{min(signed):.0%}-{max(signed):.0%} on the block outputs.",
        f"- On the head layer every method's map correlates with Grad-CAM's at {head_corr:.2f} "
        "or more (mean over the photos). On the early layers the methods differ on either kind "
        "of layer: a channel weight averaged over a large map says little about where, which "
        "is what Layer-CAM's per-location weights address.",
        "- Grad-CAM++, Layer-CAM and HiResCAM sum over locations where Grad-CAM averages, so "
        "their raw peaks grow with the map's area: compare peaks within a column, not across. "
        "XGrad-CAM normalises like Grad-CAM: its peak is "
        f"{min(xgrad):.2g}-{max(xgrad):.2g}x Grad-CAM's on the preset's layers and "
        f"{min(xgrad_signed):.2g}-{max(xgrad_signed):.2g}x on the block outputs.",
        "- Best energy in box per layer (against the centred blob's): "
        + ", ".join(
            f"{short(n)} {METHODS[m]} {results['served'][n][m]['energy_in_box']:.2f} "
            f"({results['baselines'][n]['centre']:.2f})"
            for n, m in best.items()
        )
        + ".",
        f"- Pointing hits summed over the methods (of {len(ALL_METHODS) * n_boxes}): "
        + ", ".join(f"{short(n)} {hits}" for n, hits in pointing.items())
        + ".",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    from gradcam_server import efficientnet_lite0 as effnet
    from gradcam_server import model_sources
    from gradcam_server.exporter import export

    source = model_sources.efficientnet_lite0()
    layers = source.resolve_layers(["blocks"])
    signed = [n.replace("_dw_activation", "_output") for n in effnet.STAGE_ACTIVATIONS]
    cases = labelled_cases(None)
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        log(f"exporting {MODEL} with {len(layers)} layers and {len(ALL_METHODS)} methods")
        export(source, repository, layers=["blocks"], methods=ALL_METHODS)
        with benchlib.running_triton(repository, work) as server:
            maps = explain(server.urls.grpc, cases, source.class_names)
    in_process = signed_layer_maps(source, signed, cases)
    results = {
        "layers": layers,
        "signed_layers": signed,
        "sizes": {name: list(maps[name].shape[-2:]) for name in layers},
        "cases": {
            c.label: {"class": source.class_names[c.target], "probability": c.probability}
            for c in cases
        },
        "served": measure(maps, cases),
        "signed": measure(in_process["maps"], cases),
        "baselines": baselines(maps, cases),
        "negative_channels": {
            "served": served_negative_channels(source, layers, cases),
            "signed": in_process["negative_channels"],
        },
        "machine": benchlib.machine_info(),
        "seconds": time.monotonic() - started,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    gradcam = ALL_METHODS.index("gradcam")
    plot_grid(
        [(c.label, c, {n: maps[n][i, gradcam] for n in layers}) for i, c in enumerate(cases)],
        layers,
        "Grad-CAM on each stage's last activation and the head (EfficientNet-Lite0)",
        args.output_dir / "per_layer_panel.png",
    )
    cat = next(i for i, c in enumerate(cases) if c.label.startswith("chelsea"))
    plot_grid(
        [
            (METHODS[m], cases[cat], {n: maps[n][cat, k] for n in layers})
            for k, m in enumerate(ALL_METHODS)
        ],
        layers,
        f"Every method on every layer: {cases[cat].label} "
        f"({results['cases'][cases[cat].label]['class']})",
        args.output_dir / "per_layer_methods.png",
    )
    benchlib.write_results("per_layer", results, markdown(results), args.output_dir)
    print(markdown(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
