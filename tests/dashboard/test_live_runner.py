"""A live run in the background (`BackgroundLive`) with a stand-in job: the hand-over to the
page, the last minute, stop, failures, the page's lease and the dashboard's limit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gradcam_client.errors import SourceError
from gradcam_client.live import LiveEvent, LiveFrame, LiveResult, LiveStats
from gradcam_client.live_source import SourceInfo
from gradcam_client.source_guard import SourceRefused
from gradcam_dashboard.live_runner import VISITOR_FAILURE, BackgroundLive, LiveSlots

SECRET = "rtsp://user:pw@cam1/live"


def stats(processed: int) -> LiveStats:
    return LiveStats(processed / 10, processed, processed, 0, 0, 0, 0.05, 0.08)


def frame(index: int) -> LiveFrame:
    picture = np.full((36, 64, 3), index % 256, np.uint8)
    record = {"frame": index, "time": float(index), "class_name": "tabby", "score": 0.5}
    return LiveFrame(index, index, 0, float(index), 0.05, picture, "rgb24", record, stats(index))


class Client:
    closed = False

    def close(self) -> None:
        self.closed = True


class StandInJob:
    """Sends `frames` frames one second of stream time apart, then waits to be stopped."""

    def __init__(self, on_frame, on_event, frames: int = 0, fails: Exception | None = None):
        self.on_frame, self.on_event = on_frame, on_event
        self.frames, self.fails = frames, fails
        self.server = Client()
        self.stopped = threading.Event()
        self.reason = ""
        self.sent = threading.Event()

    @property
    def stats(self) -> LiveStats:
        return stats(self.frames)

    def stop(self, reason: str = "stopped") -> None:
        self.reason = self.reason or reason
        self.stopped.set()

    def run(self) -> LiveResult:
        if self.fails is not None:
            raise self.fails
        self.on_event(LiveEvent("opened", f"reading {SECRET}: mpegts h264 64x36"))
        for index in range(self.frames):
            self.on_frame(frame(index))
        self.sent.set()
        self.stopped.wait(30)
        info = SourceInfo(SECRET, "mpegts", "h264", 64, 36, 25.0, True)
        return LiveResult(self.reason, stats(self.frames), info)


def background(
    folder: Path, slots: LiveSlots, lease_s: float = 120.0, visitor: bool = False, **job
) -> BackgroundLive:
    made: list[StandInJob] = []

    def make_job(on_frame, on_event, on_retry):
        made.append(StandInJob(on_frame, on_event, **job))
        return made[0]

    live = BackgroundLive(
        make_job,
        folder,
        slots,
        redact=lambda text: text.replace(SECRET, "door"),
        visitor=visitor,
        lease_s=lease_s,
    )
    live.made = made  # type: ignore[attr-defined]
    return live


def test_the_page_sees_the_newest_frame_and_the_last_minute(tmp_path):
    slots = LiveSlots(1)
    assert slots.acquire()
    live = background(tmp_path, slots, frames=100).start()
    job = wait_for_job(live)
    assert job.sent.wait(10)
    view = live.view()
    assert view.phase == "running" and view.frame is not None and view.frame.index == 99
    assert [r["time"] for r in view.records] == [float(t) for t in range(39, 100)]
    assert view.recent_fps() == pytest.approx(1.0)  # one frame a second of stream time
    assert view.events[0].message == "reading door: mpegts h264 64x36"  # no password shown
    rgb = live.rgb(view.frame)
    assert rgb.shape == (36, 64, 3) and rgb[0, 0, 0] == 99
    assert live.rgb(view.frame) is rgb  # converted once per frame
    live.stop()
    assert live.wait(10)
    view = live.view()
    assert view.phase == "ended" and view.result.ended == "stopped" and view.finished
    assert job.server.closed and slots.running == 0


def wait_for_job(live: BackgroundLive) -> StandInJob:
    deadline = time.monotonic() + 10
    while not live.made:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return live.made[0]  # type: ignore[attr-defined]


def test_a_source_that_cannot_be_opened_is_one_redacted_line(tmp_path):
    slots = LiveSlots(1)
    assert slots.acquire()
    error = SourceError("cannot open the source: connection refused", SECRET)
    live = background(tmp_path, slots, fails=error).start()
    assert live.wait(10)
    view = live.view()
    assert view.phase == "failed" and view.finished
    assert view.error == "door: cannot open the source: connection refused"
    assert slots.running == 0


@pytest.mark.parametrize(
    "error",
    [
        SourceRefused("10.0.0.5 resolves to 10.0.0.5, a private address", "http://10.0.0.5/"),
        SourceError("cannot open the source: connection refused", "http://cams.example:22/"),
        SourceError("cannot open the source: no stream arrived within 10 s", "http://x/"),
    ],
)
def test_a_visitors_source_fails_in_the_same_words_whatever_the_reason(tmp_path, caplog, error):
    slots = LiveSlots(1)
    assert slots.acquire()
    live = background(tmp_path, slots, visitor=True, fails=error).start()
    assert live.wait(10)
    view = live.view()
    assert view.phase == "failed" and view.error == VISITOR_FAILURE
    assert str(error) in caplog.text  # the operator's log has the detail


def test_a_stop_before_the_source_opened_ends_quietly(tmp_path):
    slots = LiveSlots(1)
    assert slots.acquire()
    live = background(tmp_path, slots)
    live.stop()
    live.start()
    assert live.wait(10)
    assert wait_for_job(live).reason == "stopped"
    assert live.view().phase == "ended" and live.view().error is None


def test_a_run_whose_page_went_away_stops_by_itself(tmp_path):
    slots = LiveSlots(1)
    assert slots.acquire()
    live = background(tmp_path, slots, lease_s=0.3, frames=3).start()
    assert live.wait(10), "the run outlived its page"
    assert wait_for_job(live).reason == "the page was closed"
    assert slots.running == 0


def test_the_dashboard_keeps_to_its_limit_of_live_runs(tmp_path):
    slots = LiveSlots(2)
    assert slots.acquire() and slots.acquire()
    assert not slots.acquire() and slots.running == 2
    live = background(tmp_path, slots, frames=1).start()
    live.stop()
    assert live.wait(10)
    assert slots.running == 1 and slots.acquire()


@pytest.mark.parametrize("ended_first", [True, False])
def test_a_discarded_run_leaves_no_files(tmp_path, ended_first):
    folder = tmp_path / "live-1"
    folder.mkdir()
    (folder / "live.mp4").write_bytes(b"...")
    slots = LiveSlots(1)
    assert slots.acquire()
    live = background(folder, slots, frames=2).start()
    assert wait_for_job(live).sent.wait(10)
    if ended_first:
        live.stop()
        assert live.wait(10) and folder.exists()
    live.discard()
    assert live.wait(10)
    assert not folder.exists()
