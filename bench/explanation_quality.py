"""Explanation quality and steady heat-map videos, measured against a real Triton server.

Exports into a temporary model repository

- ``efficientnet-lite0``: the real offline ImageNet weights, every method, ``head_activation``
  (7x7 maps);
- ``efficientnet-lite0-random-<stage>``: copies whose top layers are re-initialised with random
  values, cascading from the logits downwards (model-randomisation test of Adebayo et al.,
  "Sanity Checks for Saliency Maps", 2018);

starts Triton on free ports and measures, with `map_quality`:

1. faithfulness: deletion and insertion AUC (Petsiuk et al. 2018; pixels replaced by / revealed
   from a blurred copy) on the hand-labelled photos (tests/data/boxes.json) and on frames of a
   pan-and-zoom clip of chelsea, for every method and two model-free baselines (a random map
   with a fixed seed, a centred Gaussian blob);
2. localisation on the labelled boxes: share of the map's energy inside the box and the
   pointing game;
3. the randomisation sanity check: Spearman rank correlation between the trained model's maps
   and the randomised copies' maps (low = the map depends on the learned weights);
4. steadiness of heat-map videos made from real photos with camera motion: flicker of per-frame
   min-max normalisation (the usual tutorial recipe, the baseline), per-frame maximum, running
   maximum (several decays) and clip maximum, each with EMA smoothing; the correlation of the
   smoothed maps with the per-frame maps and their lag; and the default settings chosen from it.

VGG16's ImageNet weights are not available offline, so VGG16 is not measured here.

Writes ``explanation_quality.json``, ``explanation_quality.md`` and PNG plots into ``--out``
(default ``bench/results``; ``--quick`` writes to a temporary folder unless ``--out`` is given).

    .venv/bin/python bench/explanation_quality.py           # full run, a few minutes on 2 cores
    .venv/bin/python bench/explanation_quality.py --quick   # smoke run, under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import map_quality as quality

from gradcam_client.jobs.targets import find_class
from gradcam_client.media.samples import pan_zoom_frames, photo
from gradcam_client.remote.contract import METHODS
from gradcam_client.remote.server import GradcamServer
from gradcam_client.render.normalize import DEFAULT_DECAY

ROOT = Path(__file__).resolve().parents[1]
BOXES_FILE = ROOT / "tests" / "data" / "boxes.json"
MODEL = "efficientnet-lite0"
LAYER = "head_activation"
INPUT_SIZE = (224, 224)
ALL_METHODS = list(METHODS)
BASELINES = ["random", "centre"]
ALPHAS = [0.0, 0.3, 0.5, 0.7, 0.8, 0.9]
DECAYS = [0.8, 0.9, 0.95, 0.98]
FLICKER_CUT = 0.5  # the chosen setting must at most halve the baseline's flicker ...
MIN_CORRELATION = 0.9  # ... while keeping this correlation with the per-frame maps
CLIP_SIZE = (480, 320)  # the sample clip's size (scripts/demo.py)
# Steady subjects (cat, cup) and a clip whose predicted class keeps changing (astronaut).
FLICKER_CLIPS = ["chelsea", "coffee", "astronaut"]

# Cascading randomisation: each stage re-initialises its layers on top of the previous ones.
_BLOCK_PREFIXES_11_14 = tuple(f"block{i}_" for i in range(11, 15))
CASCADE: list[tuple[str, Callable[[str], bool]]] = [
    ("logits", lambda name: name == "logits"),
    ("head", lambda name: name in ("head_conv", "head_bn")),
    ("block15", lambda name: name.startswith("block15_")),
    ("blocks11-14", lambda name: name.startswith(_BLOCK_PREFIXES_11_14)),
]
MAIN_STAGE = "head"  # the table's randomisation column: logits + head_conv + head_bn


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- models and server ------------------------------------------------------------------------


def randomised_model_name(stage: str) -> str:
    return f"{MODEL}-random-{stage}"


def export_models(repository: Path, stages: Sequence[str], seed: int = 0) -> dict[str, list[str]]:
    """Export the real model and one randomised copy per cascade stage; layers per stage."""
    import keras

    from gradcam_server import efficientnet_lite0 as effnet
    from gradcam_server import model_sources
    from gradcam_server.exporter import export

    log(f"exporting {MODEL} (real weights, {len(ALL_METHODS)} methods)")
    export(model_sources.efficientnet_lite0(), repository, layers=[LAYER], methods=ALL_METHODS)
    keras.utils.set_random_seed(seed)
    fresh = effnet.build_model(None)
    randomised: list[str] = []
    stage_layers: dict[str, list[str]] = {}
    for stage, selects in CASCADE:
        randomised += [
            layer.name for layer in fresh.layers if selects(layer.name) and layer.weights
        ]
        stage_layers[stage] = list(randomised)
        if stage not in stages:
            continue
        source = model_sources.efficientnet_lite0()
        for name in randomised:
            source.model.get_layer(name).set_weights(fresh.get_layer(name).get_weights())
        source.description = f"EfficientNet-Lite0, layers from {stage} up re-initialised"
        log(f"exporting {randomised_model_name(stage)} ({len(randomised)} layers re-initialised)")
        export(
            source,
            repository,
            name=randomised_model_name(stage),
            layers=[LAYER],
            methods=ALL_METHODS,
        )
    return {stage: stage_layers[stage] for stage in stages}


@contextlib.contextmanager
def running_triton(repository: Path, log_dir: Path) -> Iterator[str]:
    """Serve the repository on free ports; yields the gRPC URL."""
    import local_triton

    log("starting Triton")
    with local_triton.running_triton(repository, log_dir=log_dir, ready_timeout=300) as server:
        log(f"Triton ready on {server.urls.grpc}")
        yield server.urls.grpc


# -- data -------------------------------------------------------------------------------------


def to_input(image: np.ndarray) -> np.ndarray:
    """The frame the model sees: the full image resized (no crop) with INTER_AREA."""
    return cv2.resize(image, INPUT_SIZE[::-1], interpolation=cv2.INTER_AREA)


@dataclass
class Case:
    """One explained frame: what the model sees, which class, and a box if labelled."""

    label: str
    image: np.ndarray  # original RGB image (box coordinates refer to it)
    frame: np.ndarray  # model input, 224x224
    target_name: str | None  # class name from boxes.json, None = predicted class
    box: tuple[float, float, float, float] | None = None
    target: int = -1
    probability: float = float("nan")
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # name -> 7x7 raw map
    random_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stage -> ...


def labelled_cases(photos: Sequence[str] | None) -> list[Case]:
    boxes = json.loads(BOXES_FILE.read_text())
    cases = []
    for name, entries in boxes.items():
        if name.startswith("_") or (photos is not None and name not in photos):
            continue
        image = photo(name)
        for label, entry in entries.items():
            cases.append(
                Case(
                    label=f"{name}/{label}",
                    image=image,
                    frame=to_input(image),
                    target_name=entry["class"],
                    box=tuple(entry["box"]),
                )
            )
    return cases


def clip_cases(name: str, n_frames: int, picks: int) -> list[Case]:
    """Evenly spaced frames of a pan-and-zoom clip, explained for their predicted class."""
    frames = pan_zoom_frames(n_frames, CLIP_SIZE, name)
    indices = np.linspace(0, n_frames - 1, picks).round().astype(int)
    return [
        Case(label=f"{name}-pan/{i}", image=frames[i], frame=to_input(frames[i]), target_name=None)
        for i in indices
    ]


def explain_cases(
    cases: list[Case], url: str, stages: Sequence[str], class_names: Sequence[str]
) -> None:
    """Fill targets, probabilities and maps (real model, baselines, randomised copies)."""
    real = GradcamServer(url, MODEL)
    requested = np.array(
        [-1 if c.target_name is None else find_class(c.target_name, class_names) for c in cases]
    )
    frames = np.stack([c.frame for c in cases])
    result = real.infer(frames, requested)
    for i, case in enumerate(cases):
        case.target = int(result.class_index[i])
        case.probability = float(result.probabilities[i, case.target])
        for m, method in enumerate(ALL_METHODS):
            case.maps[method] = result.maps[LAYER][i, m]
        case.maps["random"] = quality.random_map(case.maps["gradcam"].shape, seed=1000 + i)
        case.maps["centre"] = quality.centre_blob(case.maps["gradcam"].shape)
    targets = np.array([c.target for c in cases])
    for stage in stages:
        out = GradcamServer(url, randomised_model_name(stage)).infer(frames, targets)
        for i, case in enumerate(cases):
            case.random_maps[stage] = {
                method: out.maps[LAYER][i, m] for m, method in enumerate(ALL_METHODS)
            }


# -- 1-3: faithfulness, localisation, sanity ----------------------------------------------------


def faithfulness(
    cases: list[Case], url: str, steps: int
) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, np.ndarray]]]:
    """Deletion and insertion per case and map; also the curves (map -> kind -> [cases, n])."""
    server = GradcamServer(url, MODEL)

    def predict(frames: np.ndarray) -> np.ndarray:
        return server.infer(frames, np.full(len(frames), -1)).probabilities

    names = ALL_METHODS + BASELINES
    per_case: dict[str, dict[str, dict]] = {}
    curves: dict[str, dict[str, list[np.ndarray]]] = {
        n: {"deletion": [], "insertion": []} for n in names
    }
    for case in cases:
        started = time.monotonic()
        per_case[case.label] = {}
        substrate = quality.blurred(case.frame)
        for name in names:
            got = quality.causal_curves(
                case.frame, case.maps[name], predict, case.target, steps, substrate=substrate
            )
            per_case[case.label][name] = {kind: curve.auc for kind, curve in got.items()}
            for kind, curve in got.items():
                curves[name][kind].append(curve.scores)
        log(f"  {case.label}: {time.monotonic() - started:.1f} s")
    return per_case, {n: {k: np.stack(v) for k, v in kinds.items()} for n, kinds in curves.items()}


def localisation(cases: list[Case]) -> dict[str, dict[str, dict]]:
    """Energy in box and pointing hit per labelled case and map."""
    out: dict[str, dict[str, dict]] = {}
    for case in cases:
        if case.box is None:
            continue
        out[case.label] = {
            name: {
                "energy_in_box": quality.energy_in_box(cam, case.box, case.image.shape),
                "pointing_hit": quality.pointing_hit(cam, case.box, case.image.shape),
            }
            for name, cam in case.maps.items()
        }
    return out


def sanity(cases: list[Case], stages: Sequence[str]) -> dict[str, dict[str, dict]]:
    """Rank correlation of each method's map with the randomised copies' (stage -> method)."""
    out: dict[str, dict[str, dict]] = {}
    for stage in stages:
        out[stage] = {}
        for method in ALL_METHODS:
            values = [
                quality.rank_correlation(c.maps[method], c.random_maps[stage][method])
                for c in cases
            ]
            zero = sum(int(not np.any(c.random_maps[stage][method] > 0)) for c in cases)
            finite = [v for v in values if np.isfinite(v)]
            out[stage][method] = {
                "mean": float(np.mean(finite)) if finite else float("nan"),
                "values": values,
                "all_zero_maps": zero,
            }
        # Model-free maps are identical whatever the weights: correlation 1 by construction.
        for name in BASELINES:
            out[stage][name] = {"mean": 1.0, "values": [1.0] * len(cases), "all_zero_maps": 0}
    return out


def summary_table(
    per_case: dict[str, dict[str, dict]],
    local: dict[str, dict[str, dict]],
    sanity_result: dict[str, dict[str, dict]],
    main_stage: str,
) -> dict[str, dict[str, float]]:
    """Per map name: mean deletion/insertion AUC, energy in box, pointing accuracy, rank corr."""
    rows = {}
    for name in ALL_METHODS + BASELINES:
        deletion = [v[name]["deletion"] for v in per_case.values()]
        insertion = [v[name]["insertion"] for v in per_case.values()]
        energy = [v[name]["energy_in_box"] for v in local.values()]
        hits = [v[name]["pointing_hit"] for v in local.values()]
        rows[name] = {
            "deletion_auc": float(np.mean(deletion)),
            "deletion_auc_sd": float(np.std(deletion)),
            "insertion_auc": float(np.mean(insertion)),
            "insertion_auc_sd": float(np.std(insertion)),
            "energy_in_box": float(np.mean(energy)) if energy else float("nan"),
            "pointing_accuracy": float(np.mean(hits)) if hits else float("nan"),
            "pointing_hits": int(np.sum(hits)),
            "boxes": len(hits),
            "randomisation_rank_correlation": sanity_result[main_stage][name]["mean"]
            if main_stage in sanity_result
            else float("nan"),
        }
    return rows


TIE = 0.005  # AUC differences below this count as ties in the paired comparison


def paired(per_case: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Per method and baseline, frame by frame: wins/ties/losses and the mean AUC difference.

    A deletion win is a lower AUC than the baseline's on the same frame, an insertion win a
    higher one (by more than ``TIE``).
    """
    out: dict[str, dict[str, dict]] = {}
    for method in ALL_METHODS:
        out[method] = {}
        for baseline in BASELINES:
            entry = {}
            for kind, sign in (("deletion", -1.0), ("insertion", 1.0)):
                gains = np.array(
                    [sign * (v[method][kind] - v[baseline][kind]) for v in per_case.values()]
                )
                entry[kind] = {
                    "wins": int(np.sum(gains > TIE)),
                    "ties": int(np.sum(np.abs(gains) <= TIE)),
                    "losses": int(np.sum(gains < -TIE)),
                    "mean_gain": float(gains.mean()),
                }
            out[method][baseline] = entry
    return out


# -- 4: steadiness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    scheme: str  # quality.MINMAX or a scope name
    smoothing: float
    decay: float | None = None

    @property
    def label(self) -> str:
        if self.scheme == "running":
            return f"running (decay {self.decay:g})"
        return {"minmax": "per-frame min-max", "frame": "per-frame max", "clip": "clip max"}[
            self.scheme
        ]


def settings_grid() -> list[Setting]:
    schemes: list[tuple[str, float | None]] = [(quality.MINMAX, None), ("frame", None)]
    schemes += [("running", d) for d in DECAYS] + [("clip", None)]
    return [Setting(s, a, d) for s, d in schemes for a in ALPHAS]


@dataclass
class ClipMaps:
    """Raw maps of one clip, for each-frame targets and for one target for the whole clip."""

    predicted: np.ndarray  # [T, methods, h, w], each frame explained for its top class
    video: np.ndarray  # [T, methods, h, w], every frame explained for the clip's class
    classes: list[str]  # per-frame predicted class names
    video_class: str


def clip_maps(url: str, name: str, n_frames: int) -> ClipMaps:
    """Raw maps of a pan-and-zoom clip of a photo (`pan_zoom_frames`, the sample clip's frames).

    The frames are used as rendered, not through H.264: libx264's output differs slightly
    from run to run, and on a clip whose top class is a near tie that changes the results.
    Targets: each frame's top class (the client's default) and the class with the highest
    mean probability over the clip (``--target video``).
    """
    frames = np.stack([to_input(f) for f in pan_zoom_frames(n_frames, CLIP_SIZE, name)])
    server = GradcamServer(url, MODEL)
    names = server.model_info().class_names
    predicted = server.infer(frames, np.full(len(frames), -1))
    chosen = int(np.argmax(predicted.probabilities.mean(axis=0)))
    video = server.infer(frames, np.full(len(frames), chosen))
    return ClipMaps(
        predicted=predicted.maps[LAYER],
        video=video.maps[LAYER],
        classes=[names[i] for i in predicted.class_index],
        video_class=names[chosen],
    )


def steadiness(raw: dict[str, np.ndarray], grid: list[Setting]) -> dict[str, dict[str, list[dict]]]:
    """clip -> method -> one report per setting (flicker, ratio to baseline, corr, lag)."""
    out: dict[str, dict[str, list[dict]]] = {}
    for clip, maps in raw.items():
        out[clip] = {}
        for m, method in enumerate(ALL_METHODS):
            sequence = list(maps[:, m])
            reports = []
            for setting in grid:
                report = quality.temporal_report(
                    sequence,
                    setting.scheme,
                    setting.smoothing,
                    decay=setting.decay if setting.decay is not None else DEFAULT_DECAY,
                )
                reports.append({**asdict(setting), "label": setting.label, **asdict(report)})
            baseline = next(
                r["flicker"]
                for r in reports
                if r["scheme"] == quality.MINMAX and r["smoothing"] == 0
            )
            for r in reports:
                r["flicker_ratio"] = r["flicker"] / baseline if baseline > 0 else float("nan")
            out[clip][method] = reports
    return out


def target_comparison(
    clips: dict[str, ClipMaps], choice: dict | None, method: str = "gradcam"
) -> dict[str, dict[str, dict]]:
    """Flicker with each frame's class vs one class for the clip, baseline and chosen setting."""
    index = ALL_METHODS.index(method)
    out: dict[str, dict[str, dict]] = {}
    for clip, maps in clips.items():
        out[clip] = {}
        for target in ("predicted", "video"):
            sequence = list(getattr(maps, target)[:, index])
            entry = {"minmax_flicker": quality.temporal_report(sequence, quality.MINMAX).flicker}
            if choice is not None:
                chosen = quality.temporal_report(
                    sequence,
                    choice["scheme"],
                    choice["smoothing"],
                    decay=choice["decay"] or DEFAULT_DECAY,
                )
                entry.update(
                    chosen_flicker=chosen.flicker,
                    chosen_correlation=chosen.correlation,
                    chosen_lag=chosen.lag,
                )
            out[clip][target] = entry
    return out


def choose_default(
    study: dict[str, dict[str, list[dict]]], method: str = "gradcam"
) -> tuple[dict | None, list[dict]]:
    """The default normalisation settings, and the per-setting table behind the choice.

    A setting qualifies when, on every clip, its flicker is at most ``FLICKER_CUT`` times the
    per-frame min-max baseline's and its correlation with the per-frame maps is at least
    ``MIN_CORRELATION``. Among qualifying settings that can stream (not ``clip``, which needs
    the whole clip before the first frame), the one with the smallest worst-clip lag wins (the
    least smoothing that reaches the target), then the lowest mean flicker ratio over clips.
    """
    clips = list(study)
    table = []
    for index, setting in enumerate(study[clips[0]][method]):
        row = {k: setting[k] for k in ("label", "scheme", "smoothing", "decay")}
        per_clip = {clip: study[clip][method][index] for clip in clips}
        row["clips"] = {
            clip: {k: r[k] for k in ("flicker", "flicker_ratio", "correlation", "lag")}
            for clip, r in per_clip.items()
        }
        row["worst_ratio"] = max(r["flicker_ratio"] for r in per_clip.values())
        row["worst_correlation"] = min(r["correlation"] for r in per_clip.values())
        row["worst_lag"] = max(r["lag"] for r in per_clip.values())
        row["mean_ratio"] = float(np.mean([r["flicker_ratio"] for r in per_clip.values()]))
        row["qualifies"] = bool(
            row["worst_ratio"] <= FLICKER_CUT and row["worst_correlation"] >= MIN_CORRELATION
        )
        table.append(row)
    streaming = [r for r in table if r["qualifies"] and r["scheme"] != "clip"]
    candidates = streaming or [r for r in table if r["qualifies"]]
    best = min(candidates, key=lambda r: (round(r["worst_lag"], 1), r["mean_ratio"]), default=None)
    return best, table


# -- plots --------------------------------------------------------------------------------------

STYLE = {
    "random": {"color": "0.45", "linestyle": "--"},
    "centre": {"color": "0.2", "linestyle": ":"},
}


def plot_curves(curves: dict[str, dict[str, np.ndarray]], steps: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    fractions = np.linspace(0, 1, steps + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, kind, better in zip(axes, ("deletion", "insertion"), ("lower", "higher"), strict=True):
        for name, kinds in curves.items():
            mean = kinds[kind].mean(axis=0)
            auc = quality.trapezoid_auc(fractions, mean)
            label = f"{METHODS.get(name, name + ' (baseline)')}  AUC {auc:.3f}"
            ax.plot(fractions, mean, label=label, linewidth=2, **STYLE.get(name, {}))
        ax.set_title(f"{kind} ({better} AUC is better)")
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "revealed"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("probability of the explained class (mean over frames)")
    n = next(iter(curves.values()))["deletion"].shape[0]
    fig.suptitle(f"EfficientNet-Lite0 (ImageNet weights), {LAYER}: {n} frames")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_flicker(study: dict[str, dict[str, list[dict]]], method: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    clips = list(study)
    fig, axes = plt.subplots(len(clips), 3, figsize=(14, 3.8 * len(clips)), squeeze=False)
    for row, clip in zip(axes, clips, strict=True):
        reports = study[clip][method]
        labels = list(dict.fromkeys(r["label"] for r in reports))
        for label in labels:
            series = [r for r in reports if r["label"] == label]
            alphas = [r["smoothing"] for r in series]
            style = (
                {"linewidth": 2.5, "color": "black"} if label.startswith("per-frame min") else {}
            )
            row[0].plot(alphas, [r["flicker"] for r in series], "o-", label=label, **style)
            row[1].plot(alphas, [r["correlation"] for r in series], "o-", label=label, **style)
            row[2].plot(alphas, [r["lag"] for r in series], "o-", label=label, **style)
        baseline = next(r["flicker"] for r in reports if r["label"].startswith("per-frame min"))
        row[0].axhline(FLICKER_CUT * baseline, color="red", linestyle="--", linewidth=1)
        row[0].text(
            0, FLICKER_CUT * baseline, " half the min-max flicker", color="red", va="bottom"
        )
        row[1].axhline(MIN_CORRELATION, color="red", linestyle="--", linewidth=1)
        row[0].set_ylabel(f"{clip}: flicker")
        row[1].set_ylabel("correlation with per-frame maps")
        row[1].set_title("(scale-invariant: the same for every scope)", fontsize=9)
        row[2].set_ylabel("lag (frames)")
        for ax in row:
            ax.set_xlabel("EMA smoothing alpha")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(f"Heat-map steadiness, {METHODS[method]}, {LAYER} (pan-and-zoom clips)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sanity(case: Case, stages: Sequence[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    from gradcam_client.render.compose import blend, colorize, upsample

    columns = ["trained", *stages]
    fig, axes = plt.subplots(
        len(ALL_METHODS), len(columns), figsize=(2.3 * len(columns), 2.0 * len(ALL_METHODS))
    )
    for r, method in enumerate(ALL_METHODS):
        maps = [case.maps[method]] + [case.random_maps[s][method] for s in stages]
        for c, (column, cam) in enumerate(zip(columns, maps, strict=True)):
            heat = upsample(quality.minmax_normalize(cam) if cam.max() > 0 else cam, INPUT_SIZE)
            axes[r, c].imshow(blend(case.frame, colorize(heat), 0.5))
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if c:
                rho = quality.rank_correlation(case.maps[method], cam)
                axes[r, c].set_xlabel(f"rank corr {rho:+.2f}", fontsize=8)
            if r == 0:
                axes[r, c].set_title(column if c == 0 else f"random from {column}", fontsize=9)
        axes[r, 0].set_ylabel(METHODS[method], fontsize=9)
    fig.suptitle(f"Cascading randomisation, {case.label}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- report -------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [
        "# Explanation quality and steady heat-map videos",
        "",
        f"EfficientNet-Lite0 with its ImageNet weights, layer `{LAYER}` (7x7 maps), served by "
        f"Triton; `bench/explanation_quality.py{' --quick' if cfg['quick'] else ''}` "
        f"({cfg['seconds']:.0f} s). VGG16's ImageNet weights are not available offline, so "
        "VGG16 is not measured (random VGG16 weights would say nothing about quality).",
        "",
        "## Faithfulness, localisation and the randomisation check",
        "",
        f"Deletion / insertion: {cfg['steps']} steps, pixels replaced by (revealed from) a "
        "Gaussian-blurred copy (sigma 5 % of the side), ordered by the bilinearly upsampled map; "
        f"AUC = trapezoid mean probability of the explained class, mean ± sd over "
        f"{len(results['per_case'])} frames ({', '.join(results['per_case'])}). "
        f"Localisation over {cfg['boxes']} hand-labelled boxes (tests/data/boxes.json). "
        f"Rank correlation: Spearman between the trained model's map and the map of a copy with "
        f"`logits`, `head_conv` and `head_bn` re-initialised, same target class, mean over the "
        "same frames (model-free baselines are 1 by construction).",
        "",
        "| map | deletion AUC ↓ | insertion AUC ↑ | energy in box ↑ | pointing ↑ | "
        "randomisation rank corr ↓ |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["summary"].items():
        title = METHODS.get(name, f"{name} (baseline)")
        lines.append(
            f"| {title} | {fmt(row['deletion_auc'])} ± {fmt(row['deletion_auc_sd'], 2)} "
            f"| {fmt(row['insertion_auc'])} ± {fmt(row['insertion_auc_sd'], 2)} "
            f"| {fmt(row['energy_in_box'])} | {row['pointing_hits']}/{row['boxes']} "
            f"| {fmt(row['randomisation_rank_correlation'], 2)} |"
        )
    lines += [
        "",
        "Paired, frame by frame (wins / ties / losses against the baseline on the same frame, "
        f"|ΔAUC| ≤ {TIE} is a tie; mean gain = how much better the method's AUC is on average):",
        "",
        "| method | deletion vs random | deletion vs centre | insertion vs random "
        "| insertion vs centre |",
        "|---|---|---|---|---|",
    ]
    for method, against in results["paired"].items():
        cells = []
        for kind in ("deletion", "insertion"):
            for baseline in BASELINES:
                e = against[baseline][kind]
                cells.append(f"{e['wins']}/{e['ties']}/{e['losses']} (gain {e['mean_gain']:+.3f})")
        lines.append(f"| {METHODS[method]} | " + " | ".join(cells) + " |")
    lines += ["", "Per frame (deletion / insertion AUC):", ""]
    names = ALL_METHODS + BASELINES
    lines.append("| frame | class (p) | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for label, row in results["per_case"].items():
        info = results["cases"][label]
        cells = [f"{fmt(row[n]['deletion'], 2)} / {fmt(row[n]['insertion'], 2)}" for n in names]
        lines.append(
            f"| {label} | {info['class']} ({info['probability']:.2f}) | " + " | ".join(cells) + " |"
        )
    lines += findings(results)
    if results["sanity"]:
        lines += [
            "",
            "Cascading randomisation (mean Spearman rank correlation with the trained model's "
            "maps; each stage also re-initialises the stages before it):",
            "",
            "| method | " + " | ".join(results["sanity"]) + " |",
            "|---|" + "---|" * len(results["sanity"]),
        ]
        for method in ALL_METHODS:
            cells = []
            for stage in results["sanity"]:
                entry = results["sanity"][stage][method]
                zero = f" ({entry['all_zero_maps']} all-zero)" if entry["all_zero_maps"] else ""
                cells.append(fmt(entry["mean"], 2) + zero)
            lines.append(f"| {METHODS[method]} | " + " | ".join(cells) + " |")
        lines += ["", "Layers re-initialised per stage: "]
        for stage, layers in results["randomised_layers"].items():
            lines.append(f"- {stage}: {len(layers)} layers ({', '.join(layers[:6])}...)")
    lines += steadiness_markdown(results)
    lines += [
        "",
        "Plots: `explanation_quality_curves.png` (mean deletion/insertion curves), "
        "`explanation_quality_flicker.png` (flicker, correlation and lag vs smoothing per "
        "scope), `explanation_quality_sanity.png` (maps of the randomised copies).",
        "",
    ]
    return "\n".join(lines)


def findings(results: dict) -> list[str]:
    """A few sentences read off the tables (numbers, not opinions)."""
    summary, paired_result = results["summary"], results["paired"]
    gc, lines = summary["gradcam"], ["", "Reading the tables:", ""]
    for baseline in BASELINES:
        base = summary[baseline]
        verdict = []
        for kind, better in (("deletion", "lower"), ("insertion", "higher")):
            ours, theirs = gc[f"{kind}_auc"], base[f"{kind}_auc"]
            wins = paired_result["gradcam"][baseline][kind]
            beats = ours < theirs if better == "lower" else ours > theirs
            verdict.append(
                f"{kind} {fmt(ours)} vs {fmt(theirs)} ({'better' if beats else 'not better'} on "
                f"average; {wins['wins']} wins, {wins['ties']} ties, {wins['losses']} losses "
                "frame by frame)"
            )
        lines.append(f"- Grad-CAM against the {baseline} map: " + "; ".join(verdict) + ".")
    lines.append(
        "- Grad-CAM, HiResCAM and XGrad-CAM give identical maps here: `head_activation` is "
        "followed only by global average pooling and the dense `logits`, so the gradient of a "
        "logit is the same at every position and the three weightings coincide."
    )
    stage = results["config"]["main_stage"]
    if stage in results["sanity"]:
        rho = {m: results["sanity"][stage][m]["mean"] for m in ALL_METHODS}
        lines.append(
            f"- Randomisation ({stage}): Grad-CAM's maps decorrelate (rank corr "
            f"{fmt(rho['gradcam'], 2)}), Grad-CAM++ ({fmt(rho['gradcampp'], 2)}) and Layer-CAM "
            f"({fmt(rho['layercam'], 2)}) much less: they keep only positive gradients, which "
            "with a position-independent gradient weights every positively connected channel, "
            "so their maps follow where the features are strong more than what the class uses."
        )
    return lines


def steadiness_markdown(results: dict) -> list[str]:
    cfg = results["config"]
    clips = list(results["steadiness"])
    lines = [
        "",
        "## Steady heat-map videos",
        "",
        f"Clips: `pan_zoom_frames({cfg['clip_frames']}, {CLIP_SIZE}, photo)` for "
        f"{', '.join(clips)} (a camera panning and zooming over a real photo: the frames of "
        "the sample clips), each frame resized to 224x224 and explained for its predicted "
        "class (the client's default target). Flicker: mean absolute "
        "frame-to-frame change of the normalised 7x7 maps; "
        "ratio: to per-frame min-max without smoothing (the baseline); corr: mean per-frame "
        "Pearson correlation with the unsmoothed maps; lag: frames by which the map-centroid "
        "trajectory trails the unsmoothed one (least-squares shift).",
        "",
    ]
    for clip, info in results["clips"].items():
        lines.append(
            f"- {clip}: {info['frames']} frames, {info['class_changes']} changes of the "
            f"predicted class ({', '.join(info['classes'])})"
        )
    lines += [
        "",
        "Correlation and lag do not depend on the scope: both ignore a per-frame positive "
        "scale, so within a smoothing strength only the flicker differs between scopes.",
    ]
    lines += [
        "",
        f"Grad-CAM; a setting qualifies when on every clip flicker ≤ {FLICKER_CUT:g} × baseline "
        f"and corr ≥ {MIN_CORRELATION:g}:",
        "",
        "| setting | alpha | "
        + " | ".join(f"{c} flicker (ratio) | {c} corr | {c} lag" for c in clips)
        + " | qualifies |",
        "|---|---|" + "---|---|---|" * len(clips) + "---|",
    ]
    for row in results["choice_table"]:
        cells = []
        for clip in clips:
            r = row["clips"][clip]
            cells += [
                f"{fmt(r['flicker'], 4)} ({fmt(r['flicker_ratio'], 2)})",
                fmt(r["correlation"], 3),
                fmt(r["lag"], 1),
            ]
        mark = "yes" if row["qualifies"] else ""
        lines.append(
            f"| {row['label']} | {row['smoothing']:g} | " + " | ".join(cells) + f" | {mark} |"
        )
    choice = results["choice"]
    lines += ["", "### Chosen default", ""]
    if choice is None:
        lines.append("No setting met both criteria on every clip.")
    else:
        lines.append(
            f"**{choice['label']}, smoothing {choice['smoothing']:g}**: worst-clip flicker "
            f"{fmt(choice['worst_ratio'], 2)} × the min-max baseline, worst correlation "
            f"{fmt(choice['worst_correlation'], 3)}, worst lag {fmt(choice['worst_lag'], 1)} "
            "frames. Rule: among qualifying settings that can stream (clip scope needs the "
            "whole clip first), the smallest lag (least smoothing that reaches the target), then "
            "the lowest mean flicker ratio over the clips. For `gradcam-video` that is "
            f"`--scope {choice['scheme']} --smoothing {choice['smoothing']:g}`"
            + (f" with a running-maximum decay of {choice['decay']:g}" if choice["decay"] else "")
            + "."
        )
    targets = results.get("targets", {})
    if targets:
        lines += [
            "",
            "Which class to explain matters as much on a clip whose top class keeps changing. "
            "Grad-CAM flicker, each frame's class (`predicted`) vs one class for the whole clip "
            "(`--target video`):",
            "",
            "| clip | class for the clip | min-max, predicted | min-max, video "
            "| chosen, predicted | chosen, video |",
            "|---|---|---|---|---|---|",
        ]
        for clip, entry in targets.items():
            pred, video = entry["predicted"], entry["video"]
            chosen = (
                f"| {fmt(pred.get('chosen_flicker'), 4)} | {fmt(video.get('chosen_flicker'), 4)}"
                if "chosen_flicker" in pred
                else "| n/a | n/a"
            )
            lines.append(
                f"| {clip} | {results['clips'][clip]['video_class']} "
                f"| {fmt(pred['minmax_flicker'], 4)} | {fmt(video['minmax_flicker'], 4)} "
                + chosen
                + " |"
            )
    others = results.get("choice_other_methods", {})
    if others and choice is not None:
        lines += [
            "",
            "The same setting for the other methods (worst clip):",
            "",
            "| method | flicker ratio | corr | lag |",
            "|---|---|---|---|",
        ]
        for method, row in others.items():
            lines.append(
                f"| {METHODS[method]} | {fmt(row['worst_ratio'], 2)} "
                f"| {fmt(row['worst_correlation'], 3)} | {fmt(row['worst_lag'], 1)} |"
            )
    return lines


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (under a minute)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--steps", type=int, help="deletion/insertion steps (default 24)")
    parser.add_argument("--clip-frames", type=int, help="frames per flicker clip (default 90)")
    parser.add_argument(
        "--pan-frames", type=int, help="chelsea pan frames in the deletion table (default 6)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    quick = args.quick
    steps = args.steps or (6 if quick else 24)
    clip_frames = args.clip_frames or (16 if quick else 90)
    pan_frames = args.pan_frames if args.pan_frames is not None else (1 if quick else 6)
    stages = [MAIN_STAGE] if quick else [stage for stage, _ in CASCADE]
    photos = ["chelsea"] if quick else None
    flicker_clips = ["chelsea"] if quick else FLICKER_CLIPS
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="explanation_quality_")) if quick else ROOT / "bench/results"
    )
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="gradcam_quality_") as tmp:
        repository = Path(tmp) / "repository"
        randomised_layers = export_models(repository, stages)
        with running_triton(repository, Path(tmp)) as url:
            class_names = GradcamServer(url, MODEL).model_info().class_names
            labelled = labelled_cases(photos)
            cases = labelled + clip_cases("chelsea", clip_frames, pan_frames)
            explain_cases(cases, url, stages, class_names)
            for case in cases:
                log(f"{case.label}: {class_names[case.target]} p={case.probability:.3f}")
            log(f"deletion/insertion, {steps} steps, {len(cases)} frames")
            per_case, curves = faithfulness(cases, url, steps)
            local = localisation(cases)
            sanity_result = sanity(cases, stages)
            log("flicker clips")
            clips = {c: clip_maps(url, c, clip_frames) for c in flicker_clips}

    raw = {clip: maps.predicted for clip, maps in clips.items()}
    clips_info = {
        clip: {
            "frames": len(maps.predicted),
            "class_changes": sum(
                a != b for a, b in zip(maps.classes[:-1], maps.classes[1:], strict=True)
            ),
            "classes": sorted(set(maps.classes)),
            "video_class": maps.video_class,
        }
        for clip, maps in clips.items()
    }
    log("steadiness grid")
    grid = settings_grid()
    study = steadiness(raw, grid)
    choice, table = choose_default(study)
    others = {}
    if choice is not None:
        for method in ALL_METHODS[1:]:
            _, method_table = choose_default(study, method)
            match = next(
                r
                for r in method_table
                if (r["label"], r["smoothing"]) == (choice["label"], choice["smoothing"])
            )
            others[method] = {
                k: match[k] for k in ("worst_ratio", "worst_correlation", "worst_lag")
            }

    results = {
        "config": {
            "quick": quick,
            "steps": steps,
            "clip_frames": clip_frames,
            "pan_frames": pan_frames,
            "stages": stages,
            "main_stage": MAIN_STAGE,
            "boxes": len(labelled),
            "flicker_cut": FLICKER_CUT,
            "min_correlation": MIN_CORRELATION,
            "alphas": ALPHAS,
            "decays": DECAYS,
            "seconds": time.monotonic() - started,
        },
        "cases": {
            c.label: {
                "class": class_names[c.target],
                "class_index": c.target,
                "probability": c.probability,
                "box": c.box,
            }
            for c in cases
        },
        "summary": summary_table(per_case, local, sanity_result, MAIN_STAGE),
        "per_case": per_case,
        "localisation": local,
        "sanity": sanity_result,
        "randomised_layers": randomised_layers,
        "clips": clips_info,
        "steadiness": study,
        "choice": choice,
        "choice_table": table,
        "choice_other_methods": others,
        "targets": target_comparison(clips, choice),
        "paired": paired(per_case),
    }
    (out / "explanation_quality.json").write_text(json.dumps(jsonable(results), indent=1))
    (out / "explanation_quality.md").write_text(markdown(results))

    import matplotlib

    matplotlib.use("Agg")
    plot_curves(curves, steps, out / "explanation_quality_curves.png")
    plot_flicker(study, "gradcam", out / "explanation_quality_flicker.png")
    plot_sanity(cases[0], stages, out / "explanation_quality_sanity.png")
    print(markdown(results))
    log(f"wrote {out} in {time.monotonic() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
