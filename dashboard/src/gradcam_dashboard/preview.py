"""A browser-playable copy of an input video (H.264 MP4), made once per upload in the
background at a low CPU priority, so that the original can be shown beside the result
whatever its format (AVI, MKV, MPEG-4 Part 2...)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from gradcam_client.errors import GradcamError
from gradcam_client.media import VideoWriter, open_media
from gradcam_dashboard.media import fit_width

PREVIEW_WIDTH = 640
PREVIEW_NICENESS = 10  # below the runs, which the visitor is waiting for


def make_preview(
    source: Path,
    target: Path,
    max_width: int = PREVIEW_WIDTH,
    cancel: threading.Event | None = None,
) -> Path:
    """Write an H.264 copy of `source` at most `max_width` wide, with its timing and audio."""
    reader = open_media(source)
    writer = VideoWriter(target, reader.info, crf=28, preset="ultrafast")
    with writer:
        for frame in reader:
            if cancel is not None and cancel.is_set():
                raise GradcamError("the preview was cancelled")
            writer.write(fit_width(frame.image, max_width), frame.pts, duration=frame.duration)
    return target


class Preview:
    """The preview of one input, made in a daemon thread: ready, failed, or being made."""

    def __init__(self, source: Path, target: Path) -> None:
        self.source = source
        self.target = target
        self.error = ""
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, name="dashboard-preview", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: per-thread niceness
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREVIEW_NICENESS)
        try:
            make_preview(self.source, self.target, cancel=self._cancel)
        except GradcamError as error:
            self.error = str(error)
        except Exception as error:  # a preview is a convenience: never fail the page
            self.error = f"{type(error).__name__}: {error}"

    @property
    def ready(self) -> Path | None:
        """The preview's path once it is complete."""
        if self._thread.is_alive() or self.error or not self.target.is_file():
            return None
        return self.target

    @property
    def pending(self) -> bool:
        return self._thread.is_alive()

    def cancel(self) -> None:
        """Stop making it (e.g. a new input replaced this one)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()
