"""Explanation-quality and steadiness metrics on synthetic data with known answers."""

from __future__ import annotations

import map_quality as quality
import numpy as np
import pytest

from gradcam_client.render.normalize import TemporalSmoother

SIZE = 64
OBJECT = (40, 8, 60, 28)  # x0, y0, x1, y1: off-centre, top right


def textured_image(rng: np.random.Generator) -> np.ndarray:
    """Flat grey, with a black/white checkerboard object that blurring destroys."""
    image = np.full((SIZE, SIZE, 3), 128, np.uint8)
    x0, y0, x1, y1 = OBJECT
    ys, xs = np.indices((y1 - y0, x1 - x0))
    image[y0:y1, x0:x1] = (((ys + xs) % 2) * 255)[..., None]
    return image


def object_predictor(frames: np.ndarray) -> np.ndarray:
    """Probability of class 1 = how intact the object's texture is (contrast around 128)."""
    x0, y0, x1, y1 = OBJECT
    region = frames[:, y0:y1, x0:x1].astype(np.float64)
    p = np.abs(region - 128.0).mean(axis=(1, 2, 3)) / 127.5
    p = np.clip(p, 0.0, 1.0)
    return np.stack([1.0 - p, p], axis=1)


def object_map(shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    """A perfect low-resolution map: 1 on the object's cells, 0 elsewhere."""
    mask = quality.box_mask((SIZE, SIZE), OBJECT).astype(np.float32)
    return mask.reshape(shape[0], SIZE // shape[0], shape[1], SIZE // shape[1]).mean(axis=(1, 3))


def blob(center: tuple[float, float], shape=(16, 16), sigma=1.5, amplitude=1.0) -> np.ndarray:
    ys, xs = np.indices(shape)
    cx, cy = center
    return amplitude * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


# -- maps and curves --------------------------------------------------------------------------


def test_upsample_map_resizes_and_zeroes_non_finite_values():
    cam = np.array([[0.0, np.nan], [np.inf, 1.0]], np.float32)
    up = quality.upsample_map(cam, (6, 4))
    assert up.shape == (6, 4) and np.isfinite(up).all()
    with pytest.raises(ValueError, match="interpolation"):
        quality.upsample_map(cam, (6, 4), "bogus")


def test_trapezoid_auc_is_the_mean_of_the_curve():
    x = np.linspace(0, 1, 11)
    assert quality.trapezoid_auc(x, np.full(11, 0.3)) == pytest.approx(0.3)
    assert quality.trapezoid_auc(x, x) == pytest.approx(0.5)
    assert quality.trapezoid_auc(x, 1 - x) == pytest.approx(0.5)


def test_pixel_order_puts_the_most_salient_first_and_breaks_ties_by_seed():
    saliency = np.zeros((4, 4))
    saliency[2, 3] = 5.0
    saliency[0, 0] = 3.0
    order = quality.pixel_order(saliency, seed=1)
    assert order[:2].tolist() == [2 * 4 + 3, 0]
    assert sorted(order.tolist()) == list(range(16))
    np.testing.assert_array_equal(order, quality.pixel_order(saliency, seed=1))
    assert order[2:].tolist() != sorted(order[2:].tolist())  # zeros not in raster order


def test_perturbed_frames_go_from_image_to_substrate_and_back(rng):
    image = textured_image(rng)
    substrate = quality.blurred(image)
    cam = object_map()
    deletion, fractions = quality.perturbed_frames(image, cam, "deletion", 8, substrate=substrate)
    insertion, _ = quality.perturbed_frames(image, cam, "insertion", 8, substrate=substrate)
    assert deletion.shape == (9, SIZE, SIZE, 3) and fractions.tolist() == pytest.approx(
        np.linspace(0, 1, 9).tolist()
    )
    np.testing.assert_array_equal(deletion[0], image)
    np.testing.assert_array_equal(deletion[-1], substrate)
    np.testing.assert_array_equal(insertion[0], substrate)
    np.testing.assert_array_equal(insertion[-1], image)
    changed = (deletion != image).any(axis=-1).mean(axis=(1, 2))
    assert np.all(np.diff(changed) >= 0)  # pixels only ever get removed


def test_a_perfect_map_beats_random_and_centre_baselines_on_a_synthetic_predictor(rng):
    image = textured_image(rng)
    target = 1
    assert object_predictor(image[None])[0, target] > 0.95
    assert object_predictor(quality.blurred(image)[None])[0, target] < 0.2
    scores = {}
    for name, cam in {
        "perfect": object_map(),
        "random": quality.random_map((8, 8), seed=0),
        "centre": quality.centre_blob((8, 8)),
    }.items():
        curves = quality.causal_curves(image, cam, object_predictor, target, steps=16)
        scores[name] = (curves["deletion"].auc, curves["insertion"].auc)
    perfect_del, perfect_ins = scores["perfect"]
    for baseline in ("random", "centre"):
        deletion, insertion = scores[baseline]
        assert perfect_del < deletion - 0.2, scores
        assert perfect_ins > insertion + 0.2, scores


def test_single_curves_match_the_joint_call_and_predict_shape_is_checked(rng):
    image = textured_image(rng)
    cam = object_map()
    both = quality.causal_curves(image, cam, object_predictor, 1, steps=4)
    deletion = quality.deletion_curve(image, cam, object_predictor, 1, steps=4)
    insertion = quality.insertion_curve(image, cam, object_predictor, 1, steps=4)
    assert deletion.auc == pytest.approx(both["deletion"].auc)
    assert insertion.auc == pytest.approx(both["insertion"].auc)
    assert deletion.scores[0] > deletion.scores[-1]
    with pytest.raises(ValueError, match="predict returned"):
        quality.deletion_curve(image, cam, lambda frames: np.zeros(3), 1, steps=4)


def test_baselines_are_deterministic_and_centred():
    np.testing.assert_array_equal(quality.random_map((7, 7), 3), quality.random_map((7, 7), 3))
    assert not np.array_equal(quality.random_map((7, 7), 3), quality.random_map((7, 7), 4))
    centre = quality.centre_blob((7, 7))
    assert np.unravel_index(np.argmax(centre), centre.shape) == (3, 3)
    np.testing.assert_allclose(centre, centre[::-1, ::-1], atol=1e-6)


# -- localisation -----------------------------------------------------------------------------


def test_energy_in_box_is_one_for_a_map_inside_the_box_and_the_area_for_a_flat_map():
    shape = (80, 120, 3)
    box = (30, 20, 90, 60)
    cam = np.zeros((80, 120), np.float32)
    cam[25:55, 40:80] = 1.0
    assert quality.energy_in_box(cam, box, shape) == pytest.approx(1.0)
    flat = np.ones((8, 12))
    area = (90 - 30) * (60 - 20) / (80 * 120)
    assert quality.energy_in_box(flat, box, shape) == pytest.approx(area)
    assert quality.energy_in_box(np.zeros((8, 12)), box, shape) == 0.0


def test_pointing_game_checks_the_peak_of_the_upsampled_map():
    cam = np.zeros((7, 7))
    cam[1, 5] = 1.0  # upper right cell
    shape = (70, 70)
    assert quality.pointing_hit(cam, (50, 10, 60, 20), shape)
    assert not quality.pointing_hit(cam, (0, 0, 30, 30), shape)
    assert not quality.pointing_hit(cam, (40, 10, 54, 20), shape)
    assert quality.pointing_hit(cam, (40, 10, 54, 20), shape, tolerance=2)
    assert not quality.pointing_hit(np.zeros((7, 7)), (0, 0, 70, 70), shape)


# -- rank correlation -------------------------------------------------------------------------


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(quality.rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])


def test_rankdata_matches_scipy(rng):
    stats = pytest.importorskip("scipy.stats")
    values = rng.integers(0, 6, 200).astype(float)
    np.testing.assert_allclose(quality.rankdata(values), stats.rankdata(values))
    a, b = rng.random((7, 7)), rng.random((7, 7))
    a[a < 0.4] = 0  # ReLU-like ties
    assert quality.rank_correlation(a, b) == pytest.approx(
        stats.spearmanr(a.ravel(), b.ravel()).statistic
    )


def test_rank_correlation_of_a_map_with_itself_its_negation_and_a_monotone_transform(rng):
    cam = rng.random((7, 7))
    assert quality.rank_correlation(cam, cam) == pytest.approx(1.0)
    assert quality.rank_correlation(cam, -cam) == pytest.approx(-1.0)
    assert quality.rank_correlation(cam, np.exp(3 * cam)) == pytest.approx(1.0)
    assert np.isnan(quality.rank_correlation(cam, np.zeros((7, 7))))
    unrelated = [quality.rank_correlation(cam, rng.random((7, 7))) for _ in range(50)]
    assert abs(np.mean(unrelated)) < 0.1


# -- flicker, correlation, lag ----------------------------------------------------------------


def test_minmax_normalize_stretches_each_map_to_full_range(rng):
    stack = np.stack([0.01 * rng.random((5, 5)) + 3.0, rng.random((5, 5))])
    out = quality.minmax_normalize(stack)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1.0, atol=1e-4)
    assert np.all(quality.minmax_normalize(np.zeros((3, 3))) == 0)


def weak_frame_sequence(rng: np.random.Generator) -> list[np.ndarray]:
    """A steady strong blob, with every 5th frame weak and diffuse (near-zero noise)."""
    strong = blob((8, 8), amplitude=10.0)
    return [
        0.02 * rng.random(strong.shape) if t % 5 == 2 else strong + 0.1 * rng.random(strong.shape)
        for t in range(20)
    ]


def test_minmax_flickers_more_than_clip_scope_on_a_sequence_with_weak_frames(rng):
    raw = weak_frame_sequence(rng)
    minmax = quality.flicker(quality.normalized_sequence(raw, quality.MINMAX))
    frame = quality.flicker(quality.normalized_sequence(raw, "frame"))
    clip = quality.flicker(quality.normalized_sequence(raw, "clip"))
    assert minmax > clip and frame > clip
    assert minmax > 2 * clip
    smoothed = quality.flicker(quality.normalized_sequence(raw, "clip", smoothing=0.7))
    assert smoothed < clip


def test_normalized_sequence_schemes_give_maps_in_unit_range(rng):
    raw = [rng.random((4, 6)) * (t + 1) for t in range(6)]
    for scheme in (quality.MINMAX, "frame", "running", "clip"):
        out = quality.normalized_sequence(raw, scheme, smoothing=0.5, decay=0.9)
        assert out.shape == (6, 4, 6) and out.min() >= 0 and out.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="scope"):
        quality.normalized_sequence(raw, "bogus")


def test_frame_correlation_is_one_for_scaled_copies_and_drops_with_smoothing(rng):
    raw = [blob((2 + t * 0.6, 8)) + 0.01 * rng.random((16, 16)) for t in range(20)]
    scaled = [3.0 * cam for cam in raw]
    assert quality.frame_correlation(scaled, raw) == pytest.approx(1.0)
    smoother = TemporalSmoother(0.8)
    smoothed = [smoother(cam) for cam in raw]
    assert quality.frame_correlation(smoothed, raw) < 0.95
    zeros = [np.zeros((16, 16))] * 20
    assert np.isnan(quality.frame_correlation(zeros, raw))


def test_centroids_find_a_blob_and_skip_empty_maps():
    found = quality.centroids([blob((4.0, 10.0)), np.zeros((16, 16))])
    np.testing.assert_allclose(found[0], (4.0, 10.0), atol=0.05)
    assert np.isnan(found[1]).all()


def test_lag_frames_finds_a_shift():
    t = np.arange(60, dtype=float)
    reference = np.sin(t / 5.0)
    delayed = np.sin((t - 3.0) / 5.0)
    assert quality.lag_frames(reference, delayed) == pytest.approx(3.0, abs=0.11)
    assert quality.lag_frames(delayed, reference) == pytest.approx(-3.0, abs=0.11)
    assert quality.lag_frames(reference, reference) == pytest.approx(0.0)
    assert quality.lag_frames(np.ones(30), np.ones(30)) == 0.0
    assert np.isnan(quality.lag_frames(np.full(30, np.nan), np.ones(30)))


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_ema_of_a_moving_blob_lags_by_alpha_over_one_minus_alpha(alpha):
    raw = [blob((2 + 0.3 * t, 8), shape=(16, 40)) for t in range(100)]
    smoother = TemporalSmoother(alpha)
    smoothed = [smoother(cam) for cam in raw]
    lag = quality.lag_frames(quality.centroids(raw), quality.centroids(smoothed))
    assert lag == pytest.approx(alpha / (1 - alpha), abs=0.3)


def test_temporal_report_without_smoothing_has_full_correlation_and_no_lag(rng):
    raw = [blob((2 + 0.3 * t, 8), shape=(16, 40)) * (1 + rng.random()) for t in range(40)]
    plain = quality.temporal_report(raw, "running", 0.0, decay=0.9)
    assert plain.correlation == pytest.approx(1.0) and plain.lag == 0.0
    assert plain.decay == 0.9 and plain.flicker > 0
    smooth = quality.temporal_report(raw, "running", 0.8, decay=0.9)
    assert smooth.flicker < plain.flicker
    assert smooth.correlation < 1.0 and smooth.lag == pytest.approx(4.0, abs=0.5)
    assert quality.temporal_report(raw, quality.MINMAX, 0.5).decay is None
