"""Real videos through the real Triton: timing, audio, codec, pixels, layouts, maps, scopes."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import av
import cv2
import media
import numpy as np
import pytest
from client_runs import psnr, read_jsonl, run_cli
from served_models import ALL_METHODS, TINY

from gradcam_client.jobs import file_stream
from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.media import VideoWriter, iter_frames, open_media, probe, read_timestamps
from gradcam_client.remote.server import GradcamServer
from gradcam_client.render.compose import draw_label, format_label, overlay
from gradcam_client.render.compose_yuv import planes

pytestmark = pytest.mark.integration

SIZE = (96, 64)  # width, height: small, but larger than tiny's 32x32 input
DECAY = 0.98  # the client's defaults, written out: running-maximum decay and EMA strength
SMOOTHING = 0.7


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "cfr+audio": media.write_clip(
            folder / "cfr.mp4", size=SIZE, n_frames=12, fps=12, audio=True
        ),
        "vfr": media.write_clip(folder / "vfr.mp4", size=SIZE, n_frames=12, fps=12, vfr=True),
        "packed-b-frames+audio": media.write_packed_bframes_avi(
            folder / "divx.avi", size=SIZE, n_frames=12, fps=12, audio=True
        ),
    }


@pytest.fixture
def tiny(triton) -> GradcamServer:
    return GradcamServer(triton.urls.grpc, TINY)


class RecordingWriter(VideoWriter):
    """The real writer, also keeping every frame exactly as it was handed to the encoder."""

    instances: ClassVar[list[RecordingWriter]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.images: list[np.ndarray] = []
        self.pictures: list[np.ndarray] = []  # yuv420p, when composed in YUV
        self.pts: list[int | None] = []
        RecordingWriter.instances.append(self)

    def write(self, image, pts=None, *, duration=None) -> None:
        self.images.append(np.array(image))
        self.pts.append(pts)
        super().write(image, pts, duration=duration)

    def write_picture(self, picture, pts=None, *, duration=None) -> None:
        self.pictures.append(np.array(picture))
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        self.images.append(frame.to_ndarray(format="rgb24", src_colorspace="ITU709"))
        self.pts.append(pts)
        super().write_picture(picture, pts, duration=duration)


def reference_frames(
    server: GradcamServer, clip: Path, scope: str = "running", scaler: str = "opencv"
) -> list[np.ndarray]:
    """A straightforward per-frame composition: one request per frame, an exponential moving
    average of the raw maps, each divided by the running maximum (or the clip's maximum),
    overlaid and labelled. The frames go to the model resized by OpenCV from RGB, or by
    FFmpeg's scaler from the decoded picture (``scaler="ffmpeg"``, as the YUV path does)."""
    info = server.model_info()
    frames = list(iter_frames(clip))
    size = (info.input_width, info.input_height)
    if scaler == "ffmpeg":
        smalls = [frame.thumbnail for frame in open_media(clip).pictures(size)]
    else:
        smalls = [cv2.resize(f.image, size, interpolation=cv2.INTER_AREA) for f in frames]
    answers = []
    for small in smalls:
        answers.append(server.infer(small[None], np.array([-1])))
    raws = []
    for answer in answers:
        raw = answer.maps[info.layer_names[0]][0, 0]  # first layer, Grad-CAM
        raws.append(raw if not raws else SMOOTHING * raws[-1] + (1 - SMOOTHING) * raw)
    clip_peak = max(float(raw.max()) for raw in raws)
    held = None
    composed = []
    for frame, answer, raw in zip(frames, answers, raws, strict=True):
        peak = max(float(raw.max()), 0.0)
        held = peak if held is None else max(peak, DECAY * held)
        heat = np.clip(raw / max(clip_peak if scope == "clip" else held, 1e-8), 0, 1)
        image = overlay(frame.image, heat, "jet", 0.5)
        image = draw_label(image, "Grad-CAM", "top-left")
        explained = int(answer.class_index[0])
        label = format_label(info.class_names[explained], answer.probabilities[0, explained])
        composed.append(draw_label(image, label, "bottom-left"))
    return composed


def assert_close_to(composed: list[np.ndarray], reference: list[np.ndarray]) -> None:
    """Frames equal up to a step of the colour map (float noise between batch sizes)."""
    assert len(composed) == len(reference)
    for got, expected in zip(composed, reference, strict=True):
        assert got.shape == expected.shape
        difference = np.abs(got.astype(int) - expected.astype(int))
        assert difference.max() <= 4 and difference.mean() < 0.05


def assert_within_encoder_noise(pictures: list[np.ndarray], reference: list[np.ndarray]) -> None:
    """yuv420p pictures composed in YUV against the RGB reference as the encoder would get it
    (converted to yuv420p): each plane far closer than H.264 keeps it (PSNR > 38 dB, where
    the decoded output is held to 32 dB), and each picture closer to its own reference frame
    than to the next."""
    expected = [to_yuv420p(image) for image in reference]
    assert len(pictures) == len(expected)
    for i, (got, want) in enumerate(zip(pictures, expected, strict=True)):
        assert got.shape == want.shape
        neighbour = expected[i + 1 if i + 1 < len(expected) else i - 1]
        for mine, theirs in zip(planes(got), planes(want), strict=True):
            assert psnr(mine, theirs) > 38
        assert psnr(got, want) > psnr(got, neighbour) + 6


def to_yuv420p(image: np.ndarray) -> np.ndarray:
    """An RGB image as the writer hands it to the encoder (yuv420p, BT.709 limited range)."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    return frame.reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
    ).to_ndarray()


def audio_packets(path: Path) -> list[tuple[int, bytes]]:
    """(pts in samples, payload) of every audio packet."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        return [
            (round(p.pts * p.time_base * rate), bytes(p)) for p in container.demux(stream) if p.size
        ]


@pytest.mark.parametrize("compose_in", ["yuv", "rgb"])
@pytest.mark.parametrize("kind", ["cfr+audio", "vfr", "packed-b-frames+audio"])
def test_the_output_video_is_the_input_with_reference_heat_maps(
    tiny, clips, kind, compose_in, tmp_path, monkeypatch
):
    clip = clips[kind]
    RecordingWriter.instances.clear()
    monkeypatch.setattr(file_stream, "VideoWriter", RecordingWriter)
    output = tmp_path / "out.mp4"
    settings = JobSettings(batch_size=3, max_in_flight=2, yuv=compose_in == "yuv")
    result = process_media(tiny, clip, output, settings)

    # Timing, audio, codec: the input's frames at the input's times, H.264, same audio.
    times = read_timestamps(clip)
    assert result.frames == len(times) == 12
    assert read_timestamps(output) == pytest.approx(times, abs=1e-6)
    if kind == "vfr":
        assert len(set(np.round(np.diff(times), 6))) > 1  # the clip really is irregular
    got, source = probe(output), probe(clip)
    assert (got.codec, got.pix_fmt, got.width, got.height) == ("h264", "yuv420p", *SIZE)
    assert got.has_audio == source.has_audio == kind.endswith("+audio")
    if source.has_audio:
        assert audio_packets(output) == audio_packets(clip)

    # Before encoding: each frame is the straightforward per-frame composition. Requests of
    # one frame versus batches of three may differ in the last float bits; that moves a colour
    # by at most one step of the colour map. Composed in YUV, rounding and the chroma shared
    # by 2x2 pixels add a little more, still far below what the encoder loses.
    (writer,) = RecordingWriter.instances
    reference = reference_frames(tiny, clip, scaler="opencv" if compose_in == "rgb" else "ffmpeg")
    assert reference[0].shape == (SIZE[1], SIZE[0], 3)
    if compose_in == "rgb":
        assert_close_to(writer.images, reference)
    else:
        assert_within_encoder_noise(writer.pictures, reference)
    # Neighbouring frames differ far more than that: the comparison can tell frames apart.
    assert np.abs(reference[5].astype(int) - reference[6].astype(int)).mean() > 2

    # After encoding: the decoded frames are those frames up to H.264's loss. Judged on luma
    # at full resolution and on colour at a quarter of it: yuv420p keeps a quarter of the
    # chroma, which on 96x64 frames of a busy colour map is a loss of its own.
    decoded = [frame.image for frame in iter_frames(output)]
    assert len(decoded) == len(writer.images)
    for i, image in enumerate(decoded):
        composed, neighbour = writer.images[i], writer.images[i - 1 if i else 1]
        assert psnr(luma(image), luma(composed)) > 32
        assert psnr(luma(image), luma(composed)) > psnr(luma(image), luma(neighbour)) + 6
        assert psnr(quarter(image), quarter(composed)) > 32


def luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2YUV)[..., 0]


def quarter(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.resize(image, (width // 4, height // 4), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("args", "size"),
    [
        (["--layout", "overlay"], (96, 64)),
        (["--layout", "side-by-side"], (192, 64)),
        (["--layout", "grid"], (192, 64)),  # both layers of tiny, side by side
        (["--layout", "grid", "--layers", "conv2", "--methods", "gradcam,layercam,xgradcam"],
         (192, 128)),
        (["--layout", "grid", "--methods", ",".join(ALL_METHODS[:2])], (192, 128)),
    ],
)  # fmt: skip
def test_layouts_give_the_expected_output_sizes(triton, clips, args, size, tmp_path, capsys):
    output = tmp_path / "out.mp4"
    run = run_cli(capsys, clips["vfr"], "-o", output, "--url", triton.urls.grpc,
                  "--model", TINY, "-q", *args)  # fmt: skip
    assert run.code == 0, run.err
    info = probe(output)
    assert (info.width, info.height, info.codec) == (*size, "h264")
    assert len(read_timestamps(output)) == 12


def test_maps_are_written_raw_per_layer(tiny, clips, tmp_path):
    maps = tmp_path / "maps.npz"
    process_media(tiny, clips["vfr"], tmp_path / "out.mp4", maps=maps)
    with np.load(maps) as saved:
        assert set(saved.files) == {"conv1", "conv2", "frame_time"}
        assert saved["conv1"].shape == (12, len(ALL_METHODS), 30, 30)
        assert saved["conv2"].shape == (12, len(ALL_METHODS), 13, 13)
        assert saved["frame_time"] == pytest.approx(read_timestamps(clips["vfr"]))
        first = next(iter(open_media(clips["vfr"]).pictures((32, 32))))  # as the client sends it
        direct = tiny.infer(first.thumbnail[None], np.array([-1]))
        for layer in ("conv1", "conv2"):
            np.testing.assert_allclose(saved[layer][0], direct.maps[layer][0], rtol=1e-4, atol=1e-6)


def test_clip_scope_takes_two_passes_and_keeps_every_frame(tiny, clips, tmp_path, monkeypatch):
    clip = clips["cfr+audio"]
    running = process_media(tiny, clip, tmp_path / "running.mp4",
                            predictions=tmp_path / "running.jsonl")  # fmt: skip
    RecordingWriter.instances.clear()
    monkeypatch.setattr(file_stream, "VideoWriter", RecordingWriter)
    result = process_media(tiny, clip, tmp_path / "clip.mp4", JobSettings(scope="clip"),
                           predictions=tmp_path / "clip.jsonl")  # fmt: skip
    assert result.frames == running.frames == 12
    assert read_timestamps(tmp_path / "clip.mp4") == read_timestamps(clip)
    assert probe(tmp_path / "clip.mp4").has_audio
    clip_records, running_records = (
        read_jsonl(tmp_path / "clip.jsonl"),
        read_jsonl(tmp_path / "running.jsonl"),
    )
    assert [r["top5"][0]["index"] for r in clip_records] == [
        r["top5"][0]["index"] for r in running_records
    ]
    # Every frame divided by the one maximum of the whole clip, known before the first frame.
    (writer,) = RecordingWriter.instances
    assert_within_encoder_noise(
        writer.pictures, reference_frames(tiny, clip, scope="clip", scaler="ffmpeg")
    )
    running_reference = reference_frames(tiny, clip, scope="running", scaler="ffmpeg")
    differences = [
        np.abs(got.astype(int) - ref.astype(int)).max()
        for got, ref in zip(writer.images, running_reference, strict=True)
    ]
    assert max(differences) > 20, "clip scope composed like the running scope"


def test_a_single_image_gives_an_image(tiny, tmp_path):
    source = media.write_photo(tmp_path / "photo.png", "astronaut", size=(65, 33))
    output = tmp_path / "out.png"
    result = process_media(tiny, source, output, predictions=tmp_path / "p.jsonl",
                           maps=tmp_path / "m.npz")  # fmt: skip
    assert result.frames == 1
    image = cv2.imread(str(output))
    assert image.shape == (33, 65, 3)  # the image's own size: no padding for an encoder
    (record,) = read_jsonl(tmp_path / "p.jsonl")
    assert record["frame"] == 0 and record["time"] == 0.0
    with np.load(tmp_path / "m.npz") as saved:
        assert saved["conv1"].shape[0] == 1
    with pytest.raises(Exception, match="name an image output"):
        process_media(tiny, source, tmp_path / "out.mp4")
