"""The page's Live mode under Streamlit's AppTest: a real Triton, a real stream on 127.0.0.1."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
from app_page import no_exception, page, texts
from http_files import http_folder
from media import write_clip
from streamlit.testing.v1 import AppTest
from triton_server import free_port

from gradcam_client.live.sample_stream import SampleStream
from gradcam_client.media import open_media
from gradcam_dashboard.live_view import OTHER

pytestmark = pytest.mark.integration


def live_page() -> AppTest:
    at = page().run()
    at.radio(key="source").set_value("live").run()
    no_exception(at)
    return at


def test_without_live_sources_the_mode_says_how_to_set_them_up(page_env):
    at = live_page()
    assert "--live-source" in texts(at.info) and "GRADCAM_LIVE_SOURCES" in texts(at.info)
    assert "live_source" not in at.session_state  # nothing to pick
    assert at.button(key="live_start").disabled


def test_visitors_pick_among_the_operators_sources_only(page_env, monkeypatch):
    monkeypatch.setenv(
        "GRADCAM_LIVE_SOURCES", "door=rtsp://user:secret@cam/1 lab=udp://127.0.0.1:9"
    )
    at = page()
    at.session_state["live_source"] = "rtsp://evil/stream"  # as a forged message would set it
    at.run()
    at.radio(key="source").set_value("live").run()
    no_exception(at)
    choice = at.selectbox(key="live_source")
    assert choice.options == ["door", "lab"] and choice.value == "door"
    assert not at.text_input  # no free-form address unless the operator allows it
    assert "secret" not in str(at)


@pytest.fixture
def stream_url() -> str:
    return f"udp://127.0.0.1:{free_port()}"


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.2)


def kinds(live) -> list[str]:
    return [event.kind for event in live.view("s1").events]


def test_a_live_run_shows_frames_stats_chart_and_events_then_stops_with_a_recording(
    served_page, monkeypatch, stream_url
):
    monkeypatch.setenv("GRADCAM_LIVE_SOURCES", f"sample={stream_url}")
    senders = [SampleStream(stream_url, fps=10, size=(320, 180)).start()]
    try:
        at = live_page()
        at.selectbox(key="model").set_value("tiny").run()
        at.button(key="live_start").click().run()
        no_exception(at)
        live = at.session_state["live_run"]

        def explained(count: int) -> bool:
            view = live.view("s1")
            assert not view.finished, view.error
            return view.stats is not None and view.stats.processed >= count

        wait_until(lambda: explained(15), 60, "no frames")
        at.run()
        no_exception(at)
        assert "Live: sample · tiny" in texts(at.success)
        assert at.get("image"), "no frame shown"
        metrics = {m.label: m.value for m in at.metric}
        assert int(metrics["Frames explained"]) >= 15
        assert metrics["Latency p50"].endswith(" ms") and "Skipped" in metrics
        assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
        assert "reading sample:" in texts(at.caption)  # the opened event, address hidden
        assert stream_url not in str(at)
        shown = live.view("s1").frame
        wait_until(lambda: live.view("s1").frame.index > shown.index, 30, "no newer frame")
        later = live.view("s1").frame
        assert not np.array_equal(live.rgb("s1", later), shown.rgb())
        # the source goes silent, then comes back: one line each
        senders[0].stop()
        wait_until(lambda: "lost" in kinds(live), 30, "no word of the lost source")
        at.run()
        assert "the source stopped sending" in texts(at.warning)
        senders.append(SampleStream(stream_url, fps=10, size=(320, 180)).start())
        wait_until(lambda: "reopened" in kinds(live), 40, "the source was not reopened")
        wait_until(lambda: live.view("s1").frame.segment == 1, 30, "no frames after reopening")
        at.run()
        no_exception(at)
        assert "the source is back after" in texts(at.caption)
        assert int({m.label: m.value for m in at.metric}["Reopened"]) == 1
        at.button(key="live_stop").click().run()
        assert live.wait(20), "the live run did not stop"
        at.run()
        no_exception(at)
    finally:
        for sender in senders:
            sender.stop()
    view = live.view("s1")
    assert view.result is not None and view.result.ended == "stopped"
    stats = view.result.stats
    assert stats.received == stats.processed + stats.skipped and stats.reconnects == 1
    assert "Ended (stopped):" in texts(at.info)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Recording 1 (MP4)", "Recording 2 (MP4)", "Predictions (JSONL)"]
    recordings = view.result.recordings
    assert sum(1 for path in recordings for _ in open_media(path)) == stats.processed
    assert not at.button(key="live_start").disabled
    # leaving the Live mode drops the run and its files
    at.radio(key="source").set_value("sample").run()
    no_exception(at)
    assert "live_run" not in at.session_state
    assert live.wait(5) and not any(path.exists() for path in recordings)


def test_a_source_nobody_listens_on_is_one_clear_line(served_page, monkeypatch):
    monkeypatch.setenv("GRADCAM_LIVE_SOURCES", f"gone=tcp://127.0.0.1:{free_port()}")
    at = live_page()
    at.selectbox(key="model").set_value("tiny").run()
    at.button(key="live_start").click().run()
    live = at.session_state["live_run"]
    assert live.wait(20)
    at.run()
    no_exception(at)
    message = texts(at.error)
    assert "The live stream failed:" in message and "connection refused" in message
    assert "gone:" in message and "127.0.0.1" not in message
    assert len(message.splitlines()) == 1


def test_a_silent_source_holds_the_only_slot_then_fails_in_one_line(served_page, monkeypatch):
    # a UDP address nothing sends to: the first run stays "opening" (its open time-out is 10 s)
    monkeypatch.setenv("GRADCAM_LIVE_SOURCES", f"quiet=udp://127.0.0.1:{free_port()}")
    monkeypatch.setenv("GRADCAM_MAX_LIVE_JOBS", "1")
    one, two = live_page(), live_page()
    for at in (one, two):
        at.selectbox(key="model").set_value("tiny").run()
    one.button(key="live_start").click().run()
    assert "Opening quiet · tiny..." in texts(one.info)
    assert one.button(key="live_start").disabled  # one live run per session
    two.button(key="live_start").click().run()
    no_exception(two)
    assert "already runs 1 live stream(s), the most it allows" in texts(two.warning)
    assert "live_run" not in two.session_state
    # a stream that never starts: one clear line once the open time-out is up
    assert one.session_state["live_run"].wait(30), "the silent source hung the run"
    one.run()
    no_exception(one)
    message = texts(one.error)
    assert "The live stream failed:" in message and "no stream arrived within 10 s" in message
    assert len(message.splitlines()) == 1
    two.button(key="live_start").click().run()  # the slot is free again
    live = two.session_state["live_run"]
    # the session ends (Streamlit drops its state): its live run stops
    del two.session_state["janitor"]
    gc.collect()
    assert live.wait(20), "the live run outlived its session"
    assert live.view("s1").phase == "ended" and live.view("s1").error is None


def start_typed(url: str) -> AppTest:
    """The Live mode with a visitor's typed address, started."""
    at = live_page()
    at.selectbox(key="model").set_value("tiny").run()
    at.selectbox(key="live_source").set_value(OTHER).run()
    at.text_input(key="live_url").input(url).run()
    at.button(key="live_start").click().run()
    no_exception(at)
    return at


def test_a_visitor_reaches_no_inside_host_unless_the_operator_allows_its_network(
    served_page, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("GRADCAM_ALLOW_ANY_SOURCE", "1")
    write_clip(tmp_path / "clip.mp4", n_frames=12, size=(96, 64))
    with http_folder(tmp_path) as (base, asked):
        at = start_typed(f"{base}/clip.mp4")
        live = at.session_state["live_run"]
        assert live.wait(30)
        at.run()
        no_exception(at)
        assert texts(at.error) == "**The live stream failed:** this source cannot be opened"
        assert asked == []  # refused before any connection
        assert "127.0.0.1, a loopback address" in caplog.text  # the operator learns why

        monkeypatch.setenv("GRADCAM_ALLOW_SOURCE_NETWORKS", "127.0.0.1/32")
        at = start_typed(f"{base}/clip.mp4")
        live = at.session_state["live_run"]
        assert live.wait(60)
        view = live.view("s1")
    assert view.result is not None, view.error
    assert view.result.ended == "source ended" and view.result.stats.processed == 12
    assert asked == ["/clip.mp4"]


def metric_values(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def test_a_visitor_adds_streams_removes_one_and_the_dashboard_counts_streams(
    served_page, monkeypatch
):
    # two real streams and one address nobody listens on; two streams a session, two in all
    cam, yard = (f"udp://127.0.0.1:{free_port()}" for _ in range(2))
    gone = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("GRADCAM_LIVE_SOURCES", f"cam={cam} yard={yard} gone={gone}")
    monkeypatch.setenv("GRADCAM_LIVE_STREAMS_PER_SESSION", "2")
    monkeypatch.setenv("GRADCAM_MAX_LIVE_JOBS", "2")
    senders = [SampleStream(url, fps=10, size=(320, 180)).start() for url in (cam, yard)]
    try:
        one, two = live_page(), live_page()
        for at in (one, two):
            at.selectbox(key="model").set_value("tiny").run()
        one.button(key="live_start").click().run()
        no_exception(one)
        live = one.session_state["live_run"]

        def explained(key: str, count: int) -> bool:
            view = live.view(key)
            assert not view.finished, view.error
            return view.stats is not None and view.stats.processed >= count

        wait_until(lambda: explained("s1", 5), 60, "no frames from cam")
        # a stream that fails among good ones: its one line in its own panel
        one.selectbox(key="live_source").set_value("gone").run()
        one.button(key="live_add").click().run()
        no_exception(one)
        wait_until(lambda: live.view("s2").finished, 20, "the failing stream did not end")
        one.selectbox(key="live_source").set_value("yard").run()
        assert not one.button(key="live_add").disabled  # the failed stream frees its place
        one.button(key="live_add").click().run()
        no_exception(one)
        assert one.button(key="live_add").disabled  # two streams run: the session is full
        wait_until(lambda: explained("s3", 5), 60, "no frames from yard")
        before = live.view("s1").stats.processed
        wait_until(lambda: explained("s1", before + 5), 30, "cam stopped when gone failed")
        one.run()
        no_exception(one)
        failed = texts(one.error)  # one line, the address hidden
        assert failed.startswith(
            "**The live stream failed:** gone: cannot open the source: connection refused"
        )
        assert len(failed.splitlines()) == 1 and "127.0.0.1" not in failed
        assert "Live: cam · tiny" in texts(one.success) and "Live: yard · tiny" in texts(
            one.success
        )
        captions = [c for image in one.get("image") for c in image.captions if "frame" in c]
        assert len(captions) == 2, captions  # each running stream's newest overlay and class
        assert all(" · class " in caption for caption in captions)
        assert len(metric_values(one, "Frames explained")) == 3
        p95 = metric_values(one, "Latency p95")  # the failed stream has no latency
        assert len(p95) == 2 and all(value.endswith(" ms") for value in p95)
        assert "2 of 2 streams running" in texts(one.caption)
        assert cam not in str(one) and yard not in str(one)
        # the dashboard's limit counts streams: another visitor waits
        two.selectbox(key="live_source").set_value("gone").run()
        two.button(key="live_start").click().run()
        no_exception(two)
        assert "already runs 2 live stream(s), the most it allows" in texts(two.warning)
        assert "live_run" not in two.session_state
        # removing yard frees a place; cam goes on
        one.button(key="live_remove_s3").click().run()
        wait_until(lambda: live.view("s3").finished, 20, "yard was not removed")
        assert not live.view("s1").finished
        two.button(key="live_start").click().run()
        no_exception(two)
        other = two.session_state["live_run"]
        assert other.wait(20) and other.view("s1").phase == "failed"
        one.run()
        no_exception(one)
        assert "Ended (removed):" in texts(one.info)
        labels = [b.label for b in one.get("download_button")]
        assert labels == ["Recording (MP4)", "Predictions (JSONL)"]  # yard's; cam runs on
        one.button(key="live_stop").click().run()
        assert live.wait(20), "the streams did not stop"
        one.run()
        no_exception(one)
    finally:
        for sender in senders:
            sender.stop()
    cam_view, yard_view = live.view("s1"), live.view("s3")
    assert cam_view.result.ended == "stopped" and yard_view.result.ended == "removed"
    for view in (cam_view, yard_view):
        stats = view.result.stats
        assert stats.processed > 0 and stats.received == stats.processed + stats.skipped
        assert sum(1 for path in view.result.recordings for _ in open_media(path)) == (
            stats.processed
        )
    assert not one.button(key="live_start").disabled
    assert len([b for b in one.get("download_button") if b.label == "Recording (MP4)"]) == 2
    one.button(key="live_forget_s2").click().run()  # closing the failed stream's panel
    no_exception(one)
    assert not texts(one.error) and [view.name for view in live.views()] == ["cam", "yard"]
