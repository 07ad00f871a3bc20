"""A session's live streams in the background (`LiveSession`) with stand-in streams: the
hand-over to the page per stream, add and remove while others run, the session's and the
dashboard's limits (which count streams), a failing stream among good ones, stop, the page's
lease and the files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gradcam_client.errors import GradcamError, SourceError
from gradcam_client.live.job import LiveEvent, LiveFrame, LiveResult, LiveStats
from gradcam_client.live.source import SourceInfo
from gradcam_client.live.source_guard import SourceGuard, SourceRefused
from gradcam_client.live.streams import StreamOutcome
from gradcam_client.remote.server import RetryNotice
from gradcam_dashboard.config import LiveSourceChoice
from gradcam_dashboard.live_runner import VISITOR_FAILURE, LiveSession, LiveSlots

SECRET = "rtsp://user:pw@cam1/live"
DOOR = LiveSourceChoice("door", SECRET)
YARD = LiveSourceChoice("yard", "rtsp://cam2/live")
GATE = LiveSourceChoice("gate", "rtsp://cam3/live")
GUARD = SourceGuard()


def stats(processed: int) -> LiveStats:
    return LiveStats(processed / 10, processed, processed, 0, 0, 0, 0.05, 0.08)


def frame(index: int, shade: int = 0) -> LiveFrame:
    picture = np.full((36, 64, 3), (shade + index) % 256, np.uint8)
    record = {"frame": index, "time": float(index), "class_name": "tabby", "score": 0.5}
    return LiveFrame(index, index, 0, float(index), 0.05, picture, "rgb24", record, stats(index))


class Client:
    closed = False

    def close(self) -> None:
        self.closed = True


class StandInJob:
    """Sends `frames` frames one second of stream time apart, then waits to be stopped."""

    def __init__(
        self, name, address, on_frame, on_event, frames=0, fails=None, shade=0, opening=False
    ):
        self.name, self.address = name, address
        self.on_frame, self.on_event = on_frame, on_event
        self.frames, self.fails, self.shade = frames, fails, shade
        self.opening = opening  # still opening its source until stopped, which then fails
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
        if self.opening:
            self.stopped.wait(30)
            raise SourceError("cannot open the source: stopped while opening", self.address)
        if self.fails is not None:
            raise self.fails
        self.on_event(self.name, LiveEvent("opened", f"reading {self.address}: mpegts h264"))
        for index in range(self.frames):
            self.on_frame(self.name, frame(index, self.shade))
        self.sent.set()
        self.stopped.wait(30)
        info = SourceInfo(self.address, "mpegts", "h264", 64, 36, 25.0, True)
        return LiveResult(self.reason, stats(self.frames), info)


class StandInStreams:
    """What a session uses of `LiveStreams`: `add` starts a job on its own thread, whose end
    is reported through `on_end`. `plans` says, per address, what its job does."""

    def __init__(self, on_frame, on_event, on_end, on_retry, plans):
        self.on_frame, self.on_event, self.on_end = on_frame, on_event, on_end
        self.on_retry = on_retry
        self.plans = plans
        self.server = Client()
        self.jobs: dict[str, StandInJob] = {}
        self.guards: dict[str, SourceGuard | None] = {}

    def add(self, name, source, output, *, predictions, guard):
        assert Path(output).parent.is_dir() and Path(predictions).parent == Path(output).parent
        job = StandInJob(name, source, self.on_frame, self.on_event, **self.plans.get(source, {}))
        self.jobs[name], self.guards[name] = job, guard
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job

    def _run(self, job: StandInJob) -> None:
        try:
            outcome = StreamOutcome(job.name, job.address, result=job.run())
        except GradcamError as error:
            outcome = StreamOutcome(job.name, job.address, error=error)
            self.on_event(job.name, LiveEvent("failed", outcome.message))  # as LiveStreams does
        self.on_end(job.name, outcome)


def session(
    folder: Path, slots: LiveSlots, capacity: int = 3, lease_s: float = 120.0, **plans
) -> LiveSession:
    def make_streams(on_frame, on_event, on_end, on_retry):
        return StandInStreams(on_frame, on_event, on_end, on_retry, plans)

    return LiveSession(make_streams, folder, slots, capacity=capacity, guard=GUARD, lease_s=lease_s)


def wait_until(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def by_name(live: LiveSession) -> dict:
    return {view.name: view for view in live.views()}


def test_streams_are_added_and_removed_while_the_others_go_on(tmp_path):
    slots = LiveSlots(5)
    live = session(
        tmp_path,
        slots,
        **{SECRET: {"frames": 100}, YARD.url: {"frames": 7, "shade": 100}},
    )
    assert live.add(DOOR) is None
    jobs = live.engine.jobs  # type: ignore[attr-defined]
    wait_until(lambda: "s1" in jobs and jobs["s1"].sent.is_set(), "the first stream ran")
    assert live.add(YARD) is None
    wait_until(lambda: "s2" in jobs and jobs["s2"].sent.is_set(), "the second stream ran")
    assert slots.running == 2 and live.running() == ["door", "yard"]
    door, yard = by_name(live)["door"], by_name(live)["yard"]
    assert door.phase == yard.phase == "running"
    assert door.frame.index == 99 and yard.frame.index == 6
    assert [r["time"] for r in door.records] == [float(t) for t in range(39, 100)]
    assert door.recent_fps() == pytest.approx(1.0)  # one frame a second of stream time
    assert door.events[0].message == "reading door: mpegts h264"  # no password shown
    assert (tmp_path / "s1").is_dir() and door.folder == tmp_path / "s1"
    rgb = live.rgb("s2", yard.frame)
    assert rgb[0, 0, 0] == 106 and live.rgb("s2", yard.frame) is rgb  # converted once
    # removing one: it ends with its own reason, the other goes on
    live.remove("s1")
    wait_until(lambda: by_name(live)["door"].finished, "the removed stream did not end")
    door = by_name(live)["door"]
    assert door.phase == "ended" and door.result.ended == "removed"
    assert not jobs["s2"].stopped.is_set() and not live.finished
    assert slots.running == 1 and live.running() == ["yard"]
    # the same source may come back as a new stream
    assert live.add(DOOR) is None
    wait_until(lambda: "s3" in jobs, "the source did not come back")
    assert live.running() == ["yard", "door"] and slots.running == 2
    live.stop()
    assert live.wait(10) and live.finished
    assert all(view.result.ended == "stopped" for view in live.views()[1:])
    assert live.engine.server.closed and slots.running == 0  # type: ignore[attr-defined]
    assert live.add(GATE) == "these live streams have ended; start again"


def test_the_session_and_the_dashboard_keep_to_their_limits_in_streams(tmp_path):
    slots = LiveSlots(3)
    first = session(tmp_path / "a", slots, capacity=2)
    assert first.add(DOOR) is None
    assert first.add(DOOR) == "door is running already"
    assert first.add(YARD) is None
    assert first.add(GATE) == "2 stream(s) run here at most; remove one first"
    second = session(tmp_path / "b", slots, capacity=2)
    assert second.add(GATE) is None
    assert slots.running == 3
    refused = second.add(YARD)
    assert refused is not None and "already runs 3 live stream(s), the most it allows" in refused
    assert [view.name for view in second.views()] == ["gate"]  # nothing left of the refusal
    first.remove("s1")
    wait_until(lambda: slots.running == 2, "the removed stream kept its slot")
    assert second.add(YARD) is None and slots.running == 3
    for live in (first, second):
        live.stop()
        assert live.wait(10)
    assert slots.running == 0


def test_a_failing_stream_shows_its_one_line_and_the_others_go_on(tmp_path):
    slots = LiveSlots(3)
    error = SourceError("cannot open the source: connection refused", SECRET)
    live = session(tmp_path, slots, **{SECRET: {"fails": error}, YARD.url: {"frames": 3}})
    assert live.add(YARD) is None and live.add(DOOR) is None
    wait_until(lambda: by_name(live)["door"].finished, "the failing stream did not end")
    door, yard = by_name(live)["door"], by_name(live)["yard"]
    assert (
        door.phase == "failed" and door.error == "door: cannot open the source: connection refused"
    )
    assert door.result is None and not [e for e in door.events if e.kind == "failed"]
    assert yard.phase == "running" and not live.finished and slots.running == 1
    live.stop()
    assert live.wait(10) and by_name(live)["yard"].result.ended == "stopped"


@pytest.mark.parametrize(
    "error",
    [
        SourceRefused("10.0.0.5 resolves to 10.0.0.5, a private address", "http://10.0.0.5/"),
        SourceError("cannot open the source: no stream arrived within 10 s", "http://x/"),
    ],
)
def test_a_visitors_source_fails_in_the_same_words_and_alone_is_guarded(tmp_path, caplog, error):
    slots = LiveSlots(2)
    typed = LiveSourceChoice("http://x/", "http://x/", visitor=True)
    live = session(tmp_path, slots, **{"http://x/": {"fails": error}})
    assert live.add(DOOR) is None and live.add(typed) is None
    wait_until(lambda: by_name(live)["http://x/"].finished, "the visitor's stream did not end")
    assert by_name(live)["http://x/"].error == VISITOR_FAILURE
    assert str(error) in caplog.text  # the operator's log has the detail
    assert live.engine.guards == {"s1": None, "s2": GUARD}  # type: ignore[attr-defined]
    live.stop()
    assert live.wait(10)


def test_a_server_outage_is_said_in_every_running_stream(tmp_path):
    live = session(tmp_path, LiveSlots(2), **{SECRET: {"frames": 1}, YARD.url: {"frames": 1}})
    assert live.add(DOOR) is None and live.add(YARD) is None
    notice = RetryNotice("infer", "UNAVAILABLE: connection refused", False, time.monotonic())
    for _ in range(3):  # once within a few seconds
        live.engine.on_retry(notice)  # type: ignore[attr-defined]
    for view in live.views():
        lines = [e.message for e in view.events if e.kind == "server"]
        assert lines == ["the server is not answering (UNAVAILABLE: connection refused); retrying"]
    live.stop()
    assert live.wait(10)


def test_a_stream_removed_before_it_opened_ends_quietly(tmp_path):
    live = session(tmp_path, LiveSlots(1), **{SECRET: {"opening": True}})
    live.remove("s1")  # nothing yet: no effect
    assert live.add(DOOR) is None
    assert live.view("s1").phase == "starting"
    live.remove("s1")
    assert live.view("s1").phase == "stopping"
    assert live.wait(10)
    door = live.view("s1")
    assert door.phase == "ended" and door.error is None and door.result is None


def test_streams_whose_page_went_away_stop_by_themselves(tmp_path):
    slots = LiveSlots(2)
    live = session(tmp_path, slots, lease_s=0.3, **{SECRET: {"frames": 3}})
    assert live.add(DOOR) is None and live.add(YARD) is None
    assert live.wait(10), "the streams outlived their page"
    assert [view.result.ended for view in live.views()] == ["the page was closed"] * 2
    assert slots.running == 0


@pytest.mark.parametrize("ended_first", [True, False])
def test_a_discarded_session_leaves_no_files(tmp_path, ended_first):
    folder = tmp_path / "live-1"
    folder.mkdir()
    live = session(folder, LiveSlots(2), **{SECRET: {"frames": 2}})
    assert live.add(DOOR) is None and live.add(YARD) is None
    assert (folder / "s1").is_dir() and (folder / "s2").is_dir()
    if ended_first:
        live.stop()
        assert live.wait(10) and folder.exists()
    live.discard()
    assert live.wait(10)
    assert not folder.exists()


def test_an_ended_stream_can_be_closed_with_its_files(tmp_path):
    live = session(tmp_path, LiveSlots(2))
    assert live.add(DOOR) is None and live.add(YARD) is None
    live.forget("s1")  # still running: kept
    assert len(live.views()) == 2
    live.remove("s1")
    wait_until(lambda: live.view("s1").finished, "the removed stream did not end")
    live.forget("s1")
    assert live.view("s1") is None and not (tmp_path / "s1").exists()
    assert [view.name for view in live.views()] == ["yard"]
    live.stop()
    assert live.wait(10)


def test_a_session_refused_its_first_stream_holds_nothing(tmp_path):
    slots = LiveSlots(1)
    assert slots.acquire()
    live = session(tmp_path / "live-2", slots)
    assert "already runs 1 live stream(s)" in live.add(DOOR)
    live.discard()
    assert live.wait(1) and live.engine.server.closed  # type: ignore[attr-defined]
    assert not (tmp_path / "live-2").exists() and slots.running == 1
