"""The pieces of a comparison without a server: NAME:VERSION, the plan, the result files and
the picture."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from gradcam_client.cli import build_parser, compared_model
from gradcam_client.compare.agreement import MapAgreement
from gradcam_client.compare.plan import plan_comparison
from gradcam_client.compare.results import (
    FrameComparison,
    read_comparisons,
    read_summary,
    summarize,
    summary_path,
    write_summary,
)
from gradcam_client.compare.view import AGREE, MAPS_DIFFER, TOP1_DIFFERS, PairRenderer
from gradcam_client.errors import InputError
from gradcam_client.jobs.results import PredictionLog
from gradcam_client.jobs.settings import JobSettings, Panel
from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_client.remote.model_ref import ModelRef
from gradcam_client.render.compose import CompositionSettings
from gradcam_client.render.compose_yuv import RgbToPicture
from gradcam_client.render.renderer import MapRenderer


def info(
    name: str = "m",
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    layers: tuple[str, ...] = ("conv1", "conv2"),
    size: int = 32,
) -> ModelInfo:
    return ModelInfo(
        name=name,
        input_height=size,
        input_width=size,
        class_names=classes,
        layers=tuple(LayerInfo(layer, 7, 7) for layer in layers),
        methods=("gradcam", "hirescam"),
    )


@pytest.mark.parametrize(
    ("text", "name", "version"),
    [
        ("efficientnet-lite0", "efficientnet-lite0", None),
        ("efficientnet-lite0:2", "efficientnet-lite0", 2),
        (" tiny:12 ", "tiny", 12),
        ("ns:model:3", "ns:model", 3),
    ],
)
def test_model_refs(text, name, version):
    ref = ModelRef.parse(text)
    assert (ref.name, ref.version) == (name, version)
    assert str(ref) == text.strip()
    assert ref.triton_version == ("" if version is None else str(version))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tiny:0", "positive"),
        ("tiny:x", "positive"),
        ("tiny:", "positive"),
        (":2", "no model name"),
    ],
)
def test_bad_model_refs(text, problem):
    with pytest.raises(InputError, match=problem):
        ModelRef.parse(text)


def test_compare_another_version_of_the_model():
    args = build_parser().parse_args(["in.mp4", "-o", "o.mp4", "--model", "m:1", "--compare", ":2"])
    assert compared_model(args) == "m:2"
    args = build_parser().parse_args(["in.mp4", "-o", "o.mp4", "--compare", "other"])
    assert compared_model(args) == "other"


def test_plan_defaults_each_sides_first_map():
    plan = plan_comparison("a:1", info(), "a:2", info(), JobSettings())
    assert (plan.a.panel.layer, plan.b.panel.layer) == ("conv1", "conv1")
    assert plan.a.panel.title == "a:1 Grad-CAM"
    assert (plan.a.target, plan.b.target) == (-1, -1)
    assert plan.shared_classes == 3 and plan.notes == ()


def test_plan_takes_one_layer_for_both_or_one_each():
    settings = JobSettings(layers=("conv2", "head"), methods=("hirescam",))
    plan = plan_comparison("a", info(), "b", info(layers=("head",)), settings)
    assert (plan.a.panel.layer, plan.b.panel.layer) == ("conv2", "head")
    assert plan.a.panel.method_index == plan.b.panel.method_index == 1
    with pytest.raises(InputError, match="model b explains no layer 'conv2'"):
        plan_comparison("a", info(), "b", info(layers=("head",)), JobSettings(layers=("conv2",)))


def test_plan_refuses_a_model_without_maps():
    with pytest.raises(InputError, match="b computes no maps"):
        plan_comparison("a", info(), "b", info(layers=()), JobSettings())


def test_plan_targets_a_class_by_name_on_both_sides():
    b = info(classes=("fox", "cat"))
    plan = plan_comparison("a", info(), "b", b, JobSettings(target="cat"))
    assert (plan.a.target, plan.b.target) == (0, 1)
    with pytest.raises(InputError, match="neither a nor b knows the class 'zebra'"):
        plan_comparison("a", info(), "b", b, JobSettings(target="zebra"))
    with pytest.raises(InputError, match="a knows the class 'dog' but b does not"):
        plan_comparison("a", info(), "b", b, JobSettings(target="dog"))
    with pytest.raises(InputError, match="give the class by name"):
        plan_comparison("a", info(), "b", b, JobSettings(target="1"))
    with pytest.raises(InputError, match="not available in a comparison"):
        plan_comparison("a", info(), "b", b, JobSettings(target="video"))


def test_top1_agreement_is_by_shared_class_names():
    b = info(classes=("wolf", "fox", "cat"))
    plan = plan_comparison("a", info(), "b", b, JobSettings())
    assert plan.shared_classes == 2 and "share 2 of 3 and 3 class names" in plan.notes[0]
    # A: cat; B: wolf first, but among the shared names its best is cat
    assert plan.top1_agree(np.array([0.6, 0.3, 0.1]), np.array([0.7, 0.1, 0.2])) is True
    assert plan.top1_agree(np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.7, 0.2])) is False
    # B's answer (top-k) holds no class A knows: they disagree
    assert plan.top1_agree(np.array([0.6, 0.3, 0.1]), np.array([0.9, 0.0, 0.0])) is False


def test_no_shared_class_names_compares_maps_only():
    plan = plan_comparison("a", info(), "b", info(classes=("x", "y")), JobSettings())
    assert plan.top1_agree(np.array([1.0, 0, 0]), np.array([1.0, 0])) is None
    assert "share no class name" in plan.notes[0]


def comparison(frame: int, agree: bool | None, iou: float, distance: float) -> FrameComparison:
    return FrameComparison(
        frame=frame,
        time=frame / 10,
        a={"class_name": "cat"},
        b={"class_name": "cat" if agree else "dog"},
        top1_agree=agree,
        agreement=MapAgreement(correlation=1 - distance, hot_iou=iou, distance=distance),
    )


def test_summary_of_frames(tmp_path):
    frames = [
        comparison(0, True, 1.0, 0.0),
        comparison(1, False, 0.8, 0.1),
        comparison(2, True, 0.2, 0.3),
        comparison(3, True, 0.9, 0.05),
    ]
    summary = summarize("a:1", "a:2", frames, 3, worst=2)
    assert summary.agreement_rate == 0.75
    assert summary.worst_frames == [2, 1]
    assert summary.differing_frames == 2  # frame 1 (top class), frame 2 (hot regions)
    assert (summary.hot_iou.worst, summary.hot_iou.worst_frame) == (0.2, 2)
    assert (summary.map_distance.worst, summary.map_distance.worst_frame) == (0.3, 2)
    assert summary.map_correlation.mean == pytest.approx(1 - 0.1125)
    path = write_summary(summary, summary_path(tmp_path / "out.mp4"))
    assert path.name == "out.compare.json"
    assert read_summary(path) == summary
    assert json.loads(path.read_text())["agreement_rate"] == 0.75
    assert any("top-1 agreement: 75.0%" in line for line in summary.lines())


def test_comparison_lines_round_trip(tmp_path):
    log = PredictionLog(tmp_path / "c.jsonl")
    frames = [comparison(0, True, 1.0, 0.0), comparison(1, None, 0.1, 0.2)]
    for frame in frames:
        log.write(frame.record())
    path = log.commit()
    record = json.loads(path.read_text().splitlines()[1])
    assert record["top1_agree"] is None and record["differ"] is True
    assert set(record) >= {"a", "b", "map_correlation", "hot_iou", "map_distance"}
    assert read_comparisons(path) == frames
    (tmp_path / "bad.jsonl").write_text('{"frame": 1}\n')
    with pytest.raises(InputError, match="not a comparison"):
        read_comparisons(tmp_path / "bad.jsonl")


def test_pair_renderer_frame_layout():
    """A | B at the frame's size each, a caption and a strip below, the strip filling up."""
    settings = JobSettings(composition=CompositionSettings(even_dimensions=False))
    classes = ("cat", "dog", "fox")

    def side(title: str) -> MapRenderer:
        return MapRenderer([Panel("conv1", 0, title)], settings, classes)

    renderer = PairRenderer(side("A"), side("B"), (80, 60), total=4)
    image = np.full((60, 80, 3), 120, np.uint8)
    hot_left, hot_right = np.zeros((1, 7, 7)), np.zeros((1, 7, 7))
    hot_left[0, :, :2], hot_right[0, :, 5:] = 1.0, 1.0
    states = [(True, 1.0), (True, 0.1), (False, 0.1), (True, 1.0)]
    frames = []
    for i, (agree, iou) in enumerate(states):
        explained_a = ({"conv1": hot_left}, 0, 0.9)
        explained_b = ({"conv1": hot_right}, 1, 0.8)
        frames.append(
            renderer.render(image, explained_a, explained_b, comparison(i, agree, iou, 0.1))
        )
    out = frames[-1]
    assert out.shape[1] == 160 and out.shape[0] > 60
    assert out.shape[0] % 2 == 0
    left, right = out[:60, :80].astype(int), out[:60, 80:].astype(int)
    assert np.abs(left - right).mean() > 10  # different maps, different halves
    strip = out[-2]
    cells = [strip[5], strip[45], strip[85], strip[125]]  # one pixel inside each frame's cell
    assert [tuple(c) for c in cells[:3]] == [AGREE, MAPS_DIFFER, TOP1_DIFFERS]
    first = frames[0][-2]
    assert tuple(first[45]) != MAPS_DIFFER  # frame 1 not yet shown at frame 0


def test_pair_renderer_composes_yuv420p_pictures_as_rgb_frames():
    """A yuv420p frame gives the picture of the RGB path (up to 4:2:0 and rounding), with the
    same size, and never passes through RGB."""
    settings = JobSettings(composition=CompositionSettings(even_dimensions=False))
    classes = ("cat", "dog", "fox")

    def renderer() -> PairRenderer:
        def side(title: str) -> MapRenderer:
            return MapRenderer([Panel("conv1", 0, title)], settings, classes)

        return PairRenderer(side("A"), side("B"), (80, 60), total=4)

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (9, 9), 3)
    picture = RgbToPicture()(image)
    hot_left, hot_right = np.zeros((1, 7, 7)), np.zeros((1, 7, 7))
    hot_left[0, :, :2], hot_right[0, :, 5:] = 1.0, 1.0
    explained = (({"conv1": hot_left}, 0, 0.9), ({"conv1": hot_right}, 1, 0.8))
    frame = comparison(0, False, 0.1, 0.3)
    rgb = renderer().render(image, *explained, frame)
    yuv = renderer().render_picture(picture, *explained, frame)
    assert yuv.shape == (rgb.shape[0] * 3 // 2, rgb.shape[1])
    back = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    back.colorspace, back.color_range = 1, 1
    shown = back.to_ndarray(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG")
    difference = np.abs(shown.astype(int) - rgb.astype(int))
    assert difference.mean() < 6  # chroma shared by 2x2 pixels, rounding
    assert np.median(difference) <= 3
    assert tuple(shown[-2, 5]) == pytest.approx(TOP1_DIFFERS, abs=12)  # the strip's first cell


def test_pair_renderer_scales_wide_yuv420p_pictures_to_even_halves():
    settings = JobSettings(composition=CompositionSettings(even_dimensions=False))
    side = MapRenderer([Panel("conv1", 0, "A")], settings, ("cat",))
    renderer = PairRenderer(side, side, (3000, 1000), total=1)
    assert renderer.half == (1920, 640)
    picture = np.full((1500, 3000), 128, np.uint8)
    out = renderer.render_picture(
        picture, ({"conv1": np.ones((1, 7, 7))}, 0, 0.5), ({"conv1": np.ones((1, 7, 7))}, 0, 0.5),
        comparison(0, True, 1.0, 0.0),
    )  # fmt: skip
    assert out.shape[1] == 3840 and out.shape[0] % 3 == 0 and (out.shape[0] * 2 // 3) % 2 == 0


@pytest.mark.parametrize("pictures", [False, True], ids=["rgb", "yuv420p"])
def test_pair_renderer_keeps_the_titles_and_the_caption_apart(pictures):
    """The measures' caption is drawn below both halves, never over a half's title (nor
    anywhere in the halves); each title stays in its half's top rows."""
    width, height = 160, 120
    classes = ("cat", "dog", "fox")
    image = np.full((height, width, 3), 120, np.uint8)
    maps = {"conv1": np.ones((1, 7, 7))}

    def render(titles: tuple[str, str], frame: FrameComparison) -> np.ndarray:
        sides = [MapRenderer([Panel("conv1", 0, t)], JobSettings(), classes) for t in titles]
        renderer = PairRenderer(*sides, (width, height), total=4)
        explained = ((maps, 0, 0.9), (maps, 1, 0.8), frame)
        if not pictures:
            return renderer.render(image, *explained).astype(int)
        out = renderer.render_picture(RgbToPicture()(image), *explained)
        return av.VideoFrame.from_ndarray(out, format="yuv420p").to_ndarray(format="rgb24")

    titles = ("tiny-versions:1 Grad-CAM", "tiny-versions:2 Grad-CAM")
    agreeing, differing = comparison(1, True, 0.9, 0.01), comparison(1, False, 0.1, 0.4)
    shown = render(titles, agreeing)
    assert shown.shape[1] == 2 * width and shown.shape[0] > height
    # another caption changes the caption's rows only
    other_caption = np.abs(shown.astype(int) - render(titles, differing)).max(axis=(1, 2))
    assert other_caption[height:].max() > 100 and other_caption[:height].max() <= 2
    # the titles are in the top rows of their halves, none in the caption's rows
    untitled = np.abs(shown.astype(int) - render(("", ""), agreeing)).max(axis=2)
    for half in (untitled[:, :width], untitled[:, width:]):
        rows = np.flatnonzero(half.max(axis=1) > 60)
        assert len(rows) and rows.max() < height // 3, rows
    assert untitled[height:].max() <= 2
