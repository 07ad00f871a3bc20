"""A live test source: a sample clip sent as MPEG-TS at its frame rate, as a camera would.

    python -m gradcam_client.live.sample_stream udp://127.0.0.1:23456 --fps 25 --size 640x360
    gradcam-video udp://127.0.0.1:23456 -o live.mp4      # in another terminal

The clip (a camera panning over a scikit-image photo, see `samples.pan_zoom_frames`) loops
until stopped or for `seconds`. UDP addresses are sent to; ``tcp://HOST:PORT?listen=1``
waits for one reader to connect first; a path ending in ``.m3u8`` is written as a live HLS
playlist with one-second segments (serve its folder over HTTP).
"""

from __future__ import annotations

import argparse
import io
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
import av.error
import numpy as np

from gradcam_client.media.samples import PHOTOS, pan_zoom_frames

LOOP_FRAMES = 100
"""Distinct frames of the looping clip (4 s at 25 frames/s)."""


def encode_loop(
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    photo: str = "chelsea",
    keyframe_seconds: float = 1.0,
) -> tuple[av.video.stream.VideoStream, list[av.Packet]]:
    """The looping clip encoded once (H.264 in MPEG-TS, BT.709 limited range, headers with
    every key frame): its stream, to copy the codec parameters from, and its packets in
    order."""
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream(
            "libx264",
            rate=rate,
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "g": str(max(1, round(fps * keyframe_seconds))),
                "x264-params": "repeat-headers=1",
            },
        )
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context  # tagged BT.709, limited range, as HD cameras send
        context.colorspace = context.color_primaries = context.color_trc = 1
        context.color_range = 1
        for index, rgb in enumerate(pan_zoom_frames(LOOP_FRAMES, size, photo)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
            )
            frame.pts, frame.time_base = index, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    clip = av.open(buffer, format="mpegts")
    template = clip.streams.video[0]
    return template, [packet for packet in clip.demux(template) if packet.size]


def send(
    url: str,
    *,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    seconds: float | None = None,
    photo: str = "chelsea",
    keyframe_seconds: float = 1.0,
    stop: threading.Event | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Send the looping clip to `url` in real time until `stop` is set or `seconds` have
    passed; returns the frames sent. The clip is encoded once, before sending starts; its
    packets are then re-timestamped and sent, so sending costs almost no CPU (as a camera
    that encodes in hardware). (FFmpeg holds Python's lock while it waits for a reader to
    connect: run this in its own process, as `SampleStream` does.)"""
    stop = stop or threading.Event()
    template, packets = encode_loop(fps, size, photo, keyframe_seconds)
    step = round(1 / (fps * template.time_base))  # one frame in the stream's time base
    first = packets[0].pts
    sent = 0
    if url.endswith(".m3u8"):  # a live HLS playlist in a folder, for an HTTP server to serve
        muxer = "hls"
        options = {"hls_time": "1", "hls_list_size": "4", "hls_flags": "delete_segments"}
    else:
        muxer, options = "mpegts", {}
    with av.open(url, "w", format=muxer, options=options) as container:
        stream = container.add_stream_from_template(template)
        start = time.monotonic()
        while not stop.is_set() and (seconds is None or sent < round(seconds * fps)):
            source = packets[sent % len(packets)]
            packet = av.Packet(bytes(source))
            packet.pts = packet.dts = sent * step + first
            packet.time_base, packet.stream = template.time_base, stream
            packet.is_keyframe = source.is_keyframe
            container.mux(packet)
            sent += 1
            if on_frame is not None:
                on_frame(sent)
            delay = start + sent / fps - time.monotonic()
            if delay > 0:
                stop.wait(delay)
    return sent


class SampleStream:
    """`send` in a child process: `start` it, `stop` it (SIGTERM), then read `sent`.

    `error` holds why sending ended early (e.g. the reader went away), if it did.
    """

    def __init__(
        self,
        url: str,
        *,
        fps: float = 25.0,
        size: tuple[int, int] = (640, 360),
        seconds: float | None = None,
        photo: str = "chelsea",
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "gradcam_client.live.sample_stream",
            url,
            "--fps",
            f"{fps:g}",
            "--size",
            f"{size[0]}x{size[1]}",
            "--photo",
            photo,
        ]
        if seconds is not None:
            self.command += ["--seconds", f"{seconds:g}"]
        self.sent: int | None = None
        self.error: str | None = None
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> SampleStream:
        """Start sending (once; `with` starts a stream that was not started yet)."""
        if self._process is not None:
            return self
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """Stop sending (if still sending); returns the frames sent."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the sender to end; returns the frames sent."""
        assert self._process is not None, "start() first"
        out, err = self._process.communicate(timeout=timeout)
        match = re.search(r"sent (\d+) frames", out)
        self.sent = int(match.group(1)) if match else 0
        self.error = err.strip().splitlines()[-1] if err.strip() else None
        return self.sent

    def __enter__(self) -> SampleStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_client.live.sample_stream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("url", help="where to send: udp://HOST:PORT, tcp://HOST:PORT?listen=1")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    parser.add_argument("--photo", default="chelsea", choices=PHOTOS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    count = [0]
    try:
        send(
            args.url,
            fps=args.fps,
            size=(width, height),
            seconds=args.seconds,
            photo=args.photo,
            stop=stop,
            on_frame=lambda n: count.__setitem__(0, n),
        )
    except (av.error.FFmpegError, OSError) as error:
        print(f"sending stopped: {error}", file=sys.stderr)
    print(f"sent {count[0]} frames", flush=True)


if __name__ == "__main__":
    main()
