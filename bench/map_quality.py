"""Measuring explanation quality and the steadiness of heat-map videos (numpy and OpenCV only).

Faithfulness (Petsiuk et al., "RISE", 2018): order the pixels by the map upsampled to the
image, then

- *deletion*: replace the most salient pixels by a blurred copy of the image in ``steps``
  steps and track the explained class's probability; a faithful map makes it fall fast, so a
  lower area under the curve (AUC) is better;
- *insertion*: start from the blurred image and reveal the original pixels in the same order;
  the probability should rise fast, so a higher AUC is better.

The AUC is the trapezoid mean of the probability over the removed/revealed fraction (0..1).
The classifier is any ``predict(frames) -> probabilities`` callable taking a uint8 batch
``[n, H, W, 3]`` and returning ``[n, classes]`` (e.g. a served model's PROBABILITIES).

Baselines that know nothing of the model: `random_map` (fixed seed) and `centre_blob`.
Localisation against a hand-labelled box: `energy_in_box` and the pointing game
(`pointing_hit`). Model-randomisation sanity check (Adebayo et al., 2018): `rank_correlation`
(Spearman) between the map of the trained model and that of a copy with re-initialised
layers; a map that depends on the learned weights correlates weakly.

Video steadiness: `flicker` of normalised maps (`normalize_sequence` for a whole clip), the tutorial
baseline `minmax_normalize` (per-frame ``(m - min) / (max - min + eps)``), and the drift that
temporal smoothing introduces: `frame_correlation` (mean per-frame Pearson correlation with the
unsmoothed maps) and `lag_frames` (the delay of the map-centroid trajectory, in frames).
`temporal_report` gathers the three for one normalisation setting.

Box convention: ``(x0, y0, x1, y1)`` in pixels of the image the map covers (the map is
stretched over the whole image, as the client resizes frames without cropping); a pixel
``(x, y)`` is inside when ``x0 <= x < x1`` and ``y0 <= y < y1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gradcam_client.render.normalize import (
    DEFAULT_DECAY,
    EPS,
    Normalizer,
    Scope,
    TemporalSmoother,
    clip_maximum,
)

__all__ = [
    "MINMAX",
    "Box",
    "Curve",
    "Predict",
    "TemporalReport",
    "blurred",
    "box_mask",
    "causal_curves",
    "centre_blob",
    "centroids",
    "deletion_curve",
    "energy_in_box",
    "flicker",
    "frame_correlation",
    "insertion_curve",
    "lag_frames",
    "minmax_normalize",
    "normalize_sequence",
    "normalized_sequence",
    "pearson",
    "perturbed_frames",
    "pixel_order",
    "pointing_hit",
    "random_map",
    "rank_correlation",
    "rankdata",
    "temporal_report",
    "trapezoid_auc",
    "upsample_map",
]

Predict = Callable[[np.ndarray], np.ndarray]
"""``predict(frames uint8 [n, H, W, 3]) -> probabilities [n, classes]``."""

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in image pixels."""

MINMAX = "minmax"
"""Name of the per-frame min-max normalisation (the tutorial baseline) in `normalized_sequence`."""

DELETION = "deletion"
INSERTION = "insertion"

_INTERPOLATIONS = {
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


# -- maps and images ------------------------------------------------------------------------


def _finite_map(cam: np.ndarray) -> np.ndarray:
    """A 2-D float32 copy of a map with non-finite values set to 0."""
    arr = np.array(cam, dtype=np.float32, copy=True)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected one map of shape (h, w); got shape {arr.shape}")
    return np.nan_to_num(arr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def upsample_map(
    cam: np.ndarray, size: tuple[int, int], interpolation: str = "linear"
) -> np.ndarray:
    """A map resized to ``size = (height, width)`` (float32, not clipped; NaN counts as 0)."""
    arr = _finite_map(cam)
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive; got {size}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; choose one of {list(_INTERPOLATIONS)}"
        )
    if arr.shape == (height, width):
        return arr
    return cv2.resize(arr, (width, height), interpolation=_INTERPOLATIONS[interpolation])


def blurred(image: np.ndarray, sigma: float = 0.05) -> np.ndarray:
    """A Gaussian-blurred copy of a uint8 image; ``sigma`` is a fraction of the longer side."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (H, W, C); got {arr.dtype} {arr.shape}")
    if sigma <= 0:
        return arr.copy()
    pixels = sigma * max(arr.shape[:2])
    return cv2.GaussianBlur(arr, (0, 0), sigmaX=pixels, borderType=cv2.BORDER_REFLECT)


def random_map(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A baseline map of uniform noise in [0, 1), the same for the same ``seed``."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def centre_blob(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """A baseline map: a Gaussian centred on the image, ``sigma`` a fraction of each side."""
    height, width = shape
    y = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    blob = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma**2))
    return blob.astype(np.float32)


# -- deletion and insertion -----------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve: the class probability after each step."""

    kind: str  # DELETION or INSERTION
    fractions: np.ndarray  # [steps + 1] share of the pixels removed / revealed, 0..1
    scores: np.ndarray  # [steps + 1] probability of the explained class

    @property
    def auc(self) -> float:
        """Area under the curve over the fraction axis (the trapezoid mean probability)."""
        return trapezoid_auc(self.fractions, self.scores)


def trapezoid_auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under ``y(x)`` divided by the width of ``x`` (a mean of ``y``)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-D arrays of equal length >= 2; got {x.shape}, {y.shape}")
    width = x[-1] - x[0]
    if width <= 0:
        raise ValueError("x must increase")
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / width)


def pixel_order(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most salient first; ties in a random order fixed by ``seed``.

    Random tie-breaking matters for ReLU'd maps, whose zero areas would otherwise be removed
    in raster order (top rows first).
    """
    values = _finite_map(saliency).ravel()
    tie_breaker = np.random.default_rng(seed).permutation(values.size)
    return np.lexsort((tie_breaker, -values))


def perturbed_frames(
    image: np.ndarray,
    cam: np.ndarray,
    kind: str,
    steps: int = 16,
    *,
    substrate: np.ndarray | None = None,
    interpolation: str = "linear",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``steps + 1`` images of a deletion or insertion run, and the fractions they show.

    Deletion step ``k`` shows the image with its ``k / steps`` most salient pixels replaced by
    ``substrate`` (default: `blurred` image); insertion shows the substrate with those pixels
    revealed from the image.
    """
    if kind not in (DELETION, INSERTION):
        raise ValueError(f"kind must be {DELETION!r} or {INSERTION!r}; got {kind!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (H, W, 3); got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    substrate = blurred(image) if substrate is None else np.asarray(substrate, dtype=np.uint8)
    if substrate.shape != image.shape:
        raise ValueError(f"substrate shape {substrate.shape} differs from {image.shape}")
    order = pixel_order(upsample_map(cam, (height, width), interpolation), seed)
    start, end = (image, substrate) if kind == DELETION else (substrate, image)
    counts = np.round(np.linspace(0.0, 1.0, steps + 1) * order.size).astype(np.int64)
    frames = np.empty((steps + 1, *image.shape), dtype=np.uint8)
    current = start.reshape(-1, image.shape[-1]).copy()
    source = end.reshape(-1, image.shape[-1])
    done = 0
    for k, count in enumerate(counts):
        changed = order[done:count]
        current[changed] = source[changed]
        done = count
        frames[k] = current.reshape(image.shape)
    return frames, counts / order.size


def causal_curves(
    image: np.ndarray,
    cam: np.ndarray,
    predict: Predict,
    target: int,
    steps: int = 16,
    *,
    kinds: Sequence[str] = (DELETION, INSERTION),
    substrate: np.ndarray | None = None,
    interpolation: str = "linear",
    seed: int = 0,
) -> dict[str, Curve]:
    """Deletion and/or insertion curves of one map, with one ``predict`` call for all frames.

    ``image`` is the frame the classifier sees (uint8, e.g. 224x224) and ``target`` the class
    whose probability is tracked (normally the class the map explains).
    """
    substrate = blurred(image) if substrate is None else substrate
    batches = [
        perturbed_frames(
            image,
            cam,
            kind,
            steps,
            substrate=substrate,
            interpolation=interpolation,
            seed=seed,
        )
        for kind in kinds
    ]
    frames = np.concatenate([frames for frames, _ in batches])
    probabilities = np.asarray(predict(frames))
    if probabilities.ndim != 2 or len(probabilities) != len(frames):
        raise ValueError(
            f"predict returned shape {probabilities.shape} for {len(frames)} frames; "
            "expected [frames, classes]"
        )
    scores = probabilities[:, int(target)].astype(np.float64)
    curves = {}
    offset = 0
    for kind, (_, fractions) in zip(kinds, batches, strict=True):
        curves[kind] = Curve(kind, fractions, scores[offset : offset + len(fractions)])
        offset += len(fractions)
    return curves


def deletion_curve(
    image: np.ndarray, cam: np.ndarray, predict: Predict, target: int, steps: int = 16, **kwargs
) -> Curve:
    """The deletion curve (lower AUC is better); keyword arguments as `causal_curves`."""
    return causal_curves(image, cam, predict, target, steps, kinds=(DELETION,), **kwargs)[DELETION]


def insertion_curve(
    image: np.ndarray, cam: np.ndarray, predict: Predict, target: int, steps: int = 16, **kwargs
) -> Curve:
    """The insertion curve (higher AUC is better); keyword arguments as `causal_curves`."""
    return causal_curves(image, cam, predict, target, steps, kinds=(INSERTION,), **kwargs)[
        INSERTION
    ]


# -- localisation ---------------------------------------------------------------------------


def box_mask(shape: tuple[int, int], box: Box, tolerance: float = 0.0) -> np.ndarray:
    """Boolean ``(h, w)`` mask of the pixels inside ``box`` grown by ``tolerance`` pixels."""
    height, width = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"box must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1; got {box}")
    xs = np.arange(width)
    ys = np.arange(height)
    inside_x = (xs >= x0 - tolerance) & (xs < x1 + tolerance)
    inside_y = (ys >= y0 - tolerance) & (ys < y1 + tolerance)
    return inside_y[:, None] & inside_x[None, :]


def energy_in_box(
    cam: np.ndarray, box: Box, image_shape: Sequence[int], interpolation: str = "linear"
) -> float:
    """Share of the map's (non-negative) energy inside ``box``, the map upsampled to the image.

    0 for an all-zero map. ``image_shape`` is ``(height, width, ...)`` of the image.
    """
    size = (int(image_shape[0]), int(image_shape[1]))
    heat = np.maximum(upsample_map(cam, size, interpolation), 0.0).astype(np.float64)
    total = heat.sum()
    if total <= 0:
        return 0.0
    return float(heat[box_mask(size, box)].sum() / total)


def pointing_hit(
    cam: np.ndarray,
    box: Box,
    image_shape: Sequence[int],
    tolerance: float = 0.0,
    interpolation: str = "linear",
) -> bool:
    """Pointing game: whether the peak of the upsampled map lies inside ``box`` (+tolerance).

    An all-zero map points nowhere (False).
    """
    size = (int(image_shape[0]), int(image_shape[1]))
    heat = upsample_map(cam, size, interpolation)
    if not heat.max() > 0:
        return False
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(box_mask(size, box, tolerance)[y, x])


# -- rank correlation -----------------------------------------------------------------------


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the flattened values, ties sharing their average rank (as scipy's)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="mergesort")
    sorted_values = flat[order]
    # Start of each run of equal values, and the average rank of the run.
    starts = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))
    run_id = np.cumsum(starts) - 1
    run_start = np.flatnonzero(starts)
    run_end = np.append(run_start[1:], flat.size)
    average = (run_start + run_end + 1) / 2.0
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = average[run_id]
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays of the same size; NaN if either is constant."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"arrays differ in size: {x.size} vs {y.size}")
    x = x - x.mean()
    y = y - y.mean()
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if not denom > 0:
        return float("nan")
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (average ranks for ties); NaN if one is constant.

    Non-finite values count as 0 (as when maps are normalised).
    """
    x = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    y = np.nan_to_num(np.asarray(b, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.size != y.size:
        raise ValueError(f"maps differ in size: {x.shape} vs {y.shape}")
    return pearson(rankdata(x), rankdata(y))


# -- steadiness of heat-map videos ------------------------------------------------------------


def minmax_normalize(cam: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Per-map ``(m - min) / (max - min + eps)``, the usual tutorial normalisation (float32).

    Works on a map ``(h, w)`` or a stack ``(..., h, w)``; non-finite values count as 0.
    """
    arr = np.nan_to_num(np.array(cam, dtype=np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    low = arr.min(axis=(-2, -1), keepdims=True)
    high = arr.max(axis=(-2, -1), keepdims=True)
    return ((arr - low) / (high - low + np.float32(eps))).astype(np.float32)


def normalized_sequence(
    raw_maps: Iterable[np.ndarray],
    scheme: str,
    *,
    smoothing: float = 0.0,
    decay: float = DEFAULT_DECAY,
    eps: float = EPS,
) -> np.ndarray:
    """Smooth (EMA ``smoothing``) and normalise raw maps as a video would show them.

    ``scheme`` is `MINMAX` or a `Scope` name (``frame``, ``running``, ``clip``; ``clip``
    takes the maximum of the smoothed clip). Returns a ``[T, ...]`` float32 array.
    """
    maps = list(raw_maps)
    if not maps:
        raise ValueError("normalized_sequence needs at least one map")
    if scheme == MINMAX:
        smoother = TemporalSmoother(smoothing)
        smoothed = [smoother(cam) for cam in maps]
        return np.stack([minmax_normalize(cam, eps) for cam in smoothed])
    return np.stack(
        normalize_sequence(maps, Scope.parse(scheme), smoothing=smoothing, decay=decay, eps=eps)
    )


def frame_correlation(maps: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Mean over frames of the Pearson correlation between ``maps[t]`` and ``reference[t]``.

    Frames where either map is constant (e.g. all zero) are skipped; NaN if all are.
    """
    if len(maps) != len(reference):
        raise ValueError(f"{len(maps)} maps vs {len(reference)} reference maps")
    values = [pearson(m, r) for m, r in zip(maps, reference, strict=True)]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def centroids(maps: Sequence[np.ndarray]) -> np.ndarray:
    """``[T, 2]`` energy-weighted centroids ``(x, y)`` in map cells; NaN for an all-zero map.

    Negative values count as 0.
    """
    out = np.full((len(maps), 2), np.nan)
    for t, cam in enumerate(maps):
        heat = np.maximum(_finite_map(cam).astype(np.float64), 0.0)
        total = heat.sum()
        if total > 0:
            ys, xs = np.indices(heat.shape)
            out[t] = (xs * heat).sum() / total, (ys * heat).sum() / total
    return out


def lag_frames(
    reference: np.ndarray,
    delayed: np.ndarray,
    max_lag: float = 20.0,
    resolution: float = 0.1,
) -> float:
    """The delay, in frames, of ``delayed`` behind ``reference`` (series ``[T]`` or ``[T, d]``).

    The shift ``s`` in ``[-max_lag, max_lag]`` (step ``resolution``) that minimises the mean
    squared difference between ``delayed[t]`` and ``reference[t - s]`` (linearly interpolated)
    over the frames where both exist: the peak of their cross-correlation, but also well
    defined for trends such as a camera pan. Of equally good shifts the smallest is taken (a
    still series has lag 0). NaN entries are ignored; NaN if nothing overlaps.
    """
    ref = np.asarray(reference, dtype=np.float64)
    late = np.asarray(delayed, dtype=np.float64)
    if ref.shape != late.shape:
        raise ValueError(f"series differ in shape: {ref.shape} vs {late.shape}")
    if ref.ndim == 1:
        ref, late = ref[:, None], late[:, None]
    frames = np.arange(len(ref), dtype=np.float64)
    shifts = np.round(np.arange(-max_lag, max_lag + resolution / 2, resolution), 6)
    source = frames[None, :] - shifts[:, None]  # [shifts, T]: where delayed[t] came from
    inside = (source >= 0) & (source <= len(ref) - 1)
    squared = np.zeros(source.shape)
    counted = np.zeros(source.shape)
    for column in range(ref.shape[1]):
        known = np.isfinite(ref[:, column])
        if known.sum() < 2:
            continue
        shifted = np.interp(source, frames[known], ref[known, column])
        diff = late[None, :, column] - shifted
        ok = inside & np.isfinite(diff)
        squared += np.where(ok, diff, 0.0) ** 2
        counted += ok
    counts = counted.sum(axis=1)
    min_overlap = max(2, len(ref) // 4)
    usable = (inside.sum(axis=1) >= min_overlap) & (counts >= min_overlap)
    if not usable.any():
        return float("nan")
    errors = np.where(usable, squared.sum(axis=1) / np.maximum(counts, 1), np.inf)
    # Equally good shifts (e.g. a still trajectory fits any shift): the smallest one.
    tied = errors <= errors.min() * (1 + 1e-9) + 1e-15
    return float(shifts[tied][np.argmin(np.abs(shifts[tied]))])


@dataclass(frozen=True)
class TemporalReport:
    """Steadiness of one normalisation setting over a clip."""

    scheme: str
    smoothing: float
    decay: float | None  # running scope only
    flicker: float  # mean absolute frame-to-frame change of the shown maps
    correlation: float  # mean per-frame Pearson correlation with the unsmoothed maps
    lag: float  # frames the centroid trajectory trails the unsmoothed one


def temporal_report(
    raw_maps: Sequence[np.ndarray],
    scheme: str,
    smoothing: float = 0.0,
    decay: float = DEFAULT_DECAY,
    max_lag: float = 20.0,
) -> TemporalReport:
    """Flicker, correlation with the per-frame maps, and lag of one setting on raw maps.

    The reference is the same scheme without smoothing; Pearson correlation and centroids
    ignore a per-frame positive scale, so for the max-based scopes the reference equals the
    raw per-frame maps.
    """
    shown = normalized_sequence(raw_maps, scheme, smoothing=smoothing, decay=decay)
    reference = normalized_sequence(raw_maps, scheme, smoothing=0.0, decay=decay)
    return TemporalReport(
        scheme=scheme,
        smoothing=float(smoothing),
        decay=float(decay) if scheme == Scope.RUNNING.value else None,
        flicker=flicker(shown),
        correlation=frame_correlation(list(shown), list(reference)),
        lag=lag_frames(centroids(list(reference)), centroids(list(shown)), max_lag=max_lag)
        if smoothing > 0
        else 0.0,
    )


def normalize_sequence(
    maps: Iterable[np.ndarray],
    scope: Scope | str = Scope.FRAME,
    *,
    smoothing: float = 0.0,
    maximum: float | np.ndarray | None = None,
    decay: float = DEFAULT_DECAY,
    percentile: float = 100.0,
    eps: float = EPS,
) -> list[np.ndarray]:
    """Smooth (EMA, ``smoothing`` alpha) then normalise a whole sequence of raw maps.

    For the ``clip`` scope without ``maximum`` the clip maximum is computed over the smoothed
    maps (with ``percentile``) before normalising: a two-pass convenience for whole clips.
    """
    scope = Scope.parse(scope)
    smoother = TemporalSmoother(smoothing)
    smoothed = [smoother(cam) for cam in maps]
    if not smoothed:
        return []
    if scope is Scope.CLIP and maximum is None:
        maximum = clip_maximum(smoothed, percentile)
    normalizer = Normalizer(scope, maximum=maximum, decay=decay, eps=eps)
    return [normalizer(cam) for cam in smoothed]


def flicker(maps: Iterable[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change of a sequence of normalised maps.

    The mean over consecutive pairs of ``mean(|m_t - m_(t-1)|)``; in [0, 1] for maps in [0, 1].
    0 for fewer than two frames. Streams (keeps one previous map); a stacked ``(T, h, w)``
    array works too. Raises ValueError if the map shape changes.
    """
    total = 0.0
    pairs = 0
    previous: np.ndarray | None = None
    for cam in maps:
        current = np.asarray(cam, dtype=np.float64)
        if previous is not None:
            if current.shape != previous.shape:
                raise ValueError(f"map shape changed: {previous.shape} -> {current.shape}")
            total += float(np.mean(np.abs(current - previous)))
            pairs += 1
        previous = current
    return total / pairs if pairs else 0.0
