"""Writing the client's outputs: H.264 MP4 videos with the input's timing and audio, images.

`VideoWriter` encodes H.264 (libx264, yuv420p, BT.709) into MP4 with the timestamps it is
given (normally those of the input frames, so frame count and timing are unchanged), copies the
input's audio (AAC/MP3 packets are remuxed, other codecs are re-encoded to AAC), and only
renames its temporary file to the final name once everything is written. `write_image` writes a
still image through OpenCV, also via a temporary name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from types import TracebackType

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from gradcam_client.errors import OutputError
from gradcam_client.media.checks import FILE_ONLY, codec_name, ffmpeg_reason
from gradcam_client.media.frames import VideoInfo, frame_step, to_seconds

MP4_COPY_AUDIO_CODECS = frozenset({"aac", "mp3"})
"""Audio codecs copied into the output as they are; any other audio is re-encoded to AAC."""

HARDWARE_ENCODERS = ("h264_nvenc",)
"""H.264 encoders tried first with ``encoder="auto"``, when FFmpeg has them and a device opens.
(The FFmpeg that PyAV's wheels bundle has no VAAPI encoder; QSV would need NV12 frames.)"""

ENCODERS = ("auto", "libx264", *HARDWARE_ENCODERS)
"""The values `VideoWriter` (and ``gradcam-video --encoder``) accept."""

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


def _temporary_name(path: Path) -> Path:
    """A hidden, unique name next to `path` for writing before the final rename."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_image(path: str | Path, rgb: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write an RGB (H, W, 3) or grayscale (H, W) uint8 image; the format follows the suffix.

    The image is written under a temporary name and renamed, so `path` never holds a partial
    file.
    """
    path = Path(path)
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) image, got {image.dtype}")
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise ValueError(f"expected 3 channels, got {image.shape[2]}")
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality, cv2.IMWRITE_WEBP_QUALITY, jpeg_quality]
    try:
        ok = cv2.imwrite(str(temporary), image, params)
        if not ok:
            raise OutputError("OpenCV could not write the image", path)
        os.replace(temporary, path)
    except cv2.error as error:
        _remove(temporary)
        raise OutputError(f"cannot write an image of this type ({path.suffix})", path) from error
    except BaseException:
        _remove(temporary)
        raise
    return path


@lru_cache(maxsize=8)
def usable_encoder(name: str, crf: int = 20) -> bool:
    """True when FFmpeg has the encoder `name` and it opens here with the options the writer
    gives it (hardware encoders need a device)."""
    try:
        context = av.CodecContext.create(name, "w")
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 25)
        context.options = encoder_options(name, crf, "medium")
        context.open()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def choose_encoder(encoder: str = "auto", crf: int = 20) -> str:
    """The H.264 encoder to use: `encoder` itself, or for "auto" the first of
    `HARDWARE_ENCODERS` that opens, else libx264.

    Raises `ValueError` for a name not in `ENCODERS` and `OutputError` for a hardware encoder
    that does not open here (no device or driver).
    """
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
    if encoder == "auto":
        return next((name for name in HARDWARE_ENCODERS if usable_encoder(name, crf)), "libx264")
    if encoder != "libx264" and not usable_encoder(encoder, crf):
        raise OutputError(
            f"the {encoder} encoder does not open on this machine (no device or driver for "
            "it); use the encoder auto or libx264"
        )
    return encoder


def encoder_options(encoder: str, crf: int, preset: str) -> dict[str, str]:
    """Quality and speed options: libx264's CRF and preset, the nearest of a hardware encoder."""
    if encoder == "h264_nvenc":
        return {"rc": "vbr", "cq": str(crf), "preset": "p4"}
    return {"crf": str(crf), "preset": preset}


class _AudioCopier:
    """Copies the first audio stream of a file into an output container, interleaved.

    AAC/MP3 packets are remuxed untouched; other codecs are decoded and re-encoded to AAC.
    Timestamps stay those of the source, so audio and video (which keep the source's
    timestamps too) stay in sync.
    """

    def __init__(self, source: Path, output: av.container.OutputContainer) -> None:
        self._output = output
        self._input = av.open(str(source), options=dict(FILE_ONLY))
        try:
            self._source = self._input.streams.audio[0]
            self.copy = False
            codec = codec_name(self._source)
            if codec in MP4_COPY_AUDIO_CODECS:
                with contextlib.suppress(ValueError):
                    self._stream = output.add_stream_from_template(self._source)
                    self.copy = True
            if not self.copy:
                context = self._source.codec_context
                rate = context.sample_rate if context.sample_rate in _AAC_RATES else 48000
                layout = "mono" if context.layout.nb_channels == 1 else "stereo"
                self._stream = output.add_stream("aac", rate=rate, layout=layout)
            self.codec = codec_name(self._stream)
            self._packets = self._input.demux(self._source)
            self._pending: av.Packet | None = None
            self._done = False
        except BaseException:
            self._input.close()
            raise

    def feed_until(self, seconds: float | None) -> None:
        """Write the audio packets that start before `seconds` (all of them for None)."""
        while not self._done:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets)
                except (StopIteration, av.error.FFmpegError):
                    self._done = True
                    break
            stamp = packet.pts if packet.pts is not None else packet.dts
            start = to_seconds(stamp, packet.time_base)
            if seconds is not None and start is not None and start > seconds:
                self._pending = packet
                return
            self._pending = None
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        if self.copy:
            if packet.size and packet.dts is not None:
                packet.stream = self._stream
                self._output.mux(packet)
            return
        try:
            frames = self._source.decode(packet if packet.size else None)
        except av.error.FFmpegError:
            return  # a corrupt audio packet: a short gap is better than no output
        for frame in frames:
            self._output.mux(self._stream.encode(frame))

    def finish(self) -> None:
        """Write the remaining audio, flush the encoder and close the source."""
        self.feed_until(None)
        if not self.copy:
            self._output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()


def rgb_to_yuv420p(image: np.ndarray, scaler: VideoReformatter | None = None) -> av.VideoFrame:
    """An RGB frame of even size as a yuv420p BT.709 limited-range frame (converted by
    `scaler`, else by a scaler of its own: a loop over frames keeps one)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return (scaler or VideoReformatter()).reformat(
        frame, format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG", threads=1
    )


class VideoWriter:
    """Sink writing RGB frames to an H.264 MP4 file, usable as a context manager.

    >>> with VideoWriter("out.mp4", reader.info) as sink:
    ...     for frame in reader:
    ...         sink.write(overlay(frame.image), frame.pts, duration=frame.duration)

    info: the input's `VideoInfo`; its `time_base` is the unit of the pts given to `write`, its
        `fps` the nominal rate, and its audio (if any) is copied unless `audio` is false.
    size: (width, height) of the frames; default: that of the first frame written.
    crf / preset: libx264 quality (lower crf = better) and speed.
    encoder: "libx264", a hardware H.264 encoder, or "auto" (a hardware encoder when one opens
        here, else libx264; see `choose_encoder`).
    threads: encoder threads, 0 for the encoder's own choice.
    audio_source: file whose audio is copied; default `info.path` when `info.has_audio`.
    fragmented: write a fragmented MP4 straight to `path` (no temporary name), each packet
        flushed to disk and a key frame at least every `keyframe_seconds`, without look-ahead:
        a recording that plays up to its last frames however the process ends (Ctrl-C,
        SIGTERM, a crash). `abort` then keeps what was written.

    Frames are encoded as they come (nothing is buffered beyond the encoder's look-ahead). The
    pixel format is yuv420p, which needs even sizes: an odd width or height is padded by one
    pixel on the right or bottom edge, repeating the last column or row. The frames are not
    rotated (they are written upright, without rotation metadata).

    The file is written under a hidden temporary name in the same folder and renamed to `path`
    when `close` succeeds; if an exception leaves the ``with`` block (or `abort` is called) the
    temporary file is deleted and `path` is left untouched.
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo,
        *,
        size: tuple[int, int] | None = None,
        crf: int = 20,
        preset: str = "medium",
        audio: bool = True,
        audio_source: str | Path | None = None,
        encoder: str = "libx264",
        threads: int = 0,
        fragmented: bool = False,
        keyframe_seconds: float = 1.0,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in _VIDEO_SUFFIXES:
            raise OutputError(
                f"VideoWriter writes MP4; use one of {', '.join(_VIDEO_SUFFIXES)}", self.path
            )
        self.info = info
        self.size = size
        self.crf = crf
        self.preset = preset
        self.encoder = choose_encoder(encoder, crf)
        self.threads = threads
        if audio_source is None and audio and info.has_audio and not info.is_image:
            audio_source = info.path
        self.audio_source = Path(audio_source) if audio and audio_source else None
        self.time_base = info.time_base if not info.is_image else Fraction(1, 25)
        self.frames_written = 0
        self._step = frame_step(info) if not info.is_image else 1
        self.fragmented = fragmented
        self.keyframe_seconds = keyframe_seconds
        self._last_key: int | None = None
        self._temporary = self.path if fragmented else _temporary_name(self.path)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.VideoStream | None = None
        self._audio: _AudioCopier | None = None
        self._last_pts: int | None = None
        self._finished = False
        self._durations: dict[int, int] = {}
        self._scaler = VideoReformatter()  # RGB to yuv420p, set up once for every frame

    # -- context manager

    def __enter__(self) -> VideoWriter:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- public

    def open(self) -> None:
        """Create the temporary output file (called by ``with``)."""
        if self._container is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # movie_timescale: the edit list of a clip not starting at 0 stays exact
            options = {"movie_timescale": str(self.time_base.denominator)}
            if self.fragmented:
                options["movflags"] = "+frag_keyframe+empty_moov+default_base_moof"
                options["flush_packets"] = "1"
            else:
                options["movflags"] = "+faststart"
            self._container = av.open(str(self._temporary), "w", format="mp4", options=options)
        except (OSError, av.error.FFmpegError) as error:
            _remove(self._temporary)
            raise OutputError(f"cannot create the output ({error})", self.path) from error

    @property
    def audio_codec(self) -> str | None:
        """Codec of the audio stream of the output (None without audio or before a frame)."""
        return self._audio.codec if self._audio else None

    @property
    def audio_copied(self) -> bool:
        """True when the audio packets are copied unchanged (not re-encoded)."""
        return bool(self._audio and self._audio.copy)

    @property
    def finished(self) -> bool:
        """True once the output file has been moved to its final name."""
        return self._finished

    def write(
        self, image: np.ndarray, pts: int | None = None, *, duration: int | None = None
    ) -> None:
        """Encode one RGB uint8 (H, W, 3) frame shown at `pts` (in `info.time_base` units).

        Pass the input frame's `Frame.pts` (and `Frame.duration`, which sets how long the last
        frame lasts) to keep its timing; a None pts continues at the nominal frame rate.
        Timestamps must increase; one that does not is moved just after the previous one.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {image.shape}")
        height, width = image.shape[:2]
        self._check_size(width, height)
        pad_h, pad_w = height % 2, width % 2
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        self._encode(rgb_to_yuv420p(image, self._scaler), pts, duration)

    def write_picture(
        self, picture: np.ndarray, pts: int | None = None, *, duration: int | None = None
    ) -> None:
        """Encode one yuv420p BT.709 limited-range picture (see `Frame`), as `write` does.

        The encoder reads the picture's own memory (no copy): do not change it afterwards.
        """
        picture = np.ascontiguousarray(picture)
        if picture.dtype != np.uint8 or picture.ndim != 2 or picture.shape[0] % 3:
            raise ValueError(f"expected a yuv420p (H * 3 / 2, W) picture, got {picture.shape}")
        self._check_size(picture.shape[1], picture.shape[0] * 2 // 3)
        frame = av.VideoFrame.from_numpy_buffer(picture, format="yuv420p")
        frame.colorspace = 1  # BT.709
        frame.color_range = 1  # MPEG (limited)
        self._encode(frame, pts, duration)

    def _check_size(self, width: int, height: int) -> None:
        """Open the file and the streams on the first frame; later frames must match it."""
        if self._container is None:
            self.open()
        if self._stream is None:
            self._start(width, height)
        expected = self.size or (0, 0)
        if (width, height) != expected:
            raise ValueError(f"frame is {width}x{height}, the video is {expected[0]}x{expected[1]}")

    def _encode(self, frame: av.VideoFrame, pts: int | None, duration: int | None) -> None:
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self.time_base
        if self.fragmented:
            key_step = self.keyframe_seconds / self.time_base
            if self._last_key is None or pts - self._last_key >= key_step:
                frame.pict_type = av.video.frame.PictureType.I  # a new fragment starts here
                self._last_key = pts
        self._durations[pts] = duration or self._step
        try:
            assert self._stream is not None
            self._mux_video(self._stream.encode(frame))
            if self._audio is not None:
                self._audio.feed_until(float(pts * self.time_base))
        except av.error.FFmpegError as error:
            raise OutputError(f"encoding failed ({ffmpeg_reason(error)})", self.path) from error
        self.frames_written += 1

    def close(self, path: str | Path | None = None) -> None:
        """Flush the encoder, finish the audio and move the file to its final name.

        `path` gives it another name than the one it was opened with (e.g. for the part of a
        video made before a failure).
        """
        if path is not None:
            self.path = Path(path)
        if self._container is None:
            return
        try:
            if self._stream is None:
                raise OutputError("no frames were written", self.path)
            try:
                self._mux_video(self._stream.encode(None))
                if self._audio is not None:
                    self._audio.finish()
                container, self._container = self._container, None
                container.close()
            except (OSError, av.error.FFmpegError) as error:
                raise OutputError(f"writing failed ({error})", self.path) from error
            os.replace(self._temporary, self.path)
            self._finished = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop writing and delete the temporary file; `path` is not created (a fragmented
        recording keeps what was written)."""
        if self._audio is not None:
            with contextlib.suppress(Exception):
                self._audio.close()
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if not self.fragmented:
            _remove(self._temporary)

    # -- internals

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Mux encoded packets, giving each the duration of the frame it holds."""
        assert self._container is not None
        for packet in packets:
            duration = self._durations.pop(packet.pts, None) if packet.pts is not None else None
            if duration:
                packet.duration = duration
            self._container.mux(packet)

    def _start(self, width: int, height: int) -> None:
        """Create the video (and audio) streams once the frame size is known."""
        assert self._container is not None
        if self.size is None:
            self.size = (width, height)
        fps = Fraction(self.info.fps or 25).limit_denominator(1001)
        options = encoder_options(self.encoder, self.crf, self.preset)
        if self.fragmented and self.encoder == "libx264":
            options["tune"] = "zerolatency"  # no frames held back: what is written is on disk
        stream = self._container.add_stream(self.encoder, rate=fps, options=options)
        stream.codec_context.thread_count = self.threads
        stream.width = self.size[0] + self.size[0] % 2
        stream.height = self.size[1] + self.size[1] % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        context = stream.codec_context
        context.color_range = 1  # MPEG (limited)
        context.colorspace = 1  # BT.709
        context.color_primaries = 1
        context.color_trc = 1
        self._stream = stream
        if self.audio_source is not None:
            try:
                self._audio = _AudioCopier(self.audio_source, self._container)
            except (IndexError, OSError, av.error.FFmpegError):
                self._audio = None  # the source has no usable audio: write video only
