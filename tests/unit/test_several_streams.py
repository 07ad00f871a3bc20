"""Several live streams in one process: the fair share of requests, stream names, per-stream
outputs and the command line's refusals (nothing here touches a server)."""

from __future__ import annotations

import threading
import time

import pytest
from client_runs import run_cli

from gradcam_client.errors import InputError
from gradcam_client.live.cli import per_stream, read_sources, restream_for, streams_from
from gradcam_client.live.share import FairShare
from gradcam_client.live.streams import check_name

NOWHERE = "127.0.0.1:1"


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_freed_slots_go_to_the_streams_in_the_order_they_asked():
    share = FairShare(1)
    never = threading.Event()
    granted: list[str] = []

    def ask(name: str) -> None:
        waiting = share.waiting
        threading.Thread(
            target=lambda: share.acquire(never) and granted.append(name), daemon=True
        ).start()
        wait_until(lambda: share.waiting == waiting + 1)

    assert share.acquire(never)  # stream a holds the only slot
    ask("b")
    ask("c")
    ask("a")  # a, served already, asks again: behind b and c
    for expected in (["b"], ["b", "c"], ["b", "c", "a"]):
        share.release()
        wait_until(lambda e=expected: granted == e)
    assert share.in_use == 1 and share.granted == 4


def test_a_fast_stream_cannot_crowd_a_slow_one_out():
    share = FairShare(2)
    counts = {"fast": 0, "slow": 0}
    stop = threading.Event()

    def stream(name: str, hold: float) -> None:
        while not stop.is_set():
            if share.acquire(stop):
                counts[name] += 1
                time.sleep(hold)
                share.release()

    threads = [
        threading.Thread(target=stream, args=("fast", 0.001), daemon=True),
        threading.Thread(target=stream, args=("slow", 0.001), daemon=True),
        threading.Thread(target=stream, args=("fast", 0.001), daemon=True),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(5)
    # "fast" runs two dispatchers, "slow" one: turns go by place in line, so slow gets a third.
    assert counts["slow"] >= 0.25 * (counts["fast"] + counts["slow"]) > 0


def test_a_cancelled_wait_leaves_the_line_and_gives_no_slot():
    share = FairShare(1)
    never = threading.Event()
    assert share.acquire(never)
    cancel = threading.Event()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(share.acquire(cancel)))
    waiter.start()
    time.sleep(0.1)
    cancel.set()
    waiter.join(5)
    assert outcome == [False] and share.in_use == 1 and not share.waiting
    share.release()
    assert share.acquire(never) and share.in_use == 1


def test_a_share_needs_a_slot():
    with pytest.raises(ValueError, match="at least 1"):
        FairShare(0)


@pytest.mark.parametrize("name", ["door", "cam-2", "s1", "A.b_c"])
def test_stream_names_that_fit_in_file_names_are_taken(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 65, "../up"])
def test_stream_names_that_do_not_fit_in_file_names_are_refused(name):
    with pytest.raises(InputError, match="a stream name is 1-64 letters"):
        check_name(name)


def test_a_sources_file_gives_names_and_addresses_and_skips_comments(tmp_path):
    path = tmp_path / "sources.txt"
    path.write_text("# cameras\ndoor udp://127.0.0.1:5000\n\n  yard rtsp://yard/s1  # back\n")
    assert read_sources(str(path)) == [("door", "udp://127.0.0.1:5000"), ("yard", "rtsp://yard/s1")]


def test_a_bad_sources_file_names_its_line(tmp_path):
    path = tmp_path / "sources.txt"
    path.write_text("door udp://127.0.0.1:5000\nyard\n")
    with pytest.raises(InputError, match=r"line 2: write NAME ADDRESS, got 'yard'"):
        read_sources(str(path))
    path.write_text("# nothing\n")
    with pytest.raises(InputError, match="lists no source"):
        read_sources(str(path))
    with pytest.raises(InputError, match="cannot read the sources file"):
        read_sources(str(tmp_path / "absent.txt"))


def test_streams_on_the_command_line_are_numbered_and_joined_by_the_file(tmp_path):
    path = tmp_path / "sources.txt"
    path.write_text("door udp://127.0.0.1:5002\n")
    assert streams_from(["udp://127.0.0.1:5000", "udp://127.0.0.1:5001"], str(path)) == [
        ("s1", "udp://127.0.0.1:5000"),
        ("s2", "udp://127.0.0.1:5001"),
        ("door", "udp://127.0.0.1:5002"),
    ]


def test_twice_the_same_name_or_a_file_among_streams_is_refused(tmp_path):
    path = tmp_path / "sources.txt"
    path.write_text("s1 udp://127.0.0.1:5002\n")
    with pytest.raises(InputError, match="two streams are named 's1'"):
        streams_from(["udp://127.0.0.1:5000"], str(path))
    with pytest.raises(InputError, match="stream s2: several sources are live sources only"):
        streams_from(["udp://127.0.0.1:5000", "clip.mp4"], None)


def test_each_stream_has_its_own_outputs():
    assert str(per_stream("out/live.mp4", "door")) == "out/live-door.mp4"
    assert str(per_stream("p.jsonl", "s2")) == "p-s2.jsonl"
    assert per_stream(None, "door") is None
    assert restream_for("udp://127.0.0.1:5000", 2, "yard") == "udp://127.0.0.1:5002"
    assert restream_for("tcp://[::1]:6000?listen=1", 1, "x") == "tcp://[::1]:6001?listen=1"
    assert restream_for("rtsp://host:8554/gradcam", 0, "door") == "rtsp://host:8554/gradcam-door"
    assert restream_for(None, 0, "door") is None


def test_several_sources_without_any_output_are_refused_in_one_line(capsys):
    run = run_cli(capsys, "udp://127.0.0.1:23456", "udp://127.0.0.1:23457", "--url", NOWHERE)
    assert run.code == 1
    assert run.error == "a live run needs somewhere to go: -o, --predictions or --restream"


def test_a_file_among_several_sources_is_refused_in_one_line(capsys, tmp_path):
    run = run_cli(
        capsys, "udp://127.0.0.1:23456", "clip.mp4", "-o", tmp_path / "o.mp4", "--url", NOWHERE,
    )  # fmt: skip
    assert run.code == 1
    assert run.error == (
        "clip.mp4: stream s2: several sources are live sources only (stream addresses or "
        "cameras); run a file on its own"
    )


def test_a_negative_queue_time_out_is_refused(capsys, tmp_path):
    run = run_cli(
        capsys, "udp://127.0.0.1:23456", "-o", tmp_path / "o.mp4", "--queue-timeout", "-1",
        "--url", NOWHERE,
    )  # fmt: skip
    assert run.code == 1 and run.error == "the queue time-out must be positive"
