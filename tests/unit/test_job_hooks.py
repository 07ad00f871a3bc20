"""What a page needs from a job: retry notices, a cancel event, first-pass progress, the
video made before a failure, and the label's corner."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from media import write_clip
from test_pipeline_stream import INFO, FakeClient, server_with

from gradcam_client.errors import Cancelled, ServerUnavailable
from gradcam_client.jobs.file_job import partial_video_path, process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.media import open_media
from gradcam_client.remote.server import BatchResult, RetryNotice
from gradcam_client.render.compose import CompositionSettings, compose_frame


class StandInServer:
    """Answers like a Grad-CAM server; after `fail_after` frames every request fails."""

    def __init__(self, fail_after: int | None = None, delay_s: float = 0.0) -> None:
        self.fail_after = fail_after
        self.delay_s = delay_s
        self.frames = 0
        self.lock = threading.Lock()

    def model_info(self):
        return INFO

    def infer(self, frames, targets, cancel=None) -> BatchResult:
        time.sleep(self.delay_s)
        with self.lock:
            if self.fail_after is not None and self.frames >= self.fail_after:
                if cancel is not None and cancel.wait(30):  # "retrying" until cancelled
                    raise ServerUnavailable("cancelled while retrying")
                raise ServerUnavailable("no answer")
            self.frames += len(frames)
        n = len(frames)
        probabilities = np.tile(np.array([0.2, 0.7, 0.1], np.float32), (n, 1))
        maps = np.zeros((n, 1, 2, 2), np.float32)
        maps[:, 0, 0, 0] = 1.0
        return BatchResult(probabilities, np.ones(n, np.int32), {"l": maps})


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "in.mp4", n_frames=40, size=(96, 64), fps=10)


def test_every_retried_failure_is_told_before_the_retry():
    notices: list[RetryNotice] = []
    server = server_with(FakeClient(["UNAVAILABLE", "UNAVAILABLE"], models=["m"]), deadline=5)
    server.on_retry = notices.append
    started = time.monotonic()
    server.model_info()
    assert len(notices) == 2
    assert "UNAVAILABLE" in notices[0].problem and not notices[0].queue_full
    assert started + 4.5 < notices[0].give_up_at < time.monotonic() + 5


def test_the_first_pass_reports_progress_and_the_main_pass_follows(clip, tmp_path):
    first: list[tuple[int, int | None]] = []
    main: list[int] = []
    result = process_media(
        StandInServer(),
        clip,
        tmp_path / "out.mp4",
        JobSettings(target="video", batch_size=4),
        progress=lambda done, total: main.append(done),
        first_pass_progress=lambda done, total: first.append((done, total)),
    )
    assert [done for done, _ in first] == list(range(1, 41)) and first[-1][1] == 40
    assert main == list(range(1, 41)) and result.frames == 40


def test_whole_clip_normalisation_reports_its_first_pass(clip, tmp_path):
    first: list[int] = []
    main: list[int] = []
    process_media(
        StandInServer(),
        clip,
        tmp_path / "out.mp4",
        JobSettings(scope="clip", batch_size=4),
        progress=lambda done, total: main.append(done),
        first_pass_progress=lambda done, total: first.append(done),
    )
    assert first == list(range(1, 41)) and main == list(range(1, 41))


@pytest.mark.parametrize("target", ["video", "predicted"])
def test_a_cancel_event_stops_the_job_even_while_requests_are_retried(clip, tmp_path, target):
    cancel = threading.Event()
    output = tmp_path / "out.mp4"
    server = StandInServer(fail_after=8)
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled, match="stopped"):
        process_media(server, clip, output, JobSettings(target=target, batch_size=4), cancel=cancel)
    assert time.monotonic() - started < 20  # not the 30 s a stuck request would wait
    assert not output.exists() and not partial_video_path(output).exists()


def test_a_failure_keeps_the_video_made_so_far(clip, tmp_path):
    output = tmp_path / "out.mp4"
    predictions = tmp_path / "p.jsonl"
    with pytest.raises(ServerUnavailable) as failure:
        process_media(
            StandInServer(fail_after=16),
            clip,
            output,
            JobSettings(batch_size=4, max_in_flight=1),
            predictions=predictions,
            keep_partial=True,
        )
    notes = " ".join(failure.value.__notes__)
    partial = partial_video_path(output)
    assert partial.name == "out.partial.mp4" and f"the video so far is in {partial}" in notes
    assert "16 of 40 frames were done" in notes
    assert not output.exists()
    assert sum(1 for _ in open_media(partial)) == 16
    assert len(predictions.with_name("p.jsonl.partial").read_text().splitlines()) == 16


def test_without_keep_partial_nothing_but_predictions_is_left(clip, tmp_path):
    output = tmp_path / "out.mp4"
    with pytest.raises(ServerUnavailable):
        process_media(StandInServer(fail_after=16), clip, output, JobSettings(batch_size=4))
    assert not output.exists() and not partial_video_path(output).exists()
    assert not list(tmp_path.glob(".out*"))


def test_the_label_goes_to_the_corner_asked_for():
    frame = np.full((120, 200, 3), 128, np.uint8)
    heat = np.zeros((7, 7), np.float32)
    plain = compose_frame(frame, heat, CompositionSettings(show_titles=False, alpha=0.0))

    def changed(corner: str) -> tuple[bool, bool]:
        settings = CompositionSettings(show_titles=False, alpha=0.0, label_corner=corner)
        out = compose_frame(frame, heat, settings, label="tabby 0.91")
        diff = np.abs(out.astype(int) - plain).sum(axis=2) > 0
        return bool(diff[:40].any()), bool(diff[-40:].any())

    assert changed("top-right") == (True, False)
    assert changed("bottom-left") == (False, True)
    with pytest.raises(ValueError, match="label corner"):
        CompositionSettings(label_corner="middle")
