"""Upsampling, colour maps, blending, labels, layouts and settings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gradcam_client.render.compose import (
    COLORMAPS,
    CompositionSettings,
    Layout,
    blend,
    colorize,
    compose_frame,
    draw_label,
    format_label,
    grid,
    grid_shape,
    overlay,
    pad_to_even,
    side_by_side,
    upsample,
)


def frame_of(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def gaussian_heat(size: int = 7) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    heat = np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / size)
    return heat / heat.max()


def test_colorize_is_rgb_from_opencv_bgr() -> None:
    rgb = colorize(np.array([[1.0]]), "jet")
    bgr = cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_JET)
    np.testing.assert_array_equal(rgb[0, 0], bgr[0, 0, ::-1])
    assert rgb[0, 0, 0] > rgb[0, 0, 2]  # jet's top is red


@pytest.mark.parametrize("name", ["jet", "turbo", "inferno", "viridis", "magma", "hot", "JET"])
def test_known_colormaps(name: str) -> None:
    out = colorize(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), name)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8


def test_unknown_colormap_error_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown colour map 'plasmaa'.*jet.*turbo.*viridis"):
        colorize(np.zeros((2, 2)), "plasmaa")
    with pytest.raises(ValueError, match="inferno"):
        CompositionSettings(colormap="nope")
    assert {"jet", "turbo", "inferno", "viridis", "magma", "hot"} <= set(COLORMAPS)


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_upsample_then_colormap_colours_interpolated_heat(interpolation: str) -> None:
    heat = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    full = upsample(heat, (3, 3), interpolation)
    assert full[1, 1] == pytest.approx(0.5, abs=1e-6)
    composed = overlay(np.zeros((3, 3, 3), np.uint8), heat, "jet", 1.0, interpolation=interpolation)
    expected = colorize(np.array([[0.5]]), "jet")[0, 0]
    np.testing.assert_array_equal(composed[1, 1], expected)
    # not the average of the end colours (what colour-map-then-resize would give)
    ends = colorize(heat, "jet").astype(np.float32)
    averaged = (ends[0, 0] + ends[1, 0]) / 2
    assert np.abs(composed[1, 1].astype(np.float32) - averaged).max() > 60


def test_upsample_shape_bounds_and_odd_sizes() -> None:
    spiky = np.zeros((7, 7), np.float32)
    spiky[3, 3] = 1.0  # cubic overshoots around a spike
    for size in [(1, 1), (3, 5), (240, 320), (101, 33)]:
        out = upsample(spiky, size)
        assert out.shape == size and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError, match="interpolation"):
        upsample(spiky, (4, 4), "lanczos9")
    with pytest.raises(ValueError, match="2-D"):
        upsample(np.zeros((2, 7, 7)), (4, 4))


def test_blend_alpha_limits() -> None:
    frame = frame_of(9, 13)
    color = frame_of(9, 13, seed=1)
    np.testing.assert_array_equal(blend(frame, color, 0.0), frame)
    np.testing.assert_array_equal(blend(frame, color, 1.0), color)
    half = blend(frame, color, 0.5).astype(int)
    assert np.abs(half - (frame.astype(int) + color.astype(int)) / 2).max() <= 1
    heat = gaussian_heat()
    np.testing.assert_array_equal(overlay(frame, heat, "jet", 0.0), frame)
    full = upsample(heat, (9, 13))
    np.testing.assert_array_equal(overlay(frame, heat, "jet", 1.0), colorize(full, "jet"))
    with pytest.raises(ValueError, match="alpha"):
        blend(frame, color, 1.5)


def test_all_zero_map_no_nan_and_overlay_unchanged_ish() -> None:
    frame = frame_of(24, 32)
    zeros = np.zeros((7, 7), np.float32)
    uniform = overlay(frame, zeros, "jet", 0.4)
    tint = colorize(np.zeros((1, 1)), "jet")[0, 0].astype(np.float32)
    expected = 0.6 * frame.astype(np.float32) + 0.4 * tint  # a uniform tint, nothing more
    assert np.abs(uniform.astype(np.float32) - expected).max() <= 1
    weighted = overlay(frame, zeros, "jet", 0.4, heat_weighted=True)
    np.testing.assert_array_equal(weighted, frame)  # cold everywhere: untouched
    nan_heat = np.full((7, 7), np.nan, np.float32)
    np.testing.assert_array_equal(overlay(frame, nan_heat, "jet", 0.4), uniform)


def test_heat_weighted_blend_keeps_cold_pixels() -> None:
    frame = frame_of(20, 20)
    heat = np.zeros((2, 2), np.float32)
    heat[0, 0] = 1.0
    out = overlay(frame, heat, "jet", 0.8, interpolation="nearest", heat_weighted=True)
    np.testing.assert_array_equal(out[10:, 10:], frame[10:, 10:])
    assert not np.array_equal(out[:10, :10], frame[:10, :10])


def test_overlay_on_tiny_and_odd_frames() -> None:
    for shape in [(1, 1), (3, 5), (5, 3), (17, 31)]:
        out = overlay(frame_of(*shape), gaussian_heat(14), "turbo", 0.5)
        assert out.shape == (*shape, 3) and out.dtype == np.uint8


def test_label_changes_pixels_on_320x240() -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    out = draw_label(frame, format_label("Siamese cat", 0.8712))
    assert out.shape == frame.shape
    assert (out != frame).any()
    assert (frame == 128).all()  # input untouched
    assert (out[:40, :40] != 128).any()  # top-left by default
    assert (out[-40:] == 128).all()
    bottom = draw_label(frame, "tabby 0.50", "bottom-right")
    assert (bottom[-40:, -160:] != 128).any() and (bottom[:40] == 128).all()
    assert out.max() > 240 and (out < 64).any()  # white text on a dark box


def test_format_label() -> None:
    assert format_label("Siamese cat", 0.8712) == "Siamese cat 0.87"


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 3), (12, 12), (20, 400), (400, 20)])
def test_label_on_small_frames_does_not_crash(shape: tuple[int, int]) -> None:
    frame = frame_of(*shape)
    out = draw_label(frame, "Siamese cat 0.87")
    assert out.shape == frame.shape and out.dtype == np.uint8
    if shape in [(1, 1), (3, 5), (5, 3), (12, 12)]:
        np.testing.assert_array_equal(out, frame)  # too small: skipped


def test_label_text_is_made_ascii_and_scales() -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    assert (draw_label(frame, "Café 0.50") != 128).any()
    small = (draw_label(frame, "cat 0.50") != 128).any(axis=2).sum()
    big_frame = np.full((960, 1280, 3), 128, np.uint8)
    big = (draw_label(big_frame, "cat 0.50") != 128).any(axis=2).sum()
    assert big > 8 * small  # about 16x the area at 4x the size


def test_grid_shape_is_near_square() -> None:
    assert [grid_shape(n) for n in range(1, 10)] == [
        (1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (2, 3), (3, 3), (3, 3), (3, 3),
    ]  # fmt: skip
    assert grid_shape(4, columns=4) == (1, 4)
    assert grid_shape(2, columns=5) == (1, 2)


def test_layout_functions_shapes() -> None:
    a, b = frame_of(30, 40), frame_of(30, 40, seed=3)
    assert side_by_side(a, b).shape == (30, 80, 3)
    out = grid([a, b, a], titles=["block5_conv3", "Grad-CAM++", "x"])
    assert out.shape == (60, 80, 3)
    assert (out[30:, 40:] == 0).all()  # the empty cell
    with pytest.raises(ValueError, match="differ"):
        grid([a, frame_of(31, 40)])
    with pytest.raises(ValueError, match="titles"):
        grid([a, b], titles=["one"])


@pytest.mark.parametrize(
    ("layout", "maps", "expected"),
    [
        ("overlay", 1, (240, 320, 3)),
        ("side_by_side", 1, (240, 640, 3)),
        ("side-by-side", 1, (240, 640, 3)),
        ("grid", 1, (240, 320, 3)),
        ("grid", 2, (240, 640, 3)),
        ("grid", 3, (480, 640, 3)),
        ("grid", 4, (480, 640, 3)),
        ("grid", 5, (480, 960, 3)),
    ],
)
def test_compose_frame_layout_shapes(layout: str, maps: int, expected: tuple) -> None:
    heats = {f"layer{i}": gaussian_heat() for i in range(maps)}
    settings = CompositionSettings(layout=layout)
    out = compose_frame(frame_of(240, 320), heats, settings, "Siamese cat 0.87")
    assert out.shape == expected and out.dtype == np.uint8


def test_compose_frame_even_and_stable_dimensions() -> None:
    heat = gaussian_heat()
    shapes = set()
    for seed in range(3):
        out = compose_frame(
            frame_of(101, 75, seed),
            {"Grad-CAM": heat * (seed / 2), "Grad-CAM++": heat, "Layer-CAM": heat},
            CompositionSettings(layout="grid", include_original=True),
            f"cat {seed / 3:.2f}",
        )
        shapes.add(out.shape)
    assert shapes == {(202, 150, 3)}
    odd = compose_frame(frame_of(3, 5), heat)
    assert odd.shape == (4, 6, 3)
    kept = compose_frame(frame_of(3, 5), heat, CompositionSettings(even_dimensions=False))
    assert kept.shape == (3, 5, 3)
    assert pad_to_even(frame_of(1, 1)).shape == (2, 2, 3)


def test_compose_frame_max_width() -> None:
    settings = CompositionSettings(layout="grid", max_width=640)
    heats = {name: gaussian_heat() for name in "abcd"}
    out = compose_frame(frame_of(720, 1280), heats, settings)
    assert out.shape == (360, 640, 3)


def test_compose_frame_contents() -> None:
    frame = frame_of(60, 80)
    heat = gaussian_heat()
    plain = CompositionSettings(alpha=0.5, show_label=False, show_titles=False)
    np.testing.assert_array_equal(compose_frame(frame, heat, plain), overlay(frame, heat))
    sbs = compose_frame(frame, heat, CompositionSettings(layout="side_by_side", show_titles=False))
    np.testing.assert_array_equal(sbs[:, :80], frame)  # label goes on the overlay half
    labelled = compose_frame(frame, {"Grad-CAM": heat}, CompositionSettings(), "tabby 0.9")
    assert not np.array_equal(labelled, overlay(frame, heat))


def test_compose_frame_rejects_several_maps_outside_grid() -> None:
    heats = {"a": gaussian_heat(), "b": gaussian_heat()}
    with pytest.raises(ValueError, match="grid"):
        compose_frame(frame_of(10, 10), heats, CompositionSettings(layout="overlay"))
    with pytest.raises(ValueError, match="at least one"):
        compose_frame(frame_of(10, 10), {}, CompositionSettings())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.2}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": "0.5"}, "alpha"),
        ({"layout": "mosaic"}, "overlay, side_by_side, grid"),
        ({"interpolation": "area"}, "cubic, linear, nearest"),
        ({"columns": 0}, "columns"),
        ({"max_width": 1}, "max_width"),
    ],
)
def test_settings_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompositionSettings(**kwargs)


def test_settings_normalised() -> None:
    settings = CompositionSettings(colormap=" Turbo ", layout="side-by-side")
    assert settings.colormap == "turbo"
    assert settings.layout is Layout.SIDE_BY_SIDE


def test_frame_validation() -> None:
    with pytest.raises(ValueError, match="uint8"):
        overlay(np.zeros((4, 4, 3), np.float32), gaussian_heat())
    with pytest.raises(ValueError, match="RGB"):
        overlay(np.zeros((4, 4), np.uint8), gaussian_heat())
