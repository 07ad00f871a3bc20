"""Live sources: network streams and cameras, read as they play.

Anything FFmpeg opens by address: RTSP, RTMP, HTTP(S) (a live stream or a file), SRT where
FFmpeg has libsrt, UDP/TCP MPEG-TS, and local V4L2 cameras given by device path (``/dev/video0``).
An address a stranger typed is opened through a `SourceGuard` (public hosts only, network
protocols only; see `live.source_guard`).

`LiveSource` opens the source with time-outs on opening and on every read (a source that is
unreachable or never starts fails in one line, never hangs), then decodes it on a background
thread into a small buffer. In real time, a full buffer drops its oldest frame (the newest are
kept; every drop is counted), so a slow consumer never falls behind the source. A source that
stops is reopened with back-off until a deadline; frames after a reopening carry the next
segment number. A source that listens (``udp://``, ``tcp://...?listen=1``) says when its
socket is bound (the "listening" event), so a sender knows no frame it sends is lost.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.error

from gradcam_client.errors import NoVideoStreamError, SourceError
from gradcam_client.live.source_guard import Prepared, SourceGuard, SourceRefused
from gradcam_client.media.checks import codec_name, ffmpeg_reason, video_stream

MAX_BACKOFF_S = 4.0
"""Longest wait between two attempts to reopen a source."""
SHORT_LIVED_S = 2.0
"""A reopened source that ends sooner than this is reopened after a growing pause."""

FILE_SCHEMES = ("http", "https", "ftp")
"""Schemes that may also name a whole file (processed frame by frame, not in real time)."""


V4L2_MAJOR = 81
"""The device number Linux gives video capture devices (``/dev/video*``)."""

LISTEN_POLL_S = 0.01
"""How often a listening source looks whether its socket is bound yet."""


def is_camera(address: str) -> bool:
    """True for a V4L2 capture device: a character device with V4L2's major number, or
    named ``video*``. Anything else, even under ``/dev`` (``/dev/shm/clip.avi``), is not."""
    try:
        info = os.stat(address)
    except (OSError, ValueError):
        return False
    if not stat.S_ISCHR(info.st_mode):
        return False
    return os.major(info.st_rdev) == V4L2_MAJOR or Path(address).name.startswith("video")


def is_live_address(address: str) -> bool:
    """True when `address` names a stream (``scheme://...``, not ``file:``) or a camera."""
    scheme = urlsplit(address).scheme.lower()
    if "://" in address and len(scheme) > 1 and scheme != "file":
        return True
    return is_camera(address)


def listening_socket(address: str) -> tuple[str, int] | None:
    """("udp" or "tcp", port) for an address whose source listens rather than connects."""
    parts = urlsplit(address)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    if not port:
        return None
    if scheme in ("udp", "rtp"):
        return "udp", port
    if scheme == "tcp" and "listen" in parts.query:
        return "tcp", port
    return None


def bound_here(kind: str, port: int) -> bool:
    """Whether this process holds a `kind` socket bound to `port`, listening for TCP (read
    from Linux's /proc; False where there is none)."""
    inodes = set()
    for table in (kind, f"{kind}6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and (kind == "udp" or state == "0A"):
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return False
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/self/fd/{descriptor}") in inodes:
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class SourceInfo:
    """What a live source said when it was opened."""

    address: str
    format: str  # FFmpeg's demuxer ("mpegts", "rtsp", "hls", "video4linux2,v4l2", ...)
    codec: str
    width: int
    height: int
    fps: float  # the stream's declared rate, 0.0 when it does not say
    realtime: bool  # frames are skipped rather than queued when the consumer is slower

    @property
    def describe(self) -> str:
        rate = f", {self.fps:g} frames/s" if self.fps else ""
        return f"{self.format} {self.codec} {self.width}x{self.height}{rate}"


@dataclass(frozen=True)
class Arrival:
    """One decoded frame of a live source, as it arrived."""

    frame: av.VideoFrame
    arrived: float  # time.monotonic() when the decoder gave it
    index: int  # position among the frames received over the whole run
    segment: int  # 0, then 1, 2, ... after each reopening of the source
    time: float | None  # its presentation time in the stream, seconds (None if unknown)


@dataclass(frozen=True)
class SourceEvent:
    """Something the user should hear about: the source was lost, came back, or gave up."""

    kind: str  # "listening", "lost", "reopened", "gave-up", "ended"
    message: str


def _problem(error: Exception, open_timeout: float, read_timeout: float, opening: bool) -> str:
    """A one-line reason for a failure to open or read a source."""
    if isinstance(error, av.error.ExitError):  # PyAV's time-out interrupted FFmpeg
        if opening:
            return f"no stream arrived within {round(open_timeout, 1):g} s (is the source sending?)"
        return f"no data for {round(read_timeout, 1):g} s"
    if isinstance(error, av.error.ProtocolNotFoundError):
        return "FFmpeg does not know this kind of address (protocol not found)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (nothing is listening there)"
    if isinstance(error, av.error.InvalidDataError):
        return "not a stream FFmpeg can read (invalid data)"
    if isinstance(error, FileNotFoundError):
        return "no such device or stream"
    return ffmpeg_reason(error)


@dataclass
class OpenedSource:
    """A live source opened: its container, video stream, and what the guard set up."""

    container: av.container.InputContainer
    stream: av.video.VideoStream
    prepared: Prepared | None = None

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            if self.prepared is not None:
                self.prepared.close()


def open_source(
    address: str, open_timeout: float, read_timeout: float, guard: SourceGuard | None = None
) -> OpenedSource:
    """Open a live source and its video stream, or raise `SourceError` in one line.

    guard: for an address a stranger typed: checked (`SourceRefused` when not allowed) and
        opened as the guard says (see `live.source_guard`).
    """
    try:
        prepared = guard.prepare(address) if guard is not None else None
    except SourceRefused as refusal:
        raise SourceRefused(refusal.problem, address) from None
    try:
        container = av.open(
            prepared.url if prepared else address,
            format="v4l2" if prepared is None and is_camera(address) else None,
            options=prepared.options if prepared else None,
            timeout=(open_timeout, read_timeout),
            metadata_errors="replace",
        )
    except (av.error.FFmpegError, OSError) as error:
        problem = _problem(error, open_timeout, read_timeout, opening=True)
        if prepared is not None:
            prepared.close()
            if prepared.proxy is not None and prepared.proxy.refused:
                problem += f" (refused: {prepared.proxy.refused[-1]})"
        raise SourceError(f"cannot open the source: {problem}", address) from None
    try:
        stream = video_stream(container, Path(address))
    except NoVideoStreamError as error:
        container.close()
        if prepared is not None:
            prepared.close()
        raise SourceError(error.problem, address) from None
    return OpenedSource(container, stream, prepared)


class LiveSource:
    """A live source decoded on a background thread into a bounded buffer.

    realtime: None decides by the source: a stream or camera is real time; an HTTP(S)/FTP
        address of a file with a known duration is not (every frame is kept, the reader
        waits for the consumer). In real time a full buffer drops its oldest frame.
    buffer: frames held for the consumer at most.
    reconnect_deadline: seconds to keep reopening a source that stopped (0: never).
    on_event: told (from a background thread) when the source listens, is lost, reopened
        or given up.
    guard: for an address a stranger typed (every opening is checked; see `live.source_guard`).
    """

    def __init__(
        self,
        address: str,
        *,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        reconnect_deadline: float = 30.0,
        realtime: bool | None = None,
        buffer: int = 8,
        on_event: Callable[[SourceEvent], None] | None = None,
        guard: SourceGuard | None = None,
    ) -> None:
        self.address = address
        self.guard = guard
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.reconnect_deadline = reconnect_deadline
        self.realtime = realtime
        self.capacity = max(1, buffer)
        self.on_event = on_event or (lambda event: None)
        self.listening = threading.Event()  # set while a listening source's socket is bound
        self.info: SourceInfo | None = None
        self.received = 0  # frames decoded
        self.skipped = 0  # frames dropped unprocessed (buffer full in real time, or at stop)
        self.corrupt = 0  # packets that failed to decode
        self.reconnects = 0
        self._frames: deque[Arrival] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None
        self._opened_at = 0.0
        self._pause = 0.0  # wait before reopening a source that keeps ending at once

    # -- the consumer's side

    def open(self) -> SourceInfo:
        """Open the source (raising `SourceError` if it cannot be) and start reading it."""
        opened = self._open(self.open_timeout)
        container, stream = opened.container, opened.stream
        self._opened_at = time.monotonic()
        realtime = self.realtime
        if realtime is None:
            scheme = urlsplit(self.address).scheme.lower()
            realtime = not (scheme in FILE_SCHEMES and container.duration)
        rate = stream.average_rate or stream.guessed_rate
        context = stream.codec_context
        self.info = SourceInfo(
            address=self.address,
            format=container.format.name,
            codec=codec_name(stream),
            width=context.width,
            height=context.height,
            fps=float(rate) if rate else 0.0,
            realtime=realtime,
        )
        self._thread = threading.Thread(
            target=self._read, args=(opened,), name="live-source", daemon=True
        )
        self._thread.start()
        return self.info

    def take(self, most: int, timeout: float, newest: bool = False) -> list[Arrival]:
        """Up to `most` waiting frames, oldest first; [] if none came within `timeout`.

        newest: take the newest `most` and skip (and count) the older ones."""
        with self._ready:
            if not self._frames:
                self._ready.wait_for(lambda: self._frames or self._finished, timeout)
            while newest and len(self._frames) > most:
                self._frames.popleft()
                self.skipped += 1
            taken = [self._frames.popleft() for _ in range(min(most, len(self._frames)))]
            self._ready.notify_all()
            return taken

    def wait_for_frames(self, timeout: float) -> bool:
        """Wait up to `timeout` for a frame to be waiting; whether one is (none are taken)."""
        with self._ready:
            return bool(self._ready.wait_for(lambda: self._frames or self._finished, timeout)) and (
                bool(self._frames)
            )

    @property
    def ended(self) -> bool:
        """True once the source is over (ended, given up or stopped) and its frames taken."""
        with self._ready:
            return self._finished and not self._frames

    def stop(self) -> None:
        """Stop reading; frames still waiting are dropped and counted as skipped."""
        self._stop.set()
        with self._ready:
            self.skipped += len(self._frames)
            self._frames.clear()
            self._ready.notify_all()

    def close(self, wait: float = 0.5) -> None:
        """`stop`, and give the reader up to `wait` seconds to close the source (a read in
        progress ends by itself within the read time-out)."""
        self.stop()
        if self._thread is not None:
            self._thread.join(wait)

    def _open(self, open_timeout: float) -> OpenedSource:
        """`open_source`, saying "listening" once a listening source's socket is bound."""
        where = listening_socket(self.address)
        if where is None:
            return open_source(self.address, open_timeout, self.read_timeout, self.guard)
        self.listening.clear()
        done = threading.Event()
        watcher = threading.Thread(
            target=self._watch_listening, args=(*where, done), name="live-listen", daemon=True
        )
        watcher.start()
        try:
            return open_source(self.address, open_timeout, self.read_timeout, self.guard)
        finally:
            done.set()
            watcher.join()

    def _watch_listening(self, kind: str, port: int, done: threading.Event) -> None:
        while not done.is_set():
            if bound_here(kind, port):
                self.listening.set()
                self.on_event(SourceEvent("listening", f"listening on {kind} port {port}"))
                return
            done.wait(LISTEN_POLL_S)

    # -- the reader thread

    def _put(self, arrival: Arrival) -> None:
        with self._ready:
            self.received += 1
            if self.info is not None and not self.info.realtime:
                self._ready.wait_for(
                    lambda: len(self._frames) < self.capacity or self._stop.is_set()
                )
            elif len(self._frames) >= self.capacity:
                self._frames.popleft()
                self.skipped += 1
            if self._stop.is_set():
                self.skipped += 1
                return
            self._frames.append(arrival)
            self._ready.notify_all()

    def _decoded(self, stream: av.video.VideoStream, packet: av.Packet | None) -> list:
        try:
            return stream.decode(packet)
        except av.error.FFmpegError:
            if packet is not None and packet.size:
                self.corrupt += 1  # a damaged or lost packet: skip its frame, go on
            return []

    def _frames_of(
        self, container: av.container.InputContainer, stream: av.video.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """The decoded frames until the source ends (then the decoder is flushed)."""
        for packet in container.demux(stream):
            if self._stop.is_set():
                return
            yield from self._decoded(stream, packet if packet.size else None)
        yield from self._decoded(stream, None)

    def _arrival(self, frame: av.VideoFrame, segment: int, stream: av.video.VideoStream) -> Arrival:
        """The frame as it arrived; its time from the stream's time base (the frames a
        decoder hands over when flushed carry none of their own)."""
        seconds = None
        if frame.pts is not None and stream.time_base is not None:
            seconds = float(frame.pts * stream.time_base)
        return Arrival(frame, time.monotonic(), self.received, segment, seconds)

    def _read_segment(self, opened: OpenedSource, segment: int) -> str:
        """Read an opened source until it ends, then close it; why it ended."""
        stream = opened.stream
        try:
            for frame in self._frames_of(opened.container, stream):
                self._put(self._arrival(frame, segment, stream))
        except (av.error.FFmpegError, OSError) as error:
            problem = _problem(error, self.open_timeout, self.read_timeout, False)
            for frame in self._decoded(stream, None):  # what the decoder holds
                self._put(self._arrival(frame, segment, stream))
            return f"the source stopped sending ({problem})"
        finally:
            opened.close()
            self.listening.clear()
        return "the source ended"

    def _read(self, opened: OpenedSource) -> None:
        segment = 0
        try:
            while True:
                reason = self._read_segment(opened, segment)
                if self._stop.is_set():
                    return
                if not (self.info and self.info.realtime) or self.reconnect_deadline <= 0:
                    self.on_event(SourceEvent("ended", reason))
                    return
                reopened = self._reopen(reason)
                if reopened is None:
                    return
                opened = reopened
                segment += 1
        finally:
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _reopen(self, reason: str) -> OpenedSource | None:
        """Reopen the source with back-off until the deadline; None when it stays away."""
        lost = time.monotonic()
        deadline = lost + self.reconnect_deadline
        self.on_event(
            SourceEvent("lost", f"{reason}; reopening it for up to {self.reconnect_deadline:g} s")
        )
        # A source that keeps ending right after it was reopened is waited for, with back-off.
        if time.monotonic() - self._opened_at < SHORT_LIVED_S:
            self._pause = min(2 * self._pause, MAX_BACKOFF_S) if self._pause else 0.25
            self._stop.wait(self._pause)
        else:
            self._pause = 0.0
        delay = 0.25
        last = reason
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                opened = self._open(min(self.open_timeout, max(left, 0.5)))
            except SourceError as error:
                last = error.problem
            else:
                if opened.container.duration:  # a finished recording now (an ended playlist)
                    opened.close()
                    self.on_event(SourceEvent("ended", "the stream is over (it has an end now)"))
                    return None
                self.reconnects += 1
                self._opened_at = time.monotonic()
                away = time.monotonic() - lost
                self.on_event(SourceEvent("reopened", f"the source is back after {away:.1f} s"))
                return opened
            self._stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, MAX_BACKOFF_S)
        if not self._stop.is_set():
            self.on_event(
                SourceEvent(
                    "gave-up",
                    f"the source did not come back within {self.reconnect_deadline:g} s ({last})",
                )
            )
        return None
