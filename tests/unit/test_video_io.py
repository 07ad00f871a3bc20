"""Reading and writing media files through gradcam_client.media (clips from tests/media.py)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import media
import numpy as np
import pytest

from gradcam_client import media as vio
from gradcam_client.errors import (
    CorruptFrameError,
    EmptyMediaError,
    GradcamError,
    InputError,
    MediaNotFoundError,
    NoFramesError,
    NotMediaError,
    NoVideoStreamError,
    OutputError,
    ServerError,
    TruncatedMediaError,
)


def transcode(src: Path, dst: Path, **kwargs) -> vio.MediaReader:
    """Copy `src` to `dst` through the reader and the writer, as the client does."""
    reader = vio.open_media(src)
    with vio.VideoWriter(dst, reader.info, preset="veryfast", **kwargs) as sink:
        for frame in reader:
            sink.write(frame.image, frame.pts, duration=frame.duration)
    return reader


def streams(path: Path) -> dict[str, tuple[str, float | None]]:
    """Stream type -> (codec, duration in seconds) of the first stream of each type."""
    out: dict[str, tuple[str, float | None]] = {}
    with av.open(str(path)) as container:
        for s in container.streams:
            duration = float(s.duration * s.time_base) if s.duration else None
            out.setdefault(s.type, (s.codec_context.codec.canonical_name, duration))
    return out


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    """(start in seconds, payload) of every audio packet."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [
            (round(float(p.pts * p.time_base), 4), bytes(p))
            for p in container.demux(stream)
            if p.size
        ]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# --------------------------------------------------------------------------- round trips


def test_constant_rate_round_trip(tmp_path: Path) -> None:
    src = media.write_clip(tmp_path / "in.mp4", n_frames=12, fps=12, size=(160, 120))
    info = vio.probe(src)
    assert (info.width, info.height, info.frame_count, info.codec) == (160, 120, 12, "h264")
    assert info.fps == pytest.approx(12)
    assert info.duration == pytest.approx(1.0, abs=0.01)
    assert not info.has_audio and info.rotation == 0 and not info.is_image

    out = tmp_path / "out.mp4"
    transcode(src, out)
    out_info = vio.probe(out)
    assert out_info.codec == "h264" and out_info.pix_fmt == "yuv420p"
    assert (out_info.width, out_info.height) == (160, 120)
    decoded_in, decoded_out = list(vio.iter_frames(src)), list(vio.iter_frames(out))
    assert len(decoded_out) == len(decoded_in) == 12
    assert vio.read_timestamps(out) == pytest.approx(media.cfr_times(12, 12), abs=1e-6)
    for a, b in zip(decoded_in, decoded_out, strict=True):
        assert b.image.shape == (120, 160, 3) and b.image.dtype == np.uint8
        assert mean_abs_diff(a.image, b.image) < 6  # same picture, not black or garbled
    assert not leftovers(tmp_path)


def test_variable_rate_round_trip(tmp_path: Path) -> None:
    src = media.write_clip(tmp_path / "vfr.mp4", n_frames=14, fps=12, vfr=True)
    expected = media.vfr_times(14, 12)
    assert vio.read_timestamps(src) == pytest.approx(expected, abs=1e-6)
    frames = list(vio.iter_frames(src))
    assert [f.time for f in frames] == pytest.approx(expected, abs=1e-6)
    assert [f.index for f in frames] == list(range(14))

    out = tmp_path / "vfr_out.mp4"
    transcode(src, out)
    assert vio.read_timestamps(out) == pytest.approx(expected, abs=1e-6)
    assert streams(out)["video"][0] == "h264"


def test_mkv_time_base_is_kept(tmp_path: Path) -> None:
    src = media.write_clip(tmp_path / "in.mkv", n_frames=10, fps=10, vfr=True)
    assert vio.probe(src).time_base == Fraction(1, 1000)  # Matroska counts milliseconds
    out = tmp_path / "out.mp4"
    transcode(src, out)
    assert vio.read_timestamps(out) == pytest.approx(media.vfr_times(10, 10), abs=1e-6)


def test_packed_b_frames_keep_the_display_times_and_the_audio(tmp_path: Path) -> None:
    pictures = media.pan_zoom_frames(20, (160, 96), "chelsea")
    src = media.write_packed_bframes_avi(tmp_path / "divx.avi", pictures, fps=10, audio=True)
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        packet_times = sorted(float(p.pts * p.time_base) for p in container.demux(stream) if p.size)
    with av.open(str(src)) as container:
        raw = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert raw != sorted(raw)  # the file really decodes with times out of order
    assert sorted(raw) == pytest.approx(packet_times)

    frames = list(vio.iter_frames(src))
    assert [f.time for f in frames] == pytest.approx(packet_times)
    assert vio.read_timestamps(src) == pytest.approx(packet_times)
    for i, frame in enumerate(frames):  # the pictures are in display order
        here = mean_abs_diff(frame.image, pictures[i])
        assert here < 8 and here < mean_abs_diff(frame.image, pictures[i - 1 if i else 1]) - 2

    out = tmp_path / "out.mp4"
    transcode(src, out)
    assert vio.read_timestamps(out) == pytest.approx(packet_times, abs=1e-6)
    assert streams(out)["video"][1] == pytest.approx(20 / 10)  # as long as the input, not longer
    assert audio_packets(out) == audio_packets(src)  # the MP3 copied at its own times: in sync


@pytest.mark.parametrize(
    ("name", "encoder", "rate", "codec", "copied"),
    [
        ("aac.mp4", "aac", 22050, "aac", True),
        ("aac.mkv", "aac", 44100, "aac", True),
        ("mp3.mkv", "libmp3lame", 44100, "mp3", True),
        ("pcm.mkv", "pcm_s16le", 22050, "pcm_s16le", False),
        ("opus.mkv", "libopus", 48000, "opus", False),
    ],
)
def test_audio_is_kept(
    tmp_path: Path, name: str, encoder: str, rate: int, codec: str, copied: bool
) -> None:
    src = media.write_clip(
        tmp_path / name, n_frames=12, fps=12, audio=True, audio_codec=encoder, audio_rate=rate
    )
    info = vio.probe(src)
    assert info.has_audio and info.audio_codec == codec
    out = tmp_path / "out.mp4"
    reader = vio.open_media(src)
    with vio.VideoWriter(out, reader.info, preset="veryfast") as sink:
        for frame in reader:
            sink.write(frame.image, frame.pts, duration=frame.duration)
    assert sink.audio_copied is copied
    found = streams(out)
    assert found["audio"][0] == (codec if copied else "aac")
    assert found["audio"][1] == pytest.approx(1.0, abs=0.1)  # the tone lasts as long as the video
    assert len(list(vio.iter_frames(out))) == 12

    silent = tmp_path / "silent.mp4"
    transcode(src, silent, audio=False)
    assert "audio" not in streams(silent)


def test_start_offset_and_audio_of_transport_stream(tmp_path: Path) -> None:
    src = media.write_clip(tmp_path / "in.ts", n_frames=12, fps=12, audio=True)
    info = vio.probe(src)
    assert info.start_time > 0  # MPEG-TS does not start at 0
    times = vio.read_timestamps(src)
    assert times[0] == pytest.approx(info.start_time)
    out = tmp_path / "out.mp4"
    transcode(src, out)
    assert vio.read_timestamps(out) == pytest.approx(times, abs=1e-6)
    assert streams(out)["audio"][0] == "aac"


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    upright = media.top_bright_frames(6, size=(96, 64))
    src = media.write_clip(tmp_path / "rot.mp4", upright, rotation=rotation)
    with av.open(str(src)) as container:  # the file really stores rotated pictures
        stored = container.streams.video[0]
        stored_wh = (stored.width, stored.height)
    assert stored_wh == ((64, 96) if rotation in (90, 270) else (96, 64))

    info = vio.probe(src)
    assert info.rotation == rotation
    assert (info.width, info.height) == (96, 64)
    for frame in vio.iter_frames(src):
        assert frame.image.shape == (64, 96, 3)
        top, bottom = frame.image[:32].mean(), frame.image[32:].mean()
        assert top > 200 > 100 > bottom  # bright half on top: upright

    out = tmp_path / "out.mp4"
    transcode(src, out)
    out_info = vio.probe(out)
    assert out_info.rotation == 0 and (out_info.width, out_info.height) == (96, 64)
    assert next(vio.iter_frames(out)).image[:32].mean() > 200


def test_legacy_rotate_tag(tmp_path: Path) -> None:
    src = media.write_clip(
        tmp_path / "tag.mkv", media.top_bright_frames(4), rotation=90, rotate_tag=True
    )
    info = vio.probe(src)
    assert info.rotation == 90 and (info.width, info.height) == (96, 64)
    image = next(vio.iter_frames(src)).image
    assert image[:32].mean() > 200 > 100 > image[32:].mean()


# --------------------------------------------------------------------------- formats and sizes


@pytest.mark.parametrize(
    ("name", "kind"), [("gray.mkv", "gray"), ("rgba.mov", "rgba"), ("yuva.mkv", "yuva420p")]
)
def test_gray_and_alpha_give_rgb(tmp_path: Path, name: str, kind: str) -> None:
    original = media.pan_zoom_frames(6, size=(80, 60))
    if kind == "gray":
        src = media.write_gray_clip(tmp_path / name, frames=original)
    else:
        src = media.write_alpha_clip(tmp_path / name, pix_fmt=kind, frames=original)
    assert vio.probe(src).pix_fmt == kind
    frames = list(vio.iter_frames(src))
    assert len(frames) == 6
    for frame, rgb in zip(frames, original, strict=True):
        assert frame.image.shape == (60, 80, 3) and frame.image.dtype == np.uint8
        if kind == "gray":
            assert np.array_equal(frame.image[..., 0], frame.image[..., 1])
            assert np.array_equal(frame.image[..., 1], frame.image[..., 2])
        elif kind == "rgba":
            assert np.array_equal(frame.image, rgb)  # lossless PNG: alpha dropped, colour kept
        else:
            assert mean_abs_diff(frame.image, rgb) < 4
    out = tmp_path / "out.mp4"
    transcode(src, out)
    assert len(list(vio.iter_frames(out))) == 6


@pytest.mark.parametrize(
    ("size", "codec", "pix_fmt", "suffix"),
    [((63, 47), "libx264", "yuv444p", ".mp4"), ((1, 1), "png", "rgb24", ".mov")],
)
def test_odd_and_tiny_sizes(
    tmp_path: Path, size: tuple[int, int], codec: str, pix_fmt: str, suffix: str
) -> None:
    src = media.write_clip(
        tmp_path / f"in{suffix}", size=size, n_frames=8, codec=codec, pix_fmt=pix_fmt
    )
    width, height = size
    frames = list(vio.iter_frames(src))
    assert len(frames) == 8
    assert all(f.image.shape == (height, width, 3) for f in frames)

    out = tmp_path / "out.mp4"
    transcode(src, out)
    info = vio.probe(out)
    assert (info.width, info.height) == (width + width % 2, height + height % 2)  # padded
    written = list(vio.iter_frames(out))
    assert len(written) == 8
    if width > 8:  # the padded frame starts with the original picture
        cropped = written[4].image[:height, :width]
        assert mean_abs_diff(cropped, frames[4].image) < 8


# --------------------------------------------------------------------------- damaged inputs


def test_corrupt_frames_are_skipped_and_reported(tmp_path: Path) -> None:
    clean = media.write_clip(
        tmp_path / "clean.mov", n_frames=12, fps=12, codec="png", pix_fmt="rgb24"
    )
    src = media.write_corrupted(clean, tmp_path / "damaged.mov", [3, 7])
    reader = vio.open_media(src)
    frames = list(reader)
    assert len(frames) == 10
    assert [f.index for f in frames] == list(range(10))
    good_times = [t for i, t in enumerate(media.cfr_times(12, 12)) if i not in (3, 7)]
    assert [f.time for f in frames] == pytest.approx(good_times, abs=1e-6)
    assert reader.report.n_skipped == 2
    assert [s.index for s in reader.report.skipped] == [3, 7]
    assert [s.time for s in reader.report.skipped] == pytest.approx([3 / 12, 7 / 12])
    assert reader.report.summary().startswith("skipped 2 corrupt frames")

    out = tmp_path / "out.mp4"
    transcode(src, out)
    assert vio.read_timestamps(out) == pytest.approx(good_times, abs=1e-6)

    with pytest.raises(CorruptFrameError, match=r"frame #3 at 0\.250 s") as caught:
        list(vio.open_media(src, on_corrupt="raise"))
    assert caught.value.index == 3


def _bad_input(kind: str, folder: Path) -> Path:
    clip = folder / "clip.mp4"
    if kind in ("truncated", "truncated_faststart", "all_corrupt", "truncated_mkv"):
        if kind == "all_corrupt":
            clip = media.write_clip(folder / "clip.mov", n_frames=6, codec="png", pix_fmt="rgb24")
        elif kind == "truncated_mkv":
            clip = media.write_clip(folder / "clip.mkv", n_frames=12)
        else:
            options = {"movflags": "+faststart"} if kind == "truncated_faststart" else None
            media.write_clip(clip, n_frames=12, container_options=options)
    makers = {
        "missing": lambda: folder / "nothing_here.mp4",
        "empty": lambda: media.write_empty_file(folder / "empty.mp4"),
        "text": lambda: media.write_text_file(folder / "notes.mp4"),
        "truncated": lambda: media.write_truncated(clip, folder / "cut.mp4", 0.6),
        "truncated_faststart": lambda: media.write_truncated(clip, folder / "cut_fs.mp4", 0.6),
        "truncated_mkv": lambda: media.write_truncated(clip, folder / "cut.mkv", 0.6),
        "audio_only": lambda: media.write_audio_only(folder / "song.mp4"),
        "all_corrupt": lambda: media.write_corrupted(clip, folder / "broken.mov", range(6)),
    }
    return makers[kind]()


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("missing", MediaNotFoundError, "no such file"),
        ("empty", EmptyMediaError, "empty"),
        ("text", NotMediaError, "text file"),
        ("truncated", TruncatedMediaError, "truncated"),
        ("truncated_faststart", TruncatedMediaError, "truncated"),
        ("truncated_mkv", TruncatedMediaError, "truncated"),
        ("audio_only", NoVideoStreamError, r"no video stream \(found: audio \(aac\)\)"),
        ("all_corrupt", NoFramesError, "no decodable frame"),
    ],
)
def test_bad_inputs_raise_specific_errors(
    tmp_path: Path, kind: str, error: type[InputError], message: str
) -> None:
    path = _bad_input(kind, tmp_path)
    with pytest.raises(error, match=message) as caught:
        vio.open_media(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert isinstance(caught.value, InputError) and isinstance(caught.value, GradcamError)
    assert caught.value.path == path
    with pytest.raises(error):
        vio.probe(path)


def test_truncated_file_can_be_read_partially(tmp_path: Path) -> None:
    clip = media.write_clip(
        tmp_path / "clip.mp4", n_frames=12, container_options={"movflags": "+faststart"}
    )
    cut = media.write_truncated(clip, tmp_path / "cut.mp4", 0.6)
    reader = vio.open_media(cut, allow_truncated=True)
    frames = list(reader)
    assert 0 < len(frames) < 12
    assert reader.report.truncated and "ends early" in reader.report.summary()


# --------------------------------------------------------------------------- writer behaviour


def test_writer_failure_leaves_nothing(tmp_path: Path) -> None:
    src = media.write_clip(tmp_path / "in.mp4", n_frames=8, audio=True)
    out = tmp_path / "out.mp4"
    reader = vio.open_media(src)
    with (
        pytest.raises(RuntimeError, match="drawing failed"),
        vio.VideoWriter(out, reader.info) as sink,
    ):
        for frame in reader:
            sink.write(frame.image, frame.pts)
            assert not out.exists() and len(leftovers(tmp_path)) == 1  # written as we go
            if frame.index == 4:
                raise RuntimeError("drawing failed")
    assert not out.exists() and not leftovers(tmp_path)

    out.write_bytes(b"previous result")  # an earlier output is not clobbered by a failure
    with (
        pytest.raises(OutputError, match="no frames were written"),
        vio.VideoWriter(out, reader.info),
    ):
        pass
    assert out.read_bytes() == b"previous result" and not leftovers(tmp_path)


def test_writer_checks_its_arguments(tmp_path: Path) -> None:
    info = vio.probe(media.write_clip(tmp_path / "in.mp4", n_frames=4, size=(64, 48)))
    with pytest.raises(OutputError, match="writes MP4"):
        vio.VideoWriter(tmp_path / "out.avi", info)
    with (
        pytest.raises(ValueError, match="frame is 32x32"),
        vio.VideoWriter(tmp_path / "out.mp4", info) as sink,
    ):
        sink.write(np.zeros((48, 64, 3), np.uint8), 0)
        sink.write(np.zeros((32, 32, 3), np.uint8), 1)
    assert not (tmp_path / "out.mp4").exists() and not leftovers(tmp_path)


def test_writer_without_timestamps_uses_nominal_rate(tmp_path: Path) -> None:
    info = vio.probe(media.write_clip(tmp_path / "in.mp4", n_frames=4, fps=10, size=(64, 48)))
    out = tmp_path / "out.mp4"
    with vio.VideoWriter(out, info, size=(64, 48)) as sink:
        for image in media.pan_zoom_frames(5, size=(64, 48)):
            sink.write(image)
    assert vio.read_timestamps(out) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4], abs=1e-6)


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("suffix", "lossless"), [(".png", True), (".bmp", True), (".jpg", False), (".webp", False)]
)
def test_image_round_trip(tmp_path: Path, suffix: str, lossless: bool) -> None:
    src = media.write_photo(tmp_path / f"photo{suffix}", "astronaut", size=(65, 33))
    reader = vio.open_media(src)
    assert reader.is_image
    assert (reader.info.width, reader.info.height, reader.info.frame_count) == (65, 33, 1)
    frames = list(reader)
    assert len(frames) == 1 and frames[0].image.shape == (33, 65, 3)
    assert vio.read_timestamps(src) == [0.0]

    out = vio.write_image(tmp_path / "out" / f"copy{suffix}", frames[0].image)
    again = vio.read_image(out)
    if lossless:
        assert np.array_equal(again, frames[0].image)
    else:
        assert mean_abs_diff(again, frames[0].image) < 6
    assert not leftovers(tmp_path / "out")


def test_write_image_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        vio.write_image(tmp_path / "out.gif", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_error_hierarchy() -> None:
    for error in (InputError, OutputError, ServerError):
        assert issubclass(error, GradcamError)
    for error in (NotMediaError, TruncatedMediaError, NoFramesError, CorruptFrameError):
        assert issubclass(error, InputError)
    assert str(InputError("bad\nthing", "a.mp4")) == "a.mp4: bad thing"


# --------------------------------------------------------------------------- yuv420p pictures


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"),
    [
        ("h264.mp4", "libx264", "yuv420p"),
        ("gray.mkv", "ffv1", "gray"),
        ("444.mp4", "libx264", "yuv444p"),
    ],
)
def test_pictures_are_the_rgb_frames_in_yuv420p(
    tmp_path: Path, name: str, codec: str, pix_fmt: str
) -> None:
    src = media.write_clip(tmp_path / name, n_frames=4, size=(96, 64), codec=codec, pix_fmt=pix_fmt)
    reader = vio.open_media(src)
    assert reader.yuv_ready
    rgb = list(reader)
    stream = reader.pictures(thumbnail=(32, 24))
    assert stream.path == src and len(list(stream)) == 4  # each pass re-reads the file
    pictures = list(stream)
    assert [p.time for p in pictures] == [f.time for f in rgb]
    for frame, picture in zip(rgb, pictures, strict=True):
        assert picture.pixel_format == "yuv420p" and picture.image.shape == (96, 96)
        # what the writer would hand the encoder for the RGB frame
        today = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        today = today.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        assert mean_abs_diff(picture.image, today.to_ndarray()) < 1.5
        assert picture.thumbnail.shape == (24, 32, 3)
        small = cv2.resize(frame.image, (32, 24), interpolation=cv2.INTER_AREA)
        assert mean_abs_diff(picture.thumbnail, small) < 3
    from gradcam_client.media.frames import Planes
    from gradcam_client.render.compose_yuv import planes

    # the decoder's own planes, without a copy: the same pixels
    for picture, own in zip(pictures, reader.pictures(copy=False), strict=True):
        assert isinstance(own.image, Planes) and own.thumbnail is None
        for mine, theirs in zip(own.image, planes(picture.image), strict=True):
            assert np.array_equal(mine, theirs)


def test_rotated_input_has_no_pictures(tmp_path: Path) -> None:
    src = media.write_clip(tmp_path / "rot.mp4", n_frames=2, rotation=90)
    reader = vio.open_media(src)
    assert not reader.yuv_ready
    with pytest.raises(ValueError, match="rotated"):
        reader.pictures()


def test_auto_encoder_falls_back_to_libx264_without_a_device(tmp_path: Path) -> None:
    from gradcam_client.media.writer import choose_encoder, usable_encoder

    src = media.write_clip(tmp_path / "in.mp4", n_frames=3)
    reader = vio.open_media(src)
    with vio.VideoWriter(tmp_path / "out.mp4", reader.info, encoder="auto") as sink:
        for frame in reader:
            sink.write(frame.image, frame.pts)
    expected = "h264_nvenc" if usable_encoder("h264_nvenc") else "libx264"
    assert sink.encoder == choose_encoder("auto") == expected
    assert vio.probe(tmp_path / "out.mp4").codec == "h264"
    assert not usable_encoder("no_such_encoder")


def test_an_encoder_named_must_exist_and_open(tmp_path: Path) -> None:
    from gradcam_client.errors import OutputError
    from gradcam_client.media.writer import usable_encoder

    info = vio.probe(media.write_clip(tmp_path / "in.mp4", n_frames=2))
    with pytest.raises(ValueError, match="unknown encoder 'h264_vaapi'; choose from auto, libx264"):
        vio.VideoWriter(tmp_path / "out.mp4", info, encoder="h264_vaapi")
    if not usable_encoder("h264_nvenc"):
        with pytest.raises(OutputError, match="h264_nvenc encoder does not open"):
            vio.VideoWriter(tmp_path / "out.mp4", info, encoder="h264_nvenc")
    assert vio.VideoWriter(tmp_path / "out.mp4", info, encoder="libx264").encoder == "libx264"


@pytest.mark.parametrize("size", [(640, 360), (642, 362), (96, 64)])
def test_a_picture_is_the_decoded_planes_without_their_padding(size) -> None:
    from gradcam_client.media.reader import copy_planes

    rgb = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    assert np.array_equal(copy_planes(frame), frame.to_ndarray())
