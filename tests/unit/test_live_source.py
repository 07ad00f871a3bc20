"""Live sources without a server: addresses, bad sources, real-time skipping, reopening,
and outputs that survive the process (real FFmpeg, real sockets on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import av
import pytest
from http_files import http_folder
from triton_server import free_port

from gradcam_client.errors import OutputError, SourceError
from gradcam_client.jobs.results import PredictionLog
from gradcam_client.live import source as live_source
from gradcam_client.live.output import restream_format, segment_path
from gradcam_client.live.sample_stream import SampleStream
from gradcam_client.live.source import (
    LiveSource,
    SourceEvent,
    is_camera,
    is_live_address,
    open_source,
)


@pytest.mark.parametrize(
    ("address", "live"),
    [
        ("rtsp://camera.local:554/stream1", True),
        ("udp://127.0.0.1:23456", True),
        ("srt://127.0.0.1:9000?mode=caller", True),
        ("https://example.org/live/index.m3u8", True),
        ("rtmp://server/live/key", True),
        ("/dev/video0", False),  # no such camera here: a path like any other
        ("/dev/null", False),  # a character device, but not a camera
        ("cat.mp4", False),
        ("/home/me/videos/cat.mp4", False),
        ("file:///home/me/cat.mp4", False),
        ("C:/videos/cat.mp4", False),
    ],
)
def test_stream_addresses_are_live_and_files_are_not(address, live):
    assert is_live_address(address) is live


def test_a_file_under_dev_is_a_file(tmp_path):
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    try:
        clip = folder / "clip.avi"
        clip.write_bytes(b"RIFF....AVI ")
        assert not is_live_address(str(clip)) and not is_camera(str(clip))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("path", "mode", "major", "camera"),
    [
        ("/dev/video0", stat.S_IFCHR, 81, True),
        ("/dev/v4l/by-id/usb-cam", stat.S_IFCHR, 81, True),  # V4L2's device number
        ("/dev/video7", stat.S_IFCHR, 240, True),  # a loopback camera's dynamic number
        ("/dev/ttyS0", stat.S_IFCHR, 4, False),
        ("/dev/video0", stat.S_IFREG, 0, False),
        ("/dev/sda", stat.S_IFBLK, 8, False),
    ],
)
def test_a_camera_is_a_v4l2_character_device(monkeypatch, path, mode, major, camera):
    def fake_stat(name: str) -> SimpleNamespace:
        assert name == path
        return SimpleNamespace(st_mode=mode | 0o660, st_rdev=os.makedev(major, 0))

    monkeypatch.setattr(live_source.os, "stat", fake_stat)
    assert is_camera(path) is camera
    assert is_live_address(path) is camera


@contextlib.contextmanager
def tcp_listener(behaviour: str) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts and then stays silent or sends garbage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()
    connections = []

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connections.append(connection)
            if behaviour == "garbage":
                with contextlib.suppress(OSError):
                    for _ in range(200):
                        connection.sendall(bytes(range(256)) * 16)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        for connection in connections:
            connection.close()
        server.close()


def audio_only_ts(path: Path) -> Path:
    """An MPEG-TS file holding one second of silence and no video."""
    import numpy as np

    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mp2", rate=48000, layout="mono")
        for start in range(0, 48000, 1152):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16")
            frame.sample_rate, frame.pts = 48000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


LISTEN_TIMEOUT_S = 30.0
"""How long a test waits for a source to listen (far more than it ever needs)."""


def open_fails(address: str, open_timeout: float = 1.5) -> tuple[str, float]:
    """The one-line message of opening `address`, and how long it took."""
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        open_source(address, open_timeout, 1.0)
    return str(caught.value), time.monotonic() - started


def test_a_refused_connection_is_one_line_without_waiting_for_the_time_out():
    port = free_port()
    message, seconds = open_fails(f"tcp://127.0.0.1:{port}", open_timeout=60)
    assert message == (
        f"tcp://127.0.0.1:{port}: cannot open the source: connection refused "
        "(nothing is listening there)"
    )
    assert seconds < 30  # far below the open time-out: it did not wait for it


def test_an_unknown_protocol_is_named():
    message, _ = open_fails("nosuch://127.0.0.1/stream")
    assert "protocol not found" in message and "\n" not in message


def test_a_udp_stream_that_never_starts_ends_at_the_open_timeout():
    message, seconds = open_fails(f"udp://127.0.0.1:{free_port()}")
    assert "no stream arrived within 1.5 s" in message
    assert 1.4 < seconds < 30  # it waited for the time-out, and no hang


def test_a_connection_that_sends_nothing_ends_at_the_open_timeout():
    with tcp_listener("silent") as address:
        message, seconds = open_fails(address)
    assert "no stream arrived within 1.5 s" in message
    assert seconds < 30


def test_a_source_sending_garbage_is_not_a_stream():
    with tcp_listener("garbage") as address:
        message, seconds = open_fails(address)
    assert "cannot open the source" in message
    assert seconds < 30


def test_http_errors_and_a_stream_without_video_are_named(tmp_path):
    audio_only_ts(tmp_path / "radio.ts")
    with http_folder(tmp_path) as (base, _):
        missing, _ = open_fails(f"{base}/missing.ts")
        audio, _ = open_fails(f"{base}/radio.ts")
    assert "404" in missing
    assert audio.startswith(f"{base}/radio.ts: has no video stream (found: audio (")


def udp_address() -> str:
    return f"udp://127.0.0.1:{free_port()}"


def open_then_send(source: LiveSource, seconds: float, fps: float = 25.0) -> SampleStream:
    """Open `source` (a UDP address), then send it a sample clip: no frame is sent before
    the source listens."""
    failures: list[BaseException] = []

    def open_source_() -> None:
        try:
            source.open()
        except BaseException as error:
            failures.append(error)

    opening = threading.Thread(target=open_source_)
    opening.start()
    assert source.listening.wait(LISTEN_TIMEOUT_S), "the source never listened"
    stream = SampleStream(source.address, fps=fps, size=(160, 96), seconds=seconds).start()
    opening.join(30)
    if failures:
        stream.stop()
        raise failures[0]
    return stream


def test_a_slow_consumer_gets_the_newest_frames_and_every_other_frame_is_counted():
    source = LiveSource(udp_address(), buffer=2, reconnect_deadline=0, read_timeout=1)
    with open_then_send(source, seconds=2.0) as stream:
        taken = []
        while not source.ended:
            taken += source.take(1, timeout=0.5)
            time.sleep(0.15)  # a consumer at about 6 frames/s, the source at 25
        sent = stream.wait(10)
    assert sent == 50 and source.received == sent, stream.error
    assert source.skipped == source.received - len(taken)
    assert source.skipped > 20
    indexes = [arrival.index for arrival in taken]
    assert indexes == sorted(indexes) and indexes[-1] == sent - 1  # the newest is kept


def test_without_real_time_every_frame_is_kept():
    source = LiveSource(
        udp_address(), buffer=2, reconnect_deadline=0, read_timeout=1, realtime=False
    )
    with open_then_send(source, seconds=1.0) as stream:
        taken = []
        while not source.ended:
            taken += source.take(1, timeout=0.5)
            time.sleep(0.05)
        sent = stream.wait(10)
    assert [arrival.index for arrival in taken] == list(range(sent))
    assert source.skipped == 0


def wait_for(condition, what: str, seconds: float = 60.0) -> None:
    """Wait until `condition()` holds (polling), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.05)


def test_a_source_that_stops_is_reopened_as_a_new_segment():
    events: list[SourceEvent] = []
    source = LiveSource(
        udp_address(), reconnect_deadline=20, read_timeout=1, on_event=events.append
    )

    def count(kind: str) -> int:
        return sum(event.kind == kind for event in events)

    taken = []
    with open_then_send(source, seconds=1.0) as first:
        while not count("lost"):
            taken += source.take(8, timeout=0.2)
        first.wait(10)
    wait_for(lambda: count("listening") == 2, "the source listening again")
    with SampleStream(source.address, fps=25, size=(160, 96), seconds=1.0) as second:
        while count("lost") < 2:  # the second sender is done and the source said so
            taken += source.take(8, timeout=0.2)
        second.wait(10)
    taken += source.take(100, timeout=0)
    source.close()
    kinds = [e.kind for e in events if e.kind != "listening"]
    assert kinds[:3] == ["lost", "reopened", "lost"]
    assert "reopening it for up to 20 s" in next(e for e in events if e.kind == "lost").message
    assert {arrival.segment for arrival in taken} == {0, 1}
    # an MPEG-TS demuxer cut off mid-stream keeps the last frame or two it was reading
    assert 0 <= first.sent + second.sent - source.received <= 4
    assert len(taken) + source.skipped == source.received


def test_a_source_that_stays_away_is_given_up_at_the_deadline():
    events: list[SourceEvent] = []
    source = LiveSource(
        udp_address(), reconnect_deadline=1.0, read_timeout=1, on_event=events.append
    )
    with open_then_send(source, seconds=1.5):
        started = time.monotonic()
        while not source.ended:
            source.take(8, timeout=0.2)
            assert time.monotonic() - started < 60  # no hang
    assert [e.kind for e in events if e.kind != "listening"] == ["lost", "gave-up"]
    assert "did not come back within 1 s" in events[-1].message


WRITE_FOREVER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from fractions import Fraction
    from gradcam_client.media.frames import VideoInfo
    from gradcam_client.media.writer import VideoWriter
    from gradcam_client.jobs.results import PredictionLog
    info = VideoInfo(Path(sys.argv[1]), 64, 48, 25.0, None, None, False, 0, "h264",
                     Fraction(1, 90000))
    writer = VideoWriter(sys.argv[1], info, fragmented=True, keyframe_seconds=0.2)
    log = PredictionLog(sys.argv[2], direct=True)
    for i in range(10**6):
        image = np.full((48, 64, 3), i % 255, np.uint8)
        writer.write(image, i * 3600)
        log.write({"frame": i})
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_fragmented_recording_and_its_predictions_survive_a_killed_process(tmp_path, signum):
    video, lines = tmp_path / "rec.mp4", tmp_path / "rec.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITE_FOREVER, str(video), str(lines)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    written = 0
    while written < 60:
        written = int(process.stdout.readline()) + 1
    process.send_signal(signum)
    process.wait(10)
    logged = len(lines.read_text().splitlines())
    with av.open(str(video)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert logged >= written
    # frames since the last key frame (0.2 s = 5 frames) may be lost, no more
    assert logged - 6 <= decoded <= logged


def test_a_direct_prediction_log_writes_each_line_at_once(tmp_path):
    log = PredictionLog(tmp_path / "p.jsonl", direct=True)
    log.write({"frame": 0})
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {"frame": 0}
    log.close()
    assert not (tmp_path / "p.jsonl.partial").exists()


def test_segments_are_numbered_from_the_second_on():
    assert segment_path("out/live.mp4", 0) == Path("out/live.mp4")
    assert segment_path("out/live.mp4", 2) == Path("out/live-3.mp4")


def test_restream_addresses_choose_their_container():
    assert restream_format("udp://127.0.0.1:5000") == "mpegts"
    assert restream_format("rtsp://server:8554/gradcam") == "rtsp"
    assert restream_format("rtmp://server/live/key") == "flv"
    with pytest.raises(OutputError, match="cannot re-stream to this kind of address"):
        restream_format("/tmp/file.ts")


def test_an_http_address_of_a_file_is_read_whole_not_in_real_time(tmp_path):
    from gradcam_client.media.samples import pan_zoom_frames, write_frames

    write_frames(tmp_path / "clip.mp4", pan_zoom_frames(30, (96, 64)), 30, (96, 64), 25)
    with http_folder(tmp_path) as (base, _):
        source = LiveSource(f"{base}/clip.mp4", buffer=2)
        info = source.open()
        taken = []
        while not source.ended:
            taken += source.take(1, timeout=0.5)
            time.sleep(0.01)
    assert not info.realtime and (info.width, info.height) == (96, 64)
    assert [arrival.index for arrival in taken] == list(range(30))
    # the stream's own times, also for the last frames the decoder hands over when flushed
    assert [arrival.time for arrival in taken] == pytest.approx([i / 25 for i in range(30)])
    assert source.skipped == 0


def test_a_live_hls_playlist_is_followed_until_it_ends(tmp_path):
    with (
        http_folder(tmp_path) as (base, _),
        SampleStream(str(tmp_path / "live.m3u8"), fps=25, size=(160, 96), seconds=4.0) as stream,
    ):
        playlist = tmp_path / "live.m3u8"
        deadline = time.monotonic() + 20
        while not playlist.exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        events: list[SourceEvent] = []
        source = LiveSource(
            f"{base}/live.m3u8", reconnect_deadline=5, read_timeout=3, on_event=events.append
        )
        info = source.open()
        taken = []
        while not source.ended:
            taken += source.take(8, timeout=0.2)
        sent = stream.wait(10)
    assert info.format == "hls" and info.realtime
    assert [e.kind for e in events] == ["lost", "ended"]  # over, not replayed
    assert "the stream is over" in events[-1].message
    assert {arrival.segment for arrival in taken} == {0}
    assert sent - 25 <= source.received <= sent  # from its first listed segment to the end
    assert len(taken) + source.skipped == source.received
