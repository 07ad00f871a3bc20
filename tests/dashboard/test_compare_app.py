"""The compare mode's page logic under Streamlit's AppTest, against a real Triton serving two
versions of a tiny CNN (`versioned_models`)."""

from __future__ import annotations

import json
import time

import pytest
from app_page import no_exception, page, texts
from streamlit.testing.v1 import AppTest
from versioned_models import NO_MAPS, OTHER_CLASSES, VERSIONED

from gradcam_client.compare.results import read_comparisons, read_summary

pytestmark = pytest.mark.integration


def compare_mode(at: AppTest) -> AppTest:
    """The page in compare mode on the sample clip."""
    at.run()
    at.radio(key="mode").set_value("compare").run()
    at.radio(key="source").set_value("sample").run()
    no_exception(at)
    return at


def test_the_picker_lists_every_version_and_starts_with_two_versions_of_one_model(compare_page):
    at = compare_mode(page())
    sidebar = [e.label for e in at.sidebar.get("expander")]
    assert sidebar == [NO_MAPS, OTHER_CLASSES, VERSIONED]  # each model once, its versions inside
    assert "**ready** · input 32x32 · 5 classes · versions 1, 2" in texts(at.sidebar.markdown)
    picker = at.selectbox(key="compare_a")
    assert picker.options[:4] == [
        f"{NO_MAPS}:1",
        f"{OTHER_CLASSES}:1",
        f"{VERSIONED}:1",
        f"{VERSIONED}:2",
    ]
    assert at.selectbox(key="compare_a").value == f"{VERSIONED}:1"
    assert at.selectbox(key="compare_b").value == f"{VERSIONED}:2"
    assert not at.error
    caption = texts(at.caption)
    assert f"A: **{VERSIONED}:1** · input 32x32 · 5 classes · map: conv2 (13x13), Grad-CAM" in (
        caption
    )
    assert not at.button(key="compare_start").disabled


@pytest.mark.parametrize(
    ("a", "typed", "message"),
    [
        (f"{NO_MAPS}:1", None, f"model {NO_MAPS}:1 computes no maps"),
        (
            "__other__",
            f"{VERSIONED}:9",
            f"the server has model '{VERSIONED}' but not its version 9; it serves versions 1, 2",
        ),
        ("__other__", "nothing-here", "the server has no Grad-CAM model 'nothing-here'; it hosts"),
        ("__other__", f"{VERSIONED}:x", "model version 'x'"),
    ],
)
def test_a_choice_that_cannot_be_compared_is_one_line_and_no_run(compare_page, a, typed, message):
    at = compare_mode(page())
    at.selectbox(key="compare_a").set_value(a).run()
    if typed is not None:
        started = time.monotonic()
        at.text_input(key="compare_a_typed").input(typed).run()
        assert time.monotonic() - started < 15  # at once, not after the client's retries
    no_exception(at)
    errors = texts(at.error)
    assert "These two cannot be compared" in errors and message in errors, errors
    assert "Traceback" not in errors
    assert at.button(key="compare_start").disabled


def test_models_sharing_no_class_name_are_compared_on_their_maps(compare_page):
    at = compare_mode(page())
    at.selectbox(key="compare_b").set_value(f"{OTHER_CLASSES}:1").run()
    no_exception(at)
    assert not at.error
    assert "share no class name: their maps are compared" in texts(at.warning)
    assert at.radio(key="compare_target").disabled
    assert not at.button(key="compare_start").disabled


def wait_for_the_comparison(at: AppTest, timeout: float = 180) -> AppTest:
    assert at.session_state["compare_run"].wait(timeout), "the comparison did not end"
    at.run()
    if "compare_result" in at.session_state:
        at.session_state["compare_result"].extras["strip"].result(timeout)
        at.run()
    no_exception(at)
    return at


def test_two_versions_compared_show_figures_timeline_worst_frames_and_inspector(compare_page):
    at = compare_mode(page())
    at.button(key="compare_start").click().run()
    no_exception(at)
    wait_for_the_comparison(at)
    result = at.session_state["compare_result"]
    summary = read_summary(result.summary_path)
    frames = read_comparisons(result.predictions)
    assert summary.frames == len(frames) == 30
    assert (summary.a, summary.b) == (f"{VERSIONED}:1", f"{VERSIONED}:2")
    figures = {m.label: (m.value, m.delta) for m in at.metric}
    assert figures["Top-1 agreement"][0] == f"{summary.agreement_rate:.0%}"
    correlation = summary.map_correlation
    assert figures["Map correlation"] == (
        f"{correlation.mean:.3f}",
        f"worst {correlation.worst:.3f} (frame {correlation.worst_frame})",
    )
    assert figures["Frames that differ"][0] == f"{summary.differing_frames} of 30"
    assert 0 < summary.hot_iou.mean < 1  # other weights look elsewhere, in part
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    worst = summary.worst_frames
    labels = [b.label for b in at.button if b.key and b.key.startswith("worst-")]
    assert len(labels) == len(worst) and labels[0].startswith(f"frame {worst[0]} · ")
    # a worst frame opens in the inspector: its measures, both maps and both predictions
    target = worst[1]
    at.button(key=f"worst-{target}").click().run()
    no_exception(at)
    assert at.slider(key=f"compare-inspect:{result.folder.name}").value == target
    by_frame = {f.frame: f for f in frames}
    caption = texts(at.caption)
    assert f"Frame {target} · " in caption
    assert f"distance {by_frame[target].agreement.distance:.3f}" in caption
    images = [c for image in at.get("image") for c in image.captions]
    assert f"Original · frame {target}" in images and "A | B" in images
    assert any(c.startswith(f"A: {VERSIONED}:1 · conv2") for c in images)
    assert any(c.startswith(f"B: {VERSIONED}:2 · conv2") for c in images)
    explained = [by_frame[target].a["explained_name"], by_frame[target].b["explained_name"]]
    assert f"A explained: **{explained[0]}**" in texts(at.caption)
    assert f"B explained: **{explained[1]}**" in texts(at.caption)
    downloads = {b.label for b in at.get("download_button")}
    assert downloads == {"Video (MP4)", "Comparison (JSONL)", "Summary (JSON)"}
    assert json.loads(result.summary_path.read_text())["frames"] == 30


def test_a_model_against_itself_agrees_fully(compare_page):
    at = compare_mode(page())
    at.selectbox(key="compare_b").set_value(f"{VERSIONED}:1").run()
    assert "every measure will show full agreement" in texts(at.info)
    at.button(key="compare_start").click().run()
    wait_for_the_comparison(at)
    summary = at.session_state["compare_result"].summary
    assert summary.agreement_rate == 1.0
    assert summary.map_correlation.worst == pytest.approx(1.0)
    assert summary.differing_frames == 0
    figures = {m.label: m.value for m in at.metric}
    assert figures["Top-1 agreement"] == "100%"


def test_stop_ends_the_comparison_and_drops_its_files(compare_page, monkeypatch):
    monkeypatch.setenv("GRADCAM_SAMPLE_SECONDS", "40")  # 600 frames: long enough to stop
    at = compare_mode(page())
    at.button(key="compare_start").click().run()
    run = at.session_state["compare_run"]
    deadline = time.monotonic() + 120
    while run.snapshot().done < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    assert "Both models · Frame" in texts(at.get("progress")) or run.snapshot().done >= 5
    assert "Live: your run is in progress" in texts(at.sidebar.success)  # the status line
    at.button(key="compare_stop").click().run()
    no_exception(at)
    assert "compare_run" not in at.session_state
    assert run.cancel.is_set()
    assert run.wait(5), run.snapshot()  # at once, not at the end of the 600 frames
    assert "The comparison was stopped." in texts(at.info)
    assert not run.folder.exists()
    assert "compare_result" not in at.session_state
    assert not at.button(key="compare_start").disabled
