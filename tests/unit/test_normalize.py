"""Normalisation scopes and temporal smoothing (measured with the flicker metric of bench/)."""

from __future__ import annotations

import numpy as np
import pytest
from map_quality import flicker, normalize_sequence

from gradcam_client.render.normalize import (
    Normalizer,
    Scope,
    TemporalSmoother,
    clip_maximum,
    decay_for_half_life,
    map_peak,
    normalize_map,
)


def blob(
    peak: float, cx: float = 3.0, cy: float = 3.0, size: int = 7, sigma: float = 1.4
) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    return (peak * np.exp(-d2 / (2 * sigma**2))).astype(np.float32)


@pytest.mark.parametrize("scope", ["frame", "running"])
def test_all_zero_map_stays_zero(scope: str) -> None:
    out = Normalizer(scope)(np.zeros((7, 7), np.float32))
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert (out == 0).all()


def test_all_zero_map_zero_for_clip_and_fixed_and_helper() -> None:
    zeros = np.zeros((14, 14), np.float32)
    assert (Normalizer("clip", maximum=0.0)(zeros) == 0).all()
    assert (Normalizer("fixed", maximum=2.0)(zeros) == 0).all()
    assert (normalize_map(zeros) == 0).all()
    assert (normalize_map(zeros, maximum=0.0) == 0).all()
    assert clip_maximum([zeros, zeros]) == 0
    assert all((m == 0).all() for m in normalize_sequence([zeros] * 3, "clip"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_map_holding_nan_or_infinity_is_refused_not_zeroed(bad) -> None:
    cam = np.array([[bad, 1.0], [0.5, 2.0]], np.float32)
    for normalise in (
        normalize_map,
        Normalizer("frame"),
        Normalizer("running"),
        TemporalSmoother(0.5),
    ):
        with pytest.raises(ValueError, match="NaN or infinity"):
            normalise(cam)
    with pytest.raises(ValueError, match="NaN or infinity"):
        clip_maximum([np.ones((2, 2)), cam])


def test_frame_scope_divides_by_own_max() -> None:
    cam = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    np.testing.assert_allclose(Normalizer("frame")(cam), cam / 4.0)


def test_frame_scope_is_max_not_min_max() -> None:
    cam = np.full((3, 3), 2.0, np.float32)
    cam[1, 1] = 4.0
    out = Normalizer(Scope.FRAME)(cam)
    assert out.min() == pytest.approx(0.5)  # min-max would give 0


def test_stack_normalised_per_map() -> None:
    stack = np.stack([blob(2.0), blob(10.0)])
    out = Normalizer("frame")(stack)
    assert out.shape == (2, 7, 7)
    np.testing.assert_allclose(out.max(axis=(1, 2)), [1.0, 1.0])
    np.testing.assert_allclose(map_peak(stack), [2.0, 10.0], rtol=1e-6)


def test_clip_scope_uses_given_maximum_and_clips() -> None:
    norm = Normalizer("clip", maximum=4.0)
    np.testing.assert_allclose(norm(blob(2.0)).max(), 0.5, rtol=1e-6)
    out = norm(blob(8.0))  # above the clip maximum: saturates, stays bounded
    assert out.max() == 1.0 and out.min() >= 0.0


def test_clip_maximum_per_map_and_percentile() -> None:
    maps = [np.stack([blob(p), blob(2 * p)]) for p in (1.0, 2.0, 3.0)]
    np.testing.assert_allclose(clip_maximum(maps), [3.0, 6.0], rtol=1e-6)
    peaks = [blob(p) for p in (1.0, 1.0, 1.0, 1.0, 100.0)]
    assert clip_maximum(peaks, percentile=50) == pytest.approx(1.0)
    assert clip_maximum(peaks) == pytest.approx(100.0)


def test_fixed_scope() -> None:
    out = Normalizer("fixed", maximum=10.0)(blob(5.0))
    assert out.max() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scope": "global"}, "frame, clip, running, fixed"),
        ({"scope": "clip"}, "clip_maximum"),
        ({"scope": "fixed", "maximum": 0.0}, "positive"),
        ({"scope": "running", "decay": 0.0}, "decay"),
        ({"scope": "running", "decay": 1.5}, "decay"),
        ({"scope": "frame", "eps": 0.0}, "eps"),
    ],
)
def test_normalizer_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Normalizer(**kwargs)


def test_running_scope_follows_formula_and_adapts() -> None:
    decay = 0.9
    norm = Normalizer("running", decay=decay)
    out = norm(blob(10.0))
    assert out.max() == pytest.approx(1.0)  # first frame: its own peak
    # weaker frames: held max decays slowly, no jump to full contrast
    held = 10.0
    for _ in range(5):
        out = norm(blob(5.0))
        held = max(5.0, decay * held)
        assert norm.maximum == pytest.approx(held, rel=1e-5)
        assert out.max() == pytest.approx(5.0 / held, rel=1e-5)
    assert 0.5 < out.max() < 1.0
    # ... and after enough frames it has adapted to the weaker level
    for _ in range(30):
        out = norm(blob(5.0))
    assert out.max() == pytest.approx(1.0)
    # a stronger frame raises the held maximum at once (never above 1)
    out = norm(blob(20.0))
    assert out.max() == pytest.approx(1.0)
    assert norm.maximum == pytest.approx(20.0, rel=1e-5)
    norm.reset()
    assert norm.maximum is None


def test_running_scope_without_decay_is_cumulative_max() -> None:
    norm = Normalizer("running", decay=1.0)
    norm(blob(4.0))
    assert norm(blob(1.0)).max() == pytest.approx(0.25)


def test_decay_for_half_life() -> None:
    decay = decay_for_half_life(10)
    assert decay**10 == pytest.approx(0.5)
    with pytest.raises(ValueError):
        decay_for_half_life(0)


@pytest.mark.parametrize("scope", ["frame", "clip", "running", "fixed"])
def test_output_bounded(scope: str) -> None:
    rng = np.random.default_rng(0)
    maps = [rng.gamma(1.0, s, (7, 7)).astype(np.float32) for s in (0.01, 5.0, 0.3, 50.0)]
    maximum = 1.0 if scope == "fixed" else None
    for out in normalize_sequence(maps, scope, maximum=maximum, decay=0.8):
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_ema_matches_hand_computation() -> None:
    x1 = np.array([[1.0, 0.0]], np.float32)
    x2 = np.array([[0.0, 2.0]], np.float32)
    x3 = np.array([[4.0, 4.0]], np.float32)
    smoother = TemporalSmoother(0.25)
    s1 = smoother(x1)
    np.testing.assert_allclose(s1, x1)  # the first frame as is, not blended with zeros
    s2 = smoother(x2)
    np.testing.assert_allclose(s2, [[0.25, 1.5]])  # 0.25 * s1 + 0.75 * x2
    s3 = smoother(x3)
    np.testing.assert_allclose(s3, [[0.0625 + 3.0, 0.375 + 3.0]])
    s1[...] = 99  # outputs are copies, the state is not aliased
    np.testing.assert_allclose(smoother.state, s3)


def test_ema_off_and_reset_and_nan() -> None:
    smoother = TemporalSmoother(0.0)
    np.testing.assert_allclose(smoother(blob(1.0)), blob(1.0))
    np.testing.assert_allclose(smoother(blob(3.0)), blob(3.0))
    smoother = TemporalSmoother(0.5)
    smoother(blob(2.0))
    bad = blob(2.0)
    bad[0, 0] = np.nan
    held = smoother.state.copy()
    with pytest.raises(ValueError, match="NaN"):
        smoother(bad)
    np.testing.assert_array_equal(smoother.state, held)  # the state is not poisoned
    smoother.reset()
    np.testing.assert_allclose(smoother(blob(8.0)), blob(8.0))
    with pytest.raises(ValueError, match="shape changed"):
        smoother(np.ones((14, 14)))
    for alpha in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            TemporalSmoother(alpha)


def test_smoothing_reduces_flicker() -> None:
    rng = np.random.default_rng(1)
    maps = [blob(1.0) + rng.uniform(0, 0.5, (7, 7)).astype(np.float32) for _ in range(20)]
    raw = flicker(normalize_sequence(maps, "clip"))
    smooth = flicker(normalize_sequence(maps, "clip", smoothing=0.7))
    assert smooth < 0.6 * raw


def test_flicker_metric() -> None:
    a = np.zeros((2, 2))
    b = np.ones((2, 2))
    c = np.full((2, 2), 0.5)
    assert flicker([a, b, c]) == pytest.approx((1.0 + 0.5) / 2)
    assert flicker(np.stack([a, b, c])) == pytest.approx(0.75)
    assert flicker(iter([a, b])) == pytest.approx(1.0)
    assert flicker([a]) == 0.0
    assert flicker([]) == 0.0
    with pytest.raises(ValueError):
        flicker([a, np.zeros((3, 3))])


def test_frame_scope_flickers_more_than_clip_on_a_weak_frame() -> None:
    """A confident clip with one weak, diffuse frame: per-frame scope blows it up."""
    rng = np.random.default_rng(2)
    maps = []
    for t in range(12):
        if t == 6:
            maps.append(rng.uniform(0.0, 0.2, (7, 7)).astype(np.float32))  # weak, noisy
        else:
            maps.append(blob(5.0, cx=3.0 + 0.05 * t, sigma=1.0))
    per_frame = flicker(normalize_sequence(maps, "frame"))
    clip = flicker(normalize_sequence(maps, "clip"))
    running = flicker(normalize_sequence(maps, "running"))
    assert per_frame > 1.5 * clip
    assert running < per_frame
