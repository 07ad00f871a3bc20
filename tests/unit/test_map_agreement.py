"""The map agreement measures: exact values on maps whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gradcam_client.compare.agreement import (
    compare_maps,
    hot_iou,
    hot_region,
    pearson,
    resample,
    sliced_distance,
)


def blob(shape: tuple[int, int], top: int, left: int, size: int = 3) -> np.ndarray:
    map_ = np.zeros(shape)
    map_[top : top + size, left : left + size] = 1.0
    return map_


def test_identical_maps_agree_exactly(rng):
    map_ = rng.random((7, 7)).astype(np.float32)
    agreement = compare_maps(map_, map_.copy())
    assert (agreement.correlation, agreement.hot_iou, agreement.distance) == (1.0, 1.0, 0.0)


def test_scale_does_not_matter(rng):
    """Raw maps of a more confident model are larger: every measure ignores the scale."""
    map_ = rng.random((7, 7))
    agreement = compare_maps(map_, 40.0 * map_)
    assert agreement.correlation == pytest.approx(1.0)
    assert agreement.hot_iou == 1.0
    assert agreement.distance == pytest.approx(0.0, abs=1e-12)


def test_disjoint_hot_regions():
    a, b = blob((14, 14), 2, 2), blob((14, 14), 9, 9)
    agreement = compare_maps(a, b)
    assert agreement.hot_iou == 0.0
    assert agreement.correlation < 0
    assert agreement.distance == pytest.approx(np.hypot(7, 7) / 14, rel=0.03)


def test_a_shift_measures_its_length():
    """Shifted by half the frame's width: the distance is 0.5 frame sides."""
    a, b = blob((14, 14), 5, 0, 4), blob((14, 14), 5, 7, 4)
    assert compare_maps(a, b).distance == pytest.approx(0.5, rel=1e-6)
    c = blob((14, 14), 5, 2, 4)
    assert compare_maps(a, c).distance == pytest.approx(2 / 14, rel=1e-6)


def test_the_distance_sorts_by_how_far_apart():
    a = blob((16, 16), 1, 1)
    near, far = blob((16, 16), 1, 5), blob((16, 16), 12, 12)
    # IoU and correlation cannot tell these apart: both are disjoint from a
    assert hot_iou(a, near) == hot_iou(a, far) == 0.0
    assert sliced_distance(a, near) < sliced_distance(a, far)


def test_sliced_distance_is_close_to_the_exact_earth_movers_distance(rng):
    """Against OpenCV's exact 2-D EMD on random maps: the same order of size, well correlated."""
    exact, sliced = [], []
    ys, xs = np.mgrid[0:8, 0:8]
    centres = np.stack([(xs.ravel() + 0.5) / 8, (ys.ravel() + 0.5) / 8], axis=1)
    for _ in range(12):
        a, b = rng.random((8, 8)) ** 4, rng.random((8, 8)) ** 4
        signature = [
            np.column_stack([m.ravel() / m.sum(), centres]).astype(np.float32) for m in (a, b)
        ]
        exact.append(cv2.EMD(signature[0], signature[1], cv2.DIST_L2)[0])
        sliced.append(sliced_distance(a, b))
    assert np.corrcoef(exact, sliced)[0, 1] > 0.8
    assert 0.5 < np.mean(sliced) / np.mean(exact) < 1.5


def test_maps_of_other_resolutions_are_compared_on_the_frame():
    """A 7x7 map and the same picture at 14x14 cover the same frame: they agree."""
    fine = blob((14, 14), 4, 8, 4)
    coarse = cv2.resize(fine, (7, 7), interpolation=cv2.INTER_AREA)
    agreement = compare_maps(coarse, fine)
    assert agreement.correlation > 0.85
    assert agreement.hot_iou > 0.4  # the sharp map's hot region is its 16 non-zero cells
    assert agreement.distance < 0.03
    elsewhere = compare_maps(coarse, blob((14, 14), 8, 0, 4))
    assert elsewhere.hot_iou == 0.0
    assert elsewhere.distance > 0.3


def test_resample_matches_opencv_bilinear(rng):
    map_ = rng.random((7, 5))
    ours = resample(map_, (14, 11))
    theirs = cv2.resize(map_, (11, 14), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_all_zero_maps():
    zero, shaped = np.zeros((7, 7)), blob((7, 7), 1, 1)
    both = compare_maps(zero, zero)
    assert (both.correlation, both.hot_iou, both.distance) == (1.0, 1.0, 0.0)
    one = compare_maps(zero, shaped)
    assert (one.correlation, one.hot_iou) == (0.0, 0.0)
    assert one.distance > 0.1  # no attention counts as attention everywhere


def test_hot_region_is_the_hottest_fifth_with_ties_in():
    map_ = np.arange(25, dtype=float).reshape(5, 5)
    assert np.count_nonzero(hot_region(map_)) == 5
    assert hot_region(map_)[4].all()
    tied = np.ones((5, 5))
    assert hot_region(tied).all()  # every cell ties with the top fifth


def test_pearson_of_anti_correlated_maps():
    a = np.arange(9, dtype=float).reshape(3, 3)
    assert pearson(a, -a + 10) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("a", "problem"),
    [(np.zeros((2, 2, 2)), "2-D"), (np.full((3, 3), np.nan), "NaN"), (np.zeros((0, 3)), "2-D")],
)
def test_bad_maps_are_refused(a, problem):
    with pytest.raises(ValueError, match=problem):
        compare_maps(a, np.ones((3, 3)))
