"""The client's inference stream and retries with stand-in servers: order, memory, failures."""

from __future__ import annotations

import random
import threading
import time
import weakref

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from gradcam_client.errors import Cancelled, InvalidResponse, ModelNotFound, ServerUnavailable
from gradcam_client.jobs.file_stream import InferenceStream
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.media import Frame
from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_client.remote.server import (
    BatchResult,
    GradcamServer,
    RequestCancelled,
    RetryPolicy,
    check_finite,
)

INFO = ModelInfo("m", 4, 4, ("a", "b", "c"), (LayerInfo("l", 2, 2),), ("gradcam",), 8)


class EchoServer:
    """Answers each frame with its first pixel as the class, after a random delay."""

    def __init__(self, fail_at_call: int | None = None) -> None:
        self.calls = 0
        self.fail_at_call = fail_at_call
        self.lock = threading.Lock()

    def infer(self, frames, targets, cancel=None) -> BatchResult:
        with self.lock:
            self.calls += 1
            call = self.calls
        time.sleep(random.uniform(0, 0.01))
        if call == self.fail_at_call:
            raise ServerUnavailable("down")
        n = len(frames)
        return BatchResult(
            probabilities=np.full((n, 3), 1 / 3, np.float32),
            class_index=frames[:, 0, 0, 0].astype(np.int32),
            maps={"l": np.zeros((n, 1, 2, 2), np.float32)},
        )


def frames(count: int, shape=(8, 8, 3), alive: list | None = None):
    for i in range(count):
        image = np.full(shape, i % 256, np.uint8)
        if alive is not None:
            alive.append(weakref.ref(image))
        yield Frame(image, i, i * 10, i / 10)


def test_results_come_back_in_frame_order_each_exactly_once():
    stream = InferenceStream(EchoServer(), INFO, JobSettings(batch_size=3, max_in_flight=4))
    got = [(frame.index, out.class_index) for frame, out in stream.run(frames(50), -1)]
    assert got == [(i, i) for i in range(50)]


def test_huge_frames_shrink_the_pipeline_to_the_memory_budget():
    settings = JobSettings(batch_size=8, max_in_flight=4)
    small = InferenceStream(EchoServer(), INFO, settings, frame_bytes=640 * 480 * 3)
    assert (small.batch_size, small.max_in_flight, small.queue_size) == (8, 4, 32)
    shape = (1000, 1000, 3)
    budget = 10 * np.prod(shape)
    stream = InferenceStream(EchoServer(), INFO, settings, int(np.prod(shape)), budget)
    held = (stream.max_in_flight + 1) * stream.batch_size + stream.queue_size
    assert held <= 10 and stream.batch_size >= 1 and stream.max_in_flight >= 1

    alive: list[weakref.ref] = []
    most = 0
    for frame, _ in stream.run(frames(40, shape, alive), -1):
        time.sleep(0.002)  # a slow consumer lets the decoder run ahead as far as it may
        del frame
        most = max(most, sum(ref() is not None for ref in alive))
    assert most <= held + 2  # plus the frame being decoded and the one being composed


def test_a_failed_request_ends_the_stream_and_the_decoder():
    stream = InferenceStream(EchoServer(fail_at_call=3), INFO, JobSettings(batch_size=2))
    seen = []
    with pytest.raises(ServerUnavailable):
        for frame, _ in stream.run(frames(1000), -1):
            seen.append(frame.index)
    assert seen == list(range(len(seen))) and len(seen) <= 4
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name.startswith("infer")]


def test_a_failure_cancels_requests_that_are_still_retrying():
    """One batch fails for good; the others, stuck retrying, give up at once instead of
    holding the job until their own deadline."""
    cancelled = []

    class Stuck(EchoServer):
        def infer(self, frames, targets, cancel=None):
            with self.lock:
                self.calls += 1
                call = self.calls
            if call == 1:
                time.sleep(0.05)
                raise ServerUnavailable("down for good")
            assert cancel is not None
            if not cancel.wait(30):  # "retrying" until the job gives up
                raise AssertionError("never cancelled")
            cancelled.append(call)
            raise RequestCancelled("cancelled")

    stream = InferenceStream(Stuck(), INFO, JobSettings(batch_size=1, max_in_flight=4))
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match="down for good"):
        list(stream.run(frames(20), -1))
    assert time.monotonic() - started < 20  # far below the 30 s a stuck request would wait
    assert len(cancelled) == 3


def slow_frames(count: int, seconds: float):
    """`frames`, each after `seconds` of decoding."""
    for frame in frames(count):
        time.sleep(seconds)
        yield frame


@pytest.mark.parametrize("after", [0, 5])
def test_cancelling_ends_the_stream_at_once_before_or_between_frames(after):
    """Set before the first frame, or from elsewhere while the stream waits for frames (not
    from the consumer's own loop), the cancel ends the stream in `Cancelled` promptly."""
    cancel = threading.Event()
    stream = InferenceStream(EchoServer(), INFO, JobSettings(batch_size=2, max_in_flight=2))
    seen = []

    def cancel_after_frames() -> None:
        while len(seen) < after:
            time.sleep(0.001)
        cancel.set()

    threading.Thread(target=cancel_after_frames, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(Cancelled, match="stopped"):
        for frame, _ in stream.run(slow_frames(10_000, 0.002), -1, cancel=cancel):
            seen.append(frame.index)
    assert time.monotonic() - started < 5  # the 10,000 frames would take 20 s
    assert seen == list(range(len(seen))) and after <= len(seen) < 100
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("infer")]


class FakeClient:
    """A tritonclient stand-in whose calls fail with the given statuses, then succeed."""

    def __init__(self, statuses: list[str], models: list[str]) -> None:
        self.statuses = list(statuses)
        self.models = models
        self.calls = 0

    def get_model_config(self, name, model_version="", as_json=True):
        self.calls += 1
        if self.statuses:
            status = self.statuses.pop(0)
            raise InferenceServerException(f"{status} for {name}", status=f"StatusCode.{status}")
        return {"config": {"name": name, "max_batch_size": 8, "parameters": {
            k: {"string_value": v} for k, v in INFO.to_parameters().items()
        }}}  # fmt: skip

    def get_model_repository_index(self, as_json=True):
        return {"models": [{"name": m, "state": "READY"} for m in self.models]}

    def close(self) -> None:
        pass


def server_with(client: FakeClient, deadline: float = 5.0) -> GradcamServer:
    server = GradcamServer("localhost:1", "m", retry=RetryPolicy(deadline, first_delay_s=0.01))
    server._clients = [client]
    return server


def test_a_model_the_server_does_not_have_fails_at_once():
    client = FakeClient(["NOT_FOUND"] * 100, models=["other", "tiny"])
    started = time.monotonic()
    with pytest.raises(ModelNotFound, match="no Grad-CAM model 'm'; it hosts: other, tiny"):
        server_with(client, deadline=60).model_info()
    assert client.calls == 1 and time.monotonic() - started < 30  # not retried for 60 s


def test_a_model_that_is_loading_is_waited_for():
    client = FakeClient(["UNAVAILABLE", "NOT_FOUND", "NOT_FOUND"], models=["m"])
    assert server_with(client).model_info().class_names == INFO.class_names
    assert client.calls == 4


def test_each_outage_of_a_server_is_marked_first_once():
    """`RetryNotice.first` is set once per outage: again only after the server answered."""
    client = FakeClient(["UNAVAILABLE", "UNAVAILABLE"], models=["m"])
    server = server_with(client)
    notices = []
    server.on_retry = notices.append
    server.model_info()
    assert [n.first for n in notices] == [True, False]
    assert {n.url for n in notices} == {"localhost:1"}
    server._info, client.statuses = None, ["UNAVAILABLE"]  # answered, then down again
    server.model_info()
    assert [n.first for n in notices] == [True, False, True]


def test_retries_end_at_the_deadline_or_when_cancelled():
    client = FakeClient(["UNAVAILABLE"] * 1000, models=["m"])
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"no answer for 0.3 s \(localhost:1: UNAVAIL"):
        server_with(client, deadline=0.3).model_info()
    assert time.monotonic() - started < 20  # not the 1,000 failures one by one

    cancel = threading.Event()
    server = server_with(FakeClient(["UNAVAILABLE"] * 1000, models=["m"]), deadline=60)
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(RequestCancelled):
        server._with_retry("x", lambda c: c.get_model_config("m"), cancel=cancel)
    assert time.monotonic() - started < 30  # far below the 60 s deadline


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_an_answer_holding_nan_or_infinity_is_refused_as_the_servers_fault(bad):
    maps = np.ones((3, 1, 2, 2), np.float32)
    good = BatchResult(np.full((3, 3), 1 / 3, np.float32), np.zeros(3, np.int32), {"l": maps})
    check_finite(good, INFO)
    maps[2, 0, 0, 1] = bad
    with pytest.raises(InvalidResponse, match=r"gradcam map of layer 'l' holding NaN or infin"):
        check_finite(good, INFO)
    probabilities = np.full((3, 3), 1 / 3, np.float32)
    probabilities[1, 0] = bad
    broken = BatchResult(probabilities, np.zeros(3, np.int32), {"l": np.ones((3, 1, 2, 2))})
    with pytest.raises(InvalidResponse, match="probabilities for frame 1"):
        check_finite(broken, INFO)


def test_an_older_model_gets_raw_frames_when_the_wire_was_chosen_for_the_user():
    from gradcam_client.errors import GradcamError
    from gradcam_client.remote.wire import Wire

    assert not INFO.encoded_frames  # a model exported before encoded frames existed
    for wire, fallback in ((Wire("jpeg", automatic=True), True), (Wire("png"), False)):
        server = GradcamServer("gpu-host:1", "m", wire=wire)
        server._clients = [FakeClient([], models=["m"])]
        if fallback:
            assert server.model_info() == INFO and server.wire == Wire()
        else:
            with pytest.raises(GradcamError, match=r"takes raw frames only.*--wire raw"):
                server.model_info()
