"""Composing on yuv420p pictures: gradcam_client.render.compose_yuv against the RGB composition."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from media import pan_zoom_frames

from gradcam_client.render.compose import INTERPOLATIONS, colorize, draw_label, overlay
from gradcam_client.render.compose_yuv import (
    _resize_matrices,
    color_planes,
    colormap_yuv,
    draw_label_yuv,
    overlay_yuv,
    planes,
)


def to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """What the video writer hands the encoder for an RGB image."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return frame.reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
    ).to_ndarray()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def blob(size: int = 7) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.exp(-((y - size * 0.4) ** 2 + (x - size * 0.6) ** 2) / 4.0).astype(np.float32)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return pan_zoom_frames(1, (640, 360))[0]


def test_planes_are_views_of_the_picture(frame: np.ndarray) -> None:
    picture = to_yuv420p(frame)
    y, u, v = planes(picture)
    assert (y.shape, u.shape, v.shape) == ((360, 640), (180, 320), (180, 320))
    u[:] = 7
    assert np.all(picture.reshape(-1)[360 * 640 : 360 * 640 + 180 * 320] == 7)


def test_colour_tables_are_the_colour_map_in_bt709(frame: np.ndarray) -> None:
    ramp = np.repeat(np.linspace(0, 1, 256, dtype=np.float32)[None], 2, axis=0)
    rgb = np.repeat(colorize(ramp), 2, axis=1)  # each colour twice: 2x2 blocks of one colour
    expected = planes(to_yuv420p(np.ascontiguousarray(rgb)))
    for table, plane in zip(colormap_yuv("jet"), expected, strict=True):
        along = plane[0, :: plane.shape[1] // 256] if plane.shape[1] == 512 else plane[0]
        assert np.abs(table.astype(int) - along.astype(int)).max() <= 1


@pytest.mark.parametrize("heat_size", [7, 120])  # coarse (chroma resolution) and fine maps
def test_overlay_matches_the_rgb_overlay_the_encoder_would_get(
    frame: np.ndarray, heat_size: int
) -> None:
    heat = blob(heat_size) if heat_size == 7 else np.random.default_rng(0).random((68, 120))
    reference = planes(to_yuv420p(overlay(frame, heat, "jet", 0.5)))
    got = planes(overlay_yuv(to_yuv420p(frame), heat, "jet", 0.5))
    assert np.percentile(np.abs(got[0].astype(int) - reference[0].astype(int)), 99.9) <= 4
    for mine, theirs in zip(got, reference, strict=True):  # noise maps: FFmpeg filters chroma
        assert psnr(mine, theirs) > (40 if heat_size == 7 else 38)
    plain = planes(to_yuv420p(frame))
    assert psnr(got[1], plain[1]) < 30  # the heat really is there


def test_low_resolution_colours_match_full_resolution_ones(frame: np.ndarray) -> None:
    full = color_planes(blob(), (360, 640), heat_scale=1)
    coarse = color_planes(blob(), (360, 640))
    for a, b in zip(full, coarse, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 6 and psnr(a, b) > 40


def test_labels_change_only_their_region_and_match_rgb_labels(frame: np.ndarray) -> None:
    picture = to_yuv420p(frame)
    labelled = picture.copy()
    draw_label_yuv(labelled, "tabby cat 0.90", "bottom-left")
    luma, plain = planes(labelled)[0], planes(picture)[0]
    rows, cols = np.nonzero(luma != plain)
    assert rows.min() > 300 and cols.max() < 200  # a small box, bottom left
    reference = planes(to_yuv420p(draw_label(frame, "tabby cat 0.90", "bottom-left")))[0]
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    assert np.abs(luma[box].astype(int) - reference[box].astype(int)).max() <= 3
    assert np.abs(luma.astype(int) - plain.astype(int)).max() > 100  # white text on dark


@pytest.mark.parametrize("interpolation", ["cubic", "linear", "nearest"])
@pytest.mark.parametrize("size", [(540, 960), (180, 320), (151, 150)])
def test_the_heat_is_upsampled_as_opencv_resizes_it(interpolation: str, size) -> None:
    heat = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    rows, columns = _resize_matrices(heat.shape, size, interpolation)
    expected = cv2.resize(heat, size[::-1], interpolation=INTERPOLATIONS[interpolation])
    assert np.abs(rows @ heat @ columns - expected).max() < 1e-5


def test_a_picture_composed_twice_in_place_matches_a_fresh_composition(frame) -> None:
    """Kept planes and label shading never leak from one frame into the next."""
    first, second = to_yuv420p(frame), to_yuv420p(np.ascontiguousarray(frame[::-1]))
    fresh = overlay_yuv(second, blob(), out=second.copy())
    overlay_yuv(first, blob(9), out=first)
    draw_label_yuv(first, "tabby cat 0.90", "bottom-left")
    again = overlay_yuv(second, blob(), out=second.copy())
    assert np.array_equal(again, fresh)
    labelled = [to_yuv420p(frame) for _ in range(2)]
    for picture in labelled:
        draw_label_yuv(picture, "tabby cat 0.90", "bottom-left")
    assert np.array_equal(labelled[0], labelled[1])
    assert not np.array_equal(labelled[0], to_yuv420p(frame))


def test_the_decoder_planes_compose_as_the_copied_picture_and_stay_untouched(frame) -> None:
    """Composing reads a decoder's padded planes in place (no copy) and writes elsewhere."""
    from gradcam_client.media.reader import copy_planes, decoded_planes

    decoded = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
    )
    views = decoded_planes(decoded)
    assert views.y.base is not None and views.y.strides[0] >= 640  # the frame's own rows
    before = copy_planes(decoded)
    got = overlay_yuv(views, blob(), "jet", 0.5)
    draw_label_yuv(got, "tabby cat 0.90", "bottom-left")
    expected = overlay_yuv(before.copy(), blob(), "jet", 0.5)
    draw_label_yuv(expected, "tabby cat 0.90", "bottom-left")
    assert np.array_equal(got, expected)
    assert np.array_equal(copy_planes(decoded), before)


def test_a_pool_picture_is_taken_again_only_once_nothing_refers_to_it() -> None:
    from gradcam_client.render.compose_yuv import PicturePool

    pool = PicturePool(size=4)
    first, second = pool.take(8, 8), pool.take(8, 8)
    assert first.shape == (12, 8) and second is not first
    a, b = id(first), id(second)
    view = planes(first).u  # a view keeps its picture
    encoded = av.VideoFrame.from_numpy_buffer(second, format="yuv420p")  # as the writer does
    del first, second
    third = pool.take(8, 8)
    assert id(third) not in (a, b)
    del view
    assert id(pool.take(8, 8)) == a  # its last view is gone
    del encoded
    again = pool.take(8, 8)
    assert id(again) in (a, b)  # the encoder's frame let go of the second one
    assert id(pool.take(8, 8)) == ({a, b} - {id(again)}).pop()
    assert pool.take(16, 8).shape == (24, 8)  # another size: a picture of its own


def test_a_renderer_leaves_its_input_untouched_and_reuses_its_pictures(frame) -> None:
    from gradcam_client.jobs.settings import JobSettings, select_panels
    from gradcam_client.remote.contract import LayerInfo, ModelInfo
    from gradcam_client.render.renderer import MapRenderer

    info = ModelInfo(
        name="m",
        input_height=224,
        input_width=224,
        class_names=("cat", "dog"),
        layers=(LayerInfo("top", 7, 7),),
        methods=("gradcam",),
    )
    settings = JobSettings()
    renderer = MapRenderer(select_panels(info, settings), settings, info.class_names)
    picture = to_yuv420p(frame)
    kept = picture.copy()
    maps = {"top": blob()[None]}
    outputs = [id(renderer.render_picture(picture, maps, 0, 0.9)) for _ in range(3)]
    assert np.array_equal(picture, kept)
    assert len(set(outputs)) == 1  # each output let go before the next frame
