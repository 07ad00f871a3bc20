"""How much two Grad-CAM maps of the same frame agree: correlation, hot-region IoU, distance.

Two models may explain at different layer resolutions (7x7 and 14x14, or 7x7 and 2x3 for
another input size); both maps cover the whole frame (the client stretches every map over
it), so both are first resampled bilinearly to a common grid (`common_grid`) where each cell
is the same part of the frame. Raw maps go in: ReLU'd, any scale; every measure here is
scale-free, so an EMA, a normalisation or a model that is twice as confident changes nothing.

- `pearson`: the correlation of the two maps over the grid cells, -1..1 (1: the same shape).
  Two flat maps (all zero included) agree (1.0); a flat map against a shaped one is 0.0.
- `hot_iou`: the intersection over union of the cells in each map's hottest fraction
  (`HOT_FRACTION`, 20 %), 0..1. Ties at the threshold are all in; cells at 0 never are, so an
  all-zero map has no hot region (two of them give 1.0, one of them 0.0).
- `map_distance`: an earth mover's distance between the maps read as distributions of
  attention over the frame, in units of the frame's side (0: the same; a blob shifted by a
  quarter of the frame: 0.25). It is the sliced Wasserstein-1 distance (the mean of the exact
  one-dimensional distances along `DIRECTIONS` evenly spaced directions), rescaled so that a
  pure shift measures its length; it is computed on the maps downsampled to at most
  `DISTANCE_GRID` cells a side. An all-zero map counts as attention spread evenly. Unlike
  correlation and IoU it grows with how far apart the hot regions are, so it sorts the frames
  where two models look at different places.

Everything is plain numpy and deterministic: identical maps give exactly 1.0, 1.0 and 0.0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

HOT_FRACTION = 0.2
"""The share of a map's cells that counts as its hot region."""

DIRECTIONS = 32
"""Directions of the sliced earth mover's distance."""

DISTANCE_GRID = 16
"""Cells a side, at most, of the grid the distance is computed on."""

_ANGLES = np.arange(DIRECTIONS) * math.pi / DIRECTIONS
_UNITS = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)  # [directions, (x, y)]
_SHIFT_SCALE = 1.0 / float(np.mean(np.abs(np.cos(_ANGLES))))
"""A shift by d projects to |d cos| on average: this makes a pure shift measure d."""


@dataclass(frozen=True)
class MapAgreement:
    """The agreement of two maps of one frame (see the module's docstring)."""

    correlation: float
    hot_iou: float
    distance: float

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 6) for key, value in asdict(self).items()}


def _check(map_: np.ndarray, which: str) -> np.ndarray:
    array = np.asarray(map_, dtype=np.float64)
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(f"map {which} must be 2-D (h, w); got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"map {which} holds NaN or infinity")
    return np.maximum(array, 0.0)


@lru_cache(maxsize=64)
def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    """[target, source] weights of bilinear resampling with aligned cell centres (as OpenCV's
    `INTER_LINEAR`): row i interpolates the source at centre (i + 0.5) * source / target.
    Cached: read-only."""
    matrix = np.zeros((target, source))
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    weight = centres - low
    rows = np.arange(target)
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)
    matrix.flags.writeable = False
    return matrix


def resample(map_: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map resampled bilinearly to `shape` (height, width); itself when it has that shape."""
    if map_.shape == tuple(shape):
        return map_
    rows = _interpolation_matrix(map_.shape[0], shape[0])
    columns = _interpolation_matrix(map_.shape[1], shape[1])
    return rows @ map_ @ columns.T


def common_grid(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int]:
    """The grid two maps are compared on: the finer of the two along each axis."""
    return max(a[0], b[0]), max(a[1], b[1])


def _is_flat(map_: np.ndarray) -> bool:
    return float(np.ptp(map_)) <= 1e-12 * max(1.0, float(np.abs(map_).max()))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two maps of the same shape, -1..1 (two flat maps: 1.0, one: 0.0)."""
    flat_a, flat_b = _is_flat(a), _is_flat(b)
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b else 0.0
    if np.array_equal(a, b):
        return 1.0
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(np.clip((a @ b) / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def hot_region(map_: np.ndarray, fraction: float = HOT_FRACTION) -> np.ndarray:
    """The cells at or above the map's top-`fraction` value and above zero (boolean mask)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the hot fraction must be in (0, 1]; got {fraction}")
    flat = map_.ravel()
    count = max(1, math.ceil(fraction * flat.size))
    threshold = np.partition(flat, flat.size - count)[flat.size - count]
    return (map_ >= threshold) & (map_ > 0)


def hot_iou(a: np.ndarray, b: np.ndarray, fraction: float = HOT_FRACTION) -> float:
    """IoU of the two maps' hot regions, 0..1 (no hot region in either: 1.0)."""
    hot_a, hot_b = hot_region(a, fraction), hot_region(b, fraction)
    union = int(np.count_nonzero(hot_a | hot_b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(hot_a & hot_b)) / union


def _distribution(map_: np.ndarray) -> np.ndarray:
    total = float(map_.sum())
    if total <= 0.0:
        return np.full(map_.shape, 1.0 / map_.size)
    return map_ / total


def _cell_centres(shape: tuple[int, int]) -> np.ndarray:
    """[cells, (x, y)] centres in frame units (0..1 along each side)."""
    ys = (np.arange(shape[0]) + 0.5) / shape[0]
    xs = (np.arange(shape[1]) + 0.5) / shape[1]
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


@lru_cache(maxsize=64)
def _slices(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For a grid of `shape`: the cells in order along each direction ([cells, directions]
    indices) and the gaps between consecutive ones ([cells - 1, directions]). Cached."""
    projections = _cell_centres(shape) @ _UNITS.T  # [cells, directions]
    order = np.argsort(projections, axis=0, kind="stable")
    gaps = np.diff(np.take_along_axis(projections, order, axis=0), axis=0)
    order.flags.writeable = gaps.flags.writeable = False
    return order, gaps


def sliced_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The sliced earth mover's distance of two maps of the same shape, in frame units: along
    each direction the exact one-dimensional W1 (the area between the two cumulative
    distributions of the cells' projections), averaged over the directions."""
    p, q = _distribution(a).ravel(), _distribution(b).ravel()
    if np.array_equal(p, q):
        return 0.0
    order, gaps = _slices(a.shape)
    between = np.cumsum((p - q)[order], axis=0)[:-1]  # [cells - 1, directions]
    return float(np.sum(np.abs(between) * gaps)) / DIRECTIONS * _SHIFT_SCALE


def _distance_grid(shape: tuple[int, int]) -> tuple[int, int]:
    return min(shape[0], DISTANCE_GRID), min(shape[1], DISTANCE_GRID)


def compare_maps(a: np.ndarray, b: np.ndarray) -> MapAgreement:
    """Correlation, hot-region IoU and earth mover's distance of two raw maps of one frame.

    The maps may differ in resolution (see `common_grid`); ValueError for a map that is not
    2-D or holds NaN or infinity.
    """
    a, b = _check(a, "A"), _check(b, "B")
    grid = common_grid(a.shape, b.shape)
    fine_a, fine_b = resample(a, grid), resample(b, grid)
    coarse = _distance_grid(grid)
    return MapAgreement(
        correlation=pearson(fine_a, fine_b),
        hot_iou=hot_iou(fine_a, fine_b),
        distance=sliced_distance(resample(fine_a, coarse), resample(fine_b, coarse)),
    )
