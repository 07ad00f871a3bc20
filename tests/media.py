"""Make small test media from scikit-image photos (and some deliberately broken files).

Everything is written with PyAV (images with OpenCV) and kept tiny so tests stay fast. The clips
show camera motion: a crop window pans and zooms across a photo, so consecutive frames differ.

Rotation follows the convention of `gradcam_client.media.VideoInfo.rotation` (and of the
legacy ``rotate`` tag of phone videos): the clockwise angle a player applies to the stored
frames. `write_clip(..., rotation=90)` takes upright frames, stores them rotated a quarter turn
counter-clockwise and tags the stream so that players (and our reader) turn them back upright.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from gradcam_client.media.samples import PHOTOS, pan_zoom_frames, photo

__all__ = ["PHOTOS", "pan_zoom_frames", "photo"]  # re-exported for the tests

DEFAULT_TIME_BASE = Fraction(1, 90000)


def top_bright_frames(
    n_frames: int = 8, size: tuple[int, int] = (96, 64), name: str = "coffee"
) -> list[np.ndarray]:
    """Pan/zoom frames whose top half is near white and bottom half darkened photo.

    Handy to check orientation: an upright frame is bright on top.
    """
    frames = pan_zoom_frames(n_frames, size, name)
    out = []
    for frame in frames:
        frame = (frame.astype(np.float32) * 0.4).astype(np.uint8)
        frame[: frame.shape[0] // 2] = 235
        out.append(frame)
    return out


def cfr_times(n_frames: int, fps: float) -> list[float]:
    """Presentation times of a constant-frame-rate clip."""
    return [i / fps for i in range(n_frames)]


def vfr_times(n_frames: int, fps: float) -> list[float]:
    """Irregular presentation times (frame durations cycle through 1, 3, 2, 1, 4 periods)."""
    steps = (1, 3, 2, 1, 4)
    times, t = [], 0
    for i in range(n_frames):
        times.append(t / fps)
        t += steps[i % len(steps)]
    return times


def _gray_or_alpha(frame: np.ndarray, pix_fmt: str) -> tuple[np.ndarray, str]:
    """Convert an RGB frame to the array layout PyAV expects for `pix_fmt`."""
    if pix_fmt.startswith("gray"):
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), "gray"
    if pix_fmt in ("rgba", "yuva420p", "yuva444p"):
        alpha = np.full((*frame.shape[:2], 1), 255, np.uint8)
        alpha[:, : frame.shape[1] // 2] = 128  # half transparent on the left
        return np.concatenate([frame, alpha], axis=-1), "rgba"
    return frame, "rgb24"


def _tone(seconds: float, rate: int, hz: float, channels: int) -> np.ndarray:
    """A sine tone as float32 planar samples, shape (channels, n)."""
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * math.pi * hz * t)).astype(np.float32)
    return np.repeat(wave[None, :], channels, axis=0)


def _add_audio_stream(
    container: av.container.OutputContainer, codec: str, rate: int, channels: int = 1
) -> av.audio.stream.AudioStream:
    """Add an audio stream (before anything is muxed: the header needs all streams)."""
    layout = "mono" if channels == 1 else "stereo"
    return container.add_stream(codec, rate=rate, layout=layout)


def _tone_packets(
    stream: av.audio.stream.AudioStream, seconds: float, hz: float
) -> list[av.Packet]:
    """A sine tone of `seconds` encoded for `stream` (packets not yet muxed)."""
    rate = stream.codec_context.sample_rate
    layout = stream.codec_context.layout.name
    channels = stream.codec_context.layout.nb_channels
    samples = _tone(seconds, rate, hz, channels)
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
    chunk = stream.codec_context.frame_size or 1024
    packets: list[av.Packet] = []
    for start in range(0, samples.shape[1], chunk):
        part = np.ascontiguousarray(samples[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for converted in resampler.resample(frame):
            packets += stream.encode(converted)
    return packets + stream.encode(None)


def _write_tone(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    seconds: float,
    hz: float,
) -> None:
    """Encode a sine tone of `seconds` into `stream` and mux it."""
    for packet in _tone_packets(stream, seconds, hz):
        container.mux(packet)


def write_clip(
    path: str | Path,
    frames: Sequence[np.ndarray] | None = None,
    *,
    size: tuple[int, int] = (160, 120),
    n_frames: int = 12,
    fps: float = 12,
    times: Sequence[float] | None = None,
    vfr: bool = False,
    rotation: int = 0,
    rotate_tag: bool = False,
    audio: bool = False,
    audio_codec: str = "aac",
    audio_rate: int = 22050,
    tone_hz: float = 440.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    photo_name: str = "chelsea",
    time_base: Fraction = DEFAULT_TIME_BASE,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a short clip and return its path.

    frames: upright RGB frames; default `pan_zoom_frames(n_frames, size, photo_name)`.
    times: presentation time of each frame in seconds; default constant `fps`, or irregular
        (`vfr_times`) when `vfr` is true.
    rotation: clockwise degrees a player must turn the stored frames (0, 90, 180, 270).
    rotate_tag: record the rotation as an old-style ``rotate`` metadata tag instead of a
        display matrix (survives in .mkv; the MP4 muxer only writes display matrices).
    audio: add a sine tone (`audio_codec`, e.g. "aac", "pcm_s16le", "libopus") lasting as long
        as the video.
    codec / pix_fmt: e.g. ("libx264", "yuv420p"), ("ffv1", "gray"), ("png", "rgba"),
        ("ffv1", "yuva420p"), ("libx264", "yuv444p") for odd sizes, ("png", "rgb24") for 1x1.
    """
    path = Path(path)
    if frames is None:
        frames = pan_zoom_frames(n_frames, size, photo_name)
    frames = list(frames)
    if times is None:
        times = (vfr_times if vfr else cfr_times)(len(frames), fps)
    if len(times) != len(frames):
        raise ValueError("need one time per frame")
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90")
    stored = [np.ascontiguousarray(np.rot90(f, k=(rotation // 90) % 4)) for f in frames]
    height, width = stored[0].shape[:2]

    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if options:
            stream.options = options
        if rotation % 360 and rotate_tag:
            stream.metadata["rotate"] = str(rotation % 360)
        elif rotation % 360:
            stream.set_display_rotation(-rotation)
        audio_stream = _add_audio_stream(container, audio_codec, audio_rate) if audio else None
        for image, t in zip(stored, times, strict=True):
            array, fmt = _gray_or_alpha(image, pix_fmt)
            frame = av.VideoFrame.from_ndarray(array, format=fmt)
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            duration = (times[-1] if times else 0) + 1 / fps
            _write_tone(container, audio_stream, duration, tone_hz)
    return path


def write_gray_clip(path: str | Path, **kwargs) -> Path:
    """A lossless grayscale clip (FFV1, gray) - the default path should end in .mkv."""
    return write_clip(path, codec="ffv1", pix_fmt="gray", **kwargs)


def write_alpha_clip(path: str | Path, pix_fmt: str = "rgba", **kwargs) -> Path:
    """A clip with an alpha channel: PNG/rgba (use .mov or .mkv) or FFV1/yuva420p (.mkv)."""
    codec = "png" if pix_fmt == "rgba" else "ffv1"
    return write_clip(path, codec=codec, pix_fmt=pix_fmt, **kwargs)


def write_audio_only(
    path: str | Path, seconds: float = 1.0, codec: str = "aac", rate: int = 22050
) -> Path:
    """A file with a single audio stream (a sine tone) and no video."""
    path = Path(path)
    fmt = "mp4" if path.suffix.lower() in (".mp4", ".m4a", ".mov") else None
    with av.open(str(path), "w", format=fmt) as container:
        _write_tone(container, _add_audio_stream(container, codec, rate), seconds, 440.0)
    return path


def write_text_file(path: str | Path) -> Path:
    """A text file, typically given a video extension to pose as a video."""
    path = Path(path)
    path.write_text("This is not a video.\nJust a few lines of text.\n" * 20)
    return path


def write_empty_file(path: str | Path) -> Path:
    """A zero-byte file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_truncated(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    """Copy the first `keep` fraction of the bytes of `src` (as an interrupted download would)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def packet_positions(path: str | Path) -> list[tuple[int, int]]:
    """(byte offset, size) of each video packet of a file, in decoding order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(p.pos, p.size) for p in container.demux(stream) if p.size and p.pos >= 0]


def write_corrupted(src: str | Path, dst: str | Path, packets: Sequence[int]) -> Path:
    """Copy `src` with the payload of the given video packets (decoding order) overwritten.

    With an intra-only codec (e.g. `write_clip(codec="png", pix_fmt="rgb24")` or "mjpeg"), each
    damaged packet is exactly one undecodable frame; the container stays intact.
    """
    data = bytearray(Path(src).read_bytes())
    positions = packet_positions(src)
    rng = np.random.default_rng(0)
    for index in packets:
        pos, size = positions[index]
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def write_photo(
    path: str | Path, name: str = "astronaut", size: tuple[int, int] | None = (96, 96)
) -> Path:
    """Write a photo (resized to (width, height) `size`) as an image file; format from suffix."""
    path = Path(path)
    image = photo(name)
    if size is not None:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


_VOP_START = b"\x00\x00\x01\xb6"
_DIVX_PACKED_TAG = b"\x00\x00\x01\xb2DivX503b1393p"  # user data of a DivX 5 "packed" stream


def _vop_type(packet: bytes) -> str:
    """I, P, B or S: the coding type of the first VOP in an MPEG-4 Part 2 packet."""
    start = packet.index(_VOP_START)
    return "IPBS"[packet[start + 4] >> 6]


def _n_vop(time_increment_bits: int) -> bytes:
    """A "not coded" VOP: the placeholder packed streams put where a B-frame was moved from."""
    bits = "01" + "0" + "1" + "0" * time_increment_bits + "1" + "0"  # P, time, vop_coded=0
    bits += "0" + "1" * ((7 - len(bits)) % 8)  # stuffing up to the byte boundary
    return _VOP_START + int(bits, 2).to_bytes(len(bits) // 8, "big")


def write_packed_bframes_avi(
    path: str | Path,
    frames: Sequence[np.ndarray] | None = None,
    *,
    size: tuple[int, int] = (160, 96),
    n_frames: int = 20,
    fps: int = 10,
    audio: bool = False,
    photo_name: str = "chelsea",
) -> Path:
    """An MPEG-4 Part 2 AVI with packed B-frames, as DivX 5 and Xvid write them.

    FFmpeg's ``mpeg4`` encoder (one B-frame between references) gives packets in decoding
    order I0 P2 B1 P4 B3 ...; packing puts each B-frame into the packet of the reference
    before it and leaves a tiny "not coded" VOP in its place (I0, P2+B1, N, P4+B3, N, ...),
    one packet per frame period, and the DivX user data ends in "p" to say so. FFmpeg decodes
    such a file in display order but with presentation times out of order.
    audio: an MP3 sine tone as long as the video.
    """
    path = Path(path)
    if frames is None:
        frames = pan_zoom_frames(n_frames, size, photo_name)
    height, width = frames[0].shape[:2]
    encoder = av.CodecContext.create("mpeg4", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, fps)
    encoder.framerate = Fraction(fps)
    encoder.max_b_frames = 1
    encoder.gop_size = 10
    coded: list[bytes] = []
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        coded += [bytes(p) for p in encoder.encode(frame)]
    coded += [bytes(p) for p in encoder.encode(None)]
    first = coded[0].index(_VOP_START)
    coded[0] = coded[0][:first] + _DIVX_PACKED_TAG + coded[0][first:]
    not_coded = _n_vop(max(1, (fps - 1).bit_length()))
    packed: list[bytes] = []
    i = 0
    while i < len(coded):
        if i + 1 < len(coded) and _vop_type(coded[i + 1]) == "B":
            packed += [coded[i] + coded[i + 1], not_coded]
            i += 2
        else:
            packed.append(coded[i])
            i += 1
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        audio_packets = []
        if audio:
            audio_stream = _add_audio_stream(container, "libmp3lame", 22050)
            audio_packets = _tone_packets(audio_stream, len(frames) / fps, 440.0)
        for index, data in enumerate(packed):
            packet = av.Packet(data)
            packet.pts = packet.dts = index
            packet.duration = 1
            packet.time_base = Fraction(1, fps)
            packet.is_keyframe = _vop_type(data) == "I"
            packet.stream = stream
            while (
                audio_packets and audio_packets[0].pts * audio_packets[0].time_base <= index / fps
            ):
                container.mux(audio_packets.pop(0))  # interleaved, as players expect
            container.mux(packet)
        for packet in audio_packets:
            container.mux(packet)
    return path
