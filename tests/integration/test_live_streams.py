"""Several live sources in one client process against the real Triton: real MPEG-TS/UDP
streams on 127.0.0.1 (10 frames/s, 640x360), one server connection shared by all of them,
streams added and removed while it runs, and the bad cases (a source that never starts, one
lost mid-run, the server lost mid-run)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest
from client_runs import CliRun, read_jsonl
from served_models import EFFNET, TINY
from triton_server import free_port, running_triton

from gradcam_client.errors import ServerUnavailable, SourceError
from gradcam_client.live.job import LiveJob, LiveSettings
from gradcam_client.live.sample_stream import SampleStream
from gradcam_client.live.streams import LiveStreams
from gradcam_client.remote.server import FramesTurnedAway, GradcamServer, RetryPolicy

pytestmark = pytest.mark.integration

CATS = {"tiger cat", "Egyptian cat", "tabby", "Persian cat", "lynx", "Siamese cat"}
SIZE = (640, 360)
FPS = 10
WAIT_S = 60.0
"""How long a test waits for something that takes a second or two (a busy shared machine)."""


def udp_address() -> str:
    return f"udp://127.0.0.1:{free_port()}"


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def wait_until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)


def no_live_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("live")]


class Heard:
    """Every stream's events and when its frames were composed."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
        self.frames: dict[str, list[float]] = defaultdict(list)

    def event(self, name, event) -> None:
        self.events[name].append((time.monotonic(), event.kind, event.message))

    def frame(self, name, frame) -> None:
        self.frames[name].append(time.monotonic())

    def kinds(self, name: str) -> list[str]:
        return [kind for _, kind, _ in self.events[name]]

    def when(self, name: str, kind: str) -> float:
        return next(at for at, k, _ in self.events[name] if k == kind)


def test_streams_come_and_go_and_one_that_never_starts_fails_alone(triton, tmp_path):
    server = GradcamServer(triton.urls.grpc, EFFNET)
    heard = Heard()
    live = LiveSettings(open_timeout=15, read_timeout=1.5, reconnect_deadline=0)
    streams = LiveStreams(server, live=live, on_frame=heard.frame, on_event=heard.event)
    address = {name: udp_address() for name in ("a", "never", "b")}
    for name in ("a", "never"):
        streams.add(
            name, address[name], tmp_path / f"{name}.mp4", predictions=tmp_path / f"{name}.jsonl"
        )
    wait_until(lambda: "listening" in heard.kinds("a"), "stream a listens")
    with SampleStream(address["a"], fps=FPS, size=SIZE, seconds=6) as sender_a:
        wait_until(lambda: len(heard.frames["a"]) >= 5, "stream a explains frames")
        streams.add("b", address["b"], tmp_path / "b.mp4", predictions=tmp_path / "b.jsonl")
        wait_until(lambda: "listening" in heard.kinds("b"), "stream b listens")
        with SampleStream(address["b"], fps=FPS, size=SIZE, seconds=30):
            sender_a.wait(WAIT_S)
            wait_until(lambda: "stopped" in heard.kinds("a"), "stream a ends with its source")
            a_ended = heard.when("a", "stopped")
            wait_until(
                lambda: sum(at > a_ended for at in heard.frames["b"]) >= 10,
                "stream b goes on",
            )
            assert "a" not in streams.running() and "b" in streams.running()
            removed = streams.remove("b")
    outcomes = streams.wait(WAIT_S)
    assert set(outcomes) == {"a", "never"}  # b was removed

    never = outcomes["never"]
    assert isinstance(never.error, SourceError) and never.result is None
    assert str(never.error) == (
        f"{address['never']}: cannot open the source: no stream arrived within 15 s "
        "(is the source sending?)"
    )
    assert [kind for kind in heard.kinds("never") if kind != "listening"] == ["failed"]
    assert not (tmp_path / "never.mp4").exists()

    a = outcomes["a"].result
    b = removed.result
    assert a is not None and a.ended == "source ended"
    assert b is not None and b.ended == "removed (b)"
    for name, result in (("a", a), ("b", b)):
        records = read_jsonl(tmp_path / f"{name}.jsonl")
        assert result.recordings == [tmp_path / f"{name}.mp4"]
        assert frame_count(tmp_path / f"{name}.mp4") == len(records) == result.stats.processed
        assert result.stats.processed >= 5
        assert result.stats.received == result.stats.processed + result.stats.skipped
        assert sum(r["class_name"] in CATS for r in records) >= 0.9 * len(records)
    assert a.stats.received == sender_a.sent
    wait_until(no_live_threads, "every thread of the streams ends", timeout=10)


def test_the_command_line_runs_a_sources_file_and_names_the_stream_that_never_starts(
    triton, tmp_path
):
    names = {"door": udp_address(), "yard": udp_address(), "gate": udp_address()}
    sources = tmp_path / "sources.txt"
    sources.write_text("".join(f"{name} {url}  # camera\n" for name, url in names.items()))
    senders = [
        SampleStream(names[name], fps=FPS, size=SIZE, seconds=6) for name in ("door", "yard")
    ]
    client = subprocess.Popen(
        [
            sys.executable, "-m", "gradcam_client.cli", "--sources", str(sources),
            "-o", str(tmp_path / "live.mp4"), "--predictions", str(tmp_path / "p.jsonl"),
            "--url", triton.urls.grpc, "--model", TINY, "--open-timeout", "20",
            "--read-timeout", "1.5", "--reconnect-deadline", "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert client.stderr is not None
    said = [client.stderr.readline() for _ in names]  # each stream says it listens
    assert all(": listening on udp port" in line for line in said), said
    for sender in senders:
        sender.start()
    out, err = client.communicate(timeout=WAIT_S)
    for sender in senders:
        sender.wait(WAIT_S)
    result = CliRun(client.returncode, out, err)
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "error" in line]
    assert errors == [
        f"gradcam-video: error: gate: {names['gate']}: cannot open the source: no stream "
        "arrived within 20 s (is the source sending?)"
    ]
    assert "Traceback" not in result.err
    for name in ("door", "yard"):
        records = read_jsonl(tmp_path / f"p-{name}.jsonl")
        assert len(records) >= 5
        assert frame_count(tmp_path / f"live-{name}.mp4") == len(records)
        assert f"live {name}: source ended; {len(records)} frames explained" in result.out
    assert not (tmp_path / "live-gate.mp4").exists()
    assert "live, all streams: " in result.out


def test_a_lost_server_ends_every_stream_clearly_keeping_the_recordings(
    model_repository, tmp_path_factory, tmp_path
):
    logs = tmp_path_factory.mktemp("streams-triton")
    only_tiny = ["--model-control-mode=explicit", f"--load-model={TINY}"]
    with running_triton(model_repository, extra_args=only_tiny, log_dir=logs) as own:
        server = GradcamServer(own.urls.grpc, TINY, retry=RetryPolicy(deadline_s=1.5))
        heard = Heard()
        live = LiveSettings(read_timeout=5, reconnect_deadline=0)
        streams = LiveStreams(server, live=live, on_frame=heard.frame, on_event=heard.event)
        address = {name: udp_address() for name in ("s1", "s2")}
        for name, url in address.items():
            streams.add(name, url, tmp_path / f"{name}.mp4", predictions=tmp_path / f"{name}.jsonl")
        wait_until(
            lambda: all("listening" in heard.kinds(n) for n in address), "both streams listen"
        )
        senders = [SampleStream(url, fps=FPS, size=SIZE, seconds=30) for url in address.values()]
        for sender in senders:
            sender.start()
        try:
            wait_until(lambda: all(len(heard.frames[n]) >= 10 for n in address), "frames explained")
            own.kill()  # SIGKILL of Triton and its stubs: a crash
            started = time.monotonic()
            outcomes = streams.wait(WAIT_S)
            ended_after = time.monotonic() - started
        finally:
            for sender in senders:
                sender.stop()
    assert ended_after < 30  # the retry deadline, then the end: no hang
    for name in address:
        error = outcomes[name].error
        assert isinstance(error, ServerUnavailable), outcomes[name]
        message = outcomes[name].message
        assert message.startswith("inference on 1 frame(s): no answer for 1.5 s")
        records = read_jsonl(tmp_path / f"{name}.jsonl")
        assert f"{len(records)} frames were explained" in message
        assert f"recorded in {tmp_path / f'{name}.mp4'}" in message
        assert len(records) >= 10
        assert len(records) - 10 <= frame_count(tmp_path / f"{name}.mp4") <= len(records)
        assert heard.kinds(name)[-1] == "failed"
    wait_until(no_live_threads, "every thread of the streams ends", timeout=10)


def test_a_request_that_waits_past_its_queue_time_out_is_turned_away_not_retried(triton):
    server = GradcamServer(triton.urls.grpc, TINY)
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    targets = np.full(2, -1, np.int32)
    assert server.infer(frames, targets, queue_timeout=5.0).class_index.shape == (2,)
    # The model's batcher holds a request 20 ms for others to join it: 1 µs always expires.
    with pytest.raises(FramesTurnedAway, match="UNAVAILABLE: Request timeout expired"):
        server.infer(frames, targets, queue_timeout=1e-6)
    assert server.retried.queue_full == 0 and server.retried.unavailable == 0


def test_frames_the_server_turns_away_count_as_skipped(triton, tmp_path):
    server = GradcamServer(triton.urls.grpc, TINY)
    heard = Heard()
    job = LiveJob(
        server,
        udp_address(),
        predictions=tmp_path / "p.jsonl",
        live=LiveSettings(reconnect_deadline=0, read_timeout=1.5, queue_timeout=1e-6),
        on_event=lambda event: heard.event("job", event),
    )
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", job.run()))
    thread.start()
    wait_until(lambda: "listening" in heard.kinds("job"), "the job listens")
    with SampleStream(job.address, fps=FPS, size=SIZE, seconds=2) as sender:
        sent = sender.wait(WAIT_S)
    thread.join(WAIT_S)
    stats = outcome["result"].stats
    assert stats.received == sent == 20
    assert stats.processed == 0 and stats.skipped == sent
    assert stats.turned_away > 0
    assert "turned away by the busy server" in stats.summary()
