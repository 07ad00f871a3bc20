"""`EncoderThread`: frames composed on one thread and encoded on another, in order, and a
failure on either thread reaches the caller without blocking it."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gradcam_client.jobs.file_stream import EncoderThread
from gradcam_client.media.frames import Frame


class Renderer:
    """Composes by tagging the picture with the frame's index; records the thread."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def compose(self, frame: Frame, *explained: object) -> Frame:
        self.threads.add(threading.current_thread().name)
        if frame.index == self.fail_at:
            raise RuntimeError(f"compose failed at {frame.index}")
        return replace(frame, image=np.full_like(frame.image, frame.index))


class Writer:
    """Records what it is given and on which thread."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.written: list[int] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at
        self.closed = self.aborted = False

    @property
    def frames_written(self) -> int:
        return len(self.written)

    def open(self) -> None:
        pass

    def write_picture(self, picture: np.ndarray, pts: int, *, duration: int | None) -> None:
        self.threads.add(threading.current_thread().name)
        if pts == self.fail_at:
            raise OSError(f"disk full at {pts}")
        self.written.append(int(picture[0, 0]))

    def close(self, path: Path | None = None) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def frames(n: int) -> list[Frame]:
    picture = np.zeros((6, 4), np.uint8)
    return [Frame(picture, i, i, i / 10, 1, "yuv420p") for i in range(n)]


def test_frames_are_composed_and_encoded_on_their_own_threads_in_order() -> None:
    renderer, writer = Renderer(), Writer()
    encoder = EncoderThread(writer, renderer, depth=2, composed_depth=1)  # type: ignore[arg-type]
    for frame in frames(40):
        encoder.put(frame, ({}, 0, 0.5))
    assert encoder.finish() == 40
    assert writer.written == list(range(40)) and writer.closed
    assert renderer.threads == {"compose"} and writer.threads == {"encode"}


@pytest.mark.parametrize("where", ["compose", "encode"])
def test_a_failure_on_either_thread_reaches_the_caller_and_nothing_is_kept(where: str) -> None:
    renderer = Renderer(fail_at=5 if where == "compose" else None)
    writer = Writer(fail_at=5 if where == "encode" else None)
    encoder = EncoderThread(writer, renderer, depth=2, composed_depth=1)  # type: ignore[arg-type]
    with pytest.raises((RuntimeError, OSError), match=r"failed at 5|disk full at 5"):
        for frame in frames(200):  # far more than the queues hold: the producer never blocks
            encoder.put(frame, ({}, 0, 0.5))
        encoder.finish()
    encoder.abort()
    assert writer.aborted and not writer.closed
    # in order up to the failure; frames composed before a compose failure may be dropped
    assert writer.written == list(range(len(writer.written)))
    assert len(writer.written) == 5 if where == "encode" else len(writer.written) <= 5
