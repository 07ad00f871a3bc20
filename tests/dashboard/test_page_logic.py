"""The page's plain logic: chart data, upload checks, pictures, run settings, the launcher."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction

import av
import numpy as np
import pytest
from media import write_clip, write_photo

from gradcam_client.errors import GradcamError
from gradcam_client.media import open_media
from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_client.render.compose import Layout
from gradcam_dashboard import charts, jobs, launch, media


def _record(frame: int, probs: dict[int, float], names: dict[int, str]) -> dict:
    ranked = sorted(probs.items(), key=lambda item: -item[1])
    best = ranked[0][0]
    return {
        "frame": frame,
        "time": frame / 10,
        "class_index": best,
        "class_name": names[best],
        "score": ranked[0][1],
        "top5": [{"index": i, "name": names[i], "probability": p} for i, p in ranked[:5]],
        "explained_class": best,
        "explained_name": names[best],
    }


NAMES = {0: "cat", 1: "dog", 2: "crane", 3: "crane", 4: "fox", 5: "owl", 6: "bee"}


@pytest.fixture
def records() -> list[dict]:
    return [
        _record(0, {0: 0.6, 1: 0.2, 2: 0.1, 3: 0.05, 4: 0.03, 5: 0.02}, NAMES),
        _record(1, {0: 0.5, 1: 0.3, 2: 0.1, 3: 0.05, 6: 0.03, 5: 0.02}, NAMES),
        _record(2, {1: 0.7, 0: 0.2, 2: 0.05, 4: 0.03, 3: 0.01, 5: 0.01}, NAMES),
    ]


def test_read_predictions_reads_jsonl(tmp_path, records):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    assert charts.read_predictions(path) == records


def test_top_classes_rank_by_mean_probability(records):
    assert charts.top_classes(records, 3) == [0, 1, 2]
    assert charts.top_classes([], 3) == []


def test_timeline_data_has_one_row_per_frame_and_top_class(records):
    data = charts.timeline_data(records, count=4)
    assert len(data) == 3 * 4
    assert list(data.columns) == ["frame", "time", "class", "probability"]
    # the two classes named "crane" stay apart
    assert list(data["class"].cat.categories) == ["cat", "dog", "crane (2)", "crane (3)"]
    dog = data[data["class"] == "dog"].sort_values("frame")
    assert dog["probability"].tolist() == pytest.approx([0.2, 0.3, 0.7])
    # a class outside a frame's top five counts as 0 there
    bee = charts.timeline_data(records, count=7)
    assert bee[bee["class"] == "bee"]["probability"].tolist() == pytest.approx([0, 0.03, 0])


def test_frame_top5_and_explained_summary(records):
    top = charts.frame_top5(records[2])
    assert top["class"].tolist()[:2] == ["dog", "cat"]
    assert top["probability"].is_monotonic_decreasing
    summary = charts.explained_summary(records)
    assert summary.to_dict("records") == [
        {"class": "cat", "frames": 2},
        {"class": "dog", "frames": 1},
    ]


def test_charts_build_vega_lite_specs(records):
    spec = charts.timeline_chart(charts.timeline_data(records), marker_time=0.1).to_dict()
    assert len(spec["layer"]) == 2  # lines and the inspected frame's rule
    assert charts.top5_chart(charts.frame_top5(records[0])).to_dict()["mark"]["type"] == "bar"
    history = [(0.0, 1.0, 8.0), (5.0, 2.0, 16.0)]
    data = charts.load_history_data(history)
    assert data["seconds ago"].tolist() == [-5.0, -5.0, 0.0, 0.0]
    assert charts.load_chart(data).to_dict()["mark"]["type"] == "area"
    assert charts.load_history_data([]).empty


@pytest.mark.parametrize(
    ("name", "size", "kind"),
    [("clip.MP4", 10, "video"), ("a.webm", 10, "video"), ("photo.jpeg", 10, "image")],
)
def test_check_upload_accepts_videos_and_images(name, size, kind):
    assert media.check_upload(name, size, 100) == kind


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("notes.txt", 10, "not a video or image"),
        ("noext", 10, "not a video or image"),
        ("clip.mp4", 0, "empty"),
        ("clip.mp4", 3 * 1024 * 1024, "3.0 MB; the largest file this page accepts is 1.0 MB"),
    ],
)
def test_check_upload_refuses_with_a_clear_message(name, size, message):
    with pytest.raises(media.UploadRejected, match=message):
        media.check_upload(name, size, 1024 * 1024)


def test_summarize_describes_videos_and_images(tmp_path):
    clip = media.summarize(write_clip(tmp_path / "clip.mp4", n_frames=6, fps=12))
    assert not clip.is_image and (clip.width, clip.height) == (160, 120)
    assert clip.frames == 6
    assert clip.describe().startswith("160x120 video, 0.5 s, 6 frames at 12.0 fps")
    photo = media.summarize(write_photo(tmp_path / "photo.png"))
    assert photo.is_image and photo.describe() == "96x96 image (png)"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.mp4", "ffconcat version 1.0\nfile secret.mp4\n"),
        ("list.ts", "ffconcat version 1.0\nfile secret.mp4\n"),
        (
            "list.m3u8",
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.0,\nsecret.mp4\n#EXT-X-ENDLIST\n",
        ),
    ],
)
def test_an_upload_that_names_other_files_reads_none_of_them(tmp_path, name, text):
    """A concat list or a playlist posing as a video would play the files it names."""
    write_clip(tmp_path / "secret.mp4", n_frames=6)
    upload = tmp_path / name
    upload.write_text(text)
    with pytest.raises(GradcamError, match="not a video or image"):
        media.summarize(upload)


CODECS = {"wmv": "wmv2", "flv": "flv", "mpg": "mpeg2video", "mpeg": "mpeg2video", "webm": "libvpx"}


@pytest.mark.parametrize("suffix", media.VIDEO_TYPES)
def test_every_video_type_the_page_accepts_opens(tmp_path, suffix):
    clip = write_clip(
        tmp_path / f"clip.{suffix}", n_frames=6, fps=12, codec=CODECS.get(suffix, "mpeg4"),
        time_base=Fraction(1, 12),
    )  # fmt: skip
    summary = media.summarize(clip)
    assert not summary.is_image and (summary.width, summary.height) == (160, 120)


@pytest.mark.parametrize("suffix", media.IMAGE_TYPES)
def test_every_image_type_the_page_accepts_opens(tmp_path, suffix):
    summary = media.summarize(write_photo(tmp_path / f"photo.{suffix}"))
    assert summary.is_image and (summary.width, summary.height) == (96, 96)


def test_extract_frames_keeps_matching_frames_of_both_files(tmp_path):
    source = write_clip(tmp_path / "in.mp4", n_frames=10, size=(160, 120))
    result = write_clip(tmp_path / "out.mp4", n_frames=10, size=(320, 120))
    strip = media.extract_frames(source, result, tmp_path / "frames", 10, max_frames=4)
    assert strip.step == 3 and strip.indices == [0, 3, 6, 9]
    assert strip.clamp(99) == 9 and strip.clamp(-1) == 0
    kept = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert kept[0] == "original-000000.jpg" and len(kept) == 8
    # every frame is reachable: the ones between kept frames are decoded when asked for
    for index in range(10):
        assert strip.original(index).name == f"original-{index:06d}.jpg"
        assert strip.original(index).is_file() and strip.result(index).is_file()
    wide = open_media(strip.result(8))
    assert (wide.info.width, wide.info.height) == (320, 120)
    frame_8 = next(f for f in open_media(source) if f.index == 8).image
    picture = open_media(strip.original(8))
    assert np.abs(next(iter(picture)).image.astype(int) - frame_8).mean() < 6


def test_map_picture_shows_each_cell_of_the_map():
    raw = np.zeros((7, 7), np.float32)
    raw[3, 4] = 2.0
    picture = media.map_picture(raw, "jet", size=224)
    assert picture.shape == (224, 224, 3) and picture.dtype == np.uint8
    hot = picture[3 * 32 + 16, 4 * 32 + 16]
    cold = picture[16, 16]
    assert hot[0] > 100 and cold[2] > 100  # red peak, blue floor under jet
    flat = media.map_picture(np.zeros((3, 3)), size=30)
    assert flat.shape == (30, 30, 3)
    assert media.colormap_strip("viridis").shape == (14, 256, 3)


def test_sample_clip_is_made_once_and_reused(tmp_path):
    path = media.sample_clip(tmp_path, "coffee", seconds=0.4)
    made = path.stat().st_mtime_ns
    assert media.sample_clip(tmp_path, "coffee", seconds=0.4) == path
    assert path.stat().st_mtime_ns == made
    assert media.summarize(path).frames == 6
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no leftovers


INFO = ModelInfo(
    name="m",
    input_height=32,
    input_width=32,
    class_names=("a", "b", "c"),
    layers=(LayerInfo("conv1", 30, 30), LayerInfo("conv2", 13, 13)),
    methods=("gradcam", "gradcampp", "layercam"),
)


def test_run_request_becomes_job_settings():
    request = jobs.RunRequest(
        model="m",
        layout="grid_methods",
        layers=("conv2",),
        methods=("gradcam", "layercam"),
        target="class",
        class_index=2,
        colormap="inferno",
        alpha=0.7,
        scope="clip",
        smoothing=0.5,
        include_original=True,
    )
    settings = request.job_settings()
    assert settings.target == "2"
    assert settings.layers == ("conv2",) and settings.methods == ("gradcam", "layercam")
    assert settings.scope == "clip" and settings.smoothing == 0.5
    composition = settings.composition
    assert composition.layout is Layout.GRID and composition.include_original
    assert composition.colormap == "inferno" and composition.alpha == 0.7
    assert jobs.panels(request, INFO) == [("conv2", 0), ("conv2", 2)]
    overlay = jobs.RunRequest(model="m", layout="side_by_side", include_original=True)
    assert overlay.job_settings().composition.layout is Layout.SIDE_BY_SIDE
    assert not overlay.job_settings().composition.include_original
    assert overlay.job_settings().target == "predicted"
    assert jobs.panels(overlay, INFO) == [("conv1", 0)]
    with pytest.raises(ValueError, match="choose a class"):
        jobs.RunRequest(model="m", target="class").job_settings()


def test_progress_text_reports_frames_per_second_and_time_left():
    assert jobs.progress_text(20, 60, 2.0) == "Frame 20 of 60 · 10.0 frames/s · about 4 s left"
    assert jobs.progress_text(5, None, 2.0) == "Frame 5 · 2.5 frames/s"
    assert (
        jobs.progress_text(0, 60, 0.0, "Whole-clip pass: frame") == "Whole-clip pass: frame 0 of 60"
    )
    assert jobs.progress_fraction(20, 60) == pytest.approx(1 / 3)
    assert jobs.progress_fraction(5, None) == 0.0 and jobs.progress_fraction(70, 60) == 1.0


def test_grid_layouts_are_offered_only_for_several_layers_or_methods():
    one = ModelInfo("m", 8, 8, ("a", "b"), (LayerInfo("c", 2, 2),), ("gradcam",), 8)
    assert jobs.layouts_for(one) == ["overlay", "side_by_side"]
    assert jobs.layouts_for(INFO) == ["overlay", "side_by_side", "grid_layers", "grid_methods"]


def test_the_label_stays_clear_of_the_players_controls():
    overlay = jobs.RunRequest(model="m").job_settings().composition
    assert overlay.label_corner == "top-right" and not overlay.show_titles  # no clash on top
    grid = jobs.RunRequest(model="m", layout="grid_layers").job_settings().composition
    assert grid.label_corner == "top-right" and grid.show_titles


def test_rate_axes_never_use_exponents():
    assert charts.axis_format([0.0, 20.0, 35.5]) == ",.0f"
    assert charts.axis_format([0.2, 1.5]) == ".1f" and charts.axis_format([]) == ".1f"
    data = charts.load_history_data([(0.0, 1.0, 20.0), (5.0, 2.0, 25.0)])
    axis = charts.load_chart(data).to_dict()["encoding"]["y"]["axis"]
    assert axis["format"] == ",.0f"


def test_the_timeline_gives_each_class_a_clearly_different_colour(records):
    spec = charts.timeline_chart(charts.timeline_data(records)).to_dict()
    colour = spec["layer"][0]["encoding"]["color"]["scale"]["range"]
    rgb = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in colour]
    closest = min(
        sum((a - b) ** 2 for a, b in zip(x, y, strict=True)) ** 0.5
        for i, x in enumerate(rgb)
        for y in rgb[i + 1 :]
    )
    assert len(set(colour)) == len(colour) and closest > 80


def test_output_names(tmp_path):
    assert jobs.output_name(False, tmp_path / "a.mkv") == "result.mp4"
    assert jobs.output_name(True, tmp_path / "a.JPG") == "result.jpg"
    assert jobs.output_name(True, tmp_path / "a.tiff") == "result.png"


def test_launcher_runs_streamlit_headless_with_the_options(tmp_path):
    options = ["--port", "9999", "--url", "triton:8001", "--max-upload-mb", "0.5"]
    more = ["--metrics-url", "http://triton:8002/metrics", "--session-dir", str(tmp_path)]
    args = launch.build_parser().parse_args([*options, *more])
    command = launch.build_command(args, python="/py")
    assert command[:5] == ["/py", "-m", "streamlit", "run", str(launch.APP)]
    assert launch.APP.is_file()
    assert "--server.headless=true" in command
    assert "--server.port=9999" in command
    assert "--server.maxUploadSize=1" in command  # Streamlit counts whole MB
    env = launch.build_environment(args, base={"PATH": "/bin", "GRADCAM_METRICS_URL": "x"})
    assert env["GRADCAM_URL"] == "triton:8001"
    assert env["GRADCAM_ALLOW_ANY_URL"] == "0" and env["GRADCAM_TLS"] == "0"
    assert env["GRADCAM_MAX_RESOLUTION"] == "1920x1080" and env["GRADCAM_MAX_FRAMES"] == "9000"
    assert env["GRADCAM_MAX_UPLOAD_MB"] == "0.5"
    assert env["GRADCAM_METRICS_URL"] == "http://triton:8002/metrics"
    assert env["GRADCAM_DASHBOARD_DIR"] == str(tmp_path)
    assert env["PATH"] == "/bin"
    assert env["GRADCAM_WIRE"] == "auto"
    png = launch.build_parser().parse_args(["--wire", "png"])
    assert launch.build_environment(png)["GRADCAM_WIRE"] == "png"


def test_launcher_refuses_a_nonsense_limit(capsys):
    with pytest.raises(SystemExit):
        launch.main(["--max-upload-mb", "0"])
    assert "must be positive" in capsys.readouterr().err


def test_launcher_defaults_follow_the_environment(monkeypatch):
    monkeypatch.setenv("GRADCAM_URL", "env-host:8001")
    monkeypatch.setenv("GRADCAM_METRICS_URL", "http://env-host:9102/metrics")
    monkeypatch.setenv("GRADCAM_MAX_RESOLUTION", "720x1280")
    args = launch.build_parser().parse_args([])
    assert isinstance(args, argparse.Namespace) and args.url is None
    assert args.port == 8501 and args.max_upload_mb == 200
    assert args.max_resolution == (1280, 720)
    monkeypatch.setenv("GRADCAM_WIRE", "jpeg")
    assert launch.build_parser().parse_args([]).wire == "jpeg"
    env = launch.build_environment(args)
    assert env["GRADCAM_URL"] == "env-host:8001"  # the compose file's settings still work
    assert env["GRADCAM_METRICS_URL"] == "http://env-host:9102/metrics"
    several = launch.build_parser().parse_args(["--url", "a:8001", "--url", "b:9001,c:9001"])
    assert launch.build_environment(several)["GRADCAM_URL"] == "a:8001 b:9001,c:9001"
    assert "GRADCAM_METRICS_URL" not in launch.build_environment(several)


def test_launcher_refuses_tls_files_it_cannot_read(tmp_path, capsys):
    with pytest.raises(SystemExit):
        launch.main(["--tls-ca", str(tmp_path / "missing.pem")])
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["--tls-key", str(tmp_path / "k.pem")])
    assert "needs both" in capsys.readouterr().err


def test_a_preview_is_a_smaller_h264_copy_with_the_same_frames_and_times(tmp_path):
    from gradcam_dashboard.preview import Preview

    source = tmp_path / "in.avi"  # MPEG-4 Part 2 in AVI: what browsers cannot play
    with av.open(str(source), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 800, 600, "yuv420p"
        for i in range(20):
            image = np.full((600, 800, 3), i * 10, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    summary = media.summarize(source)
    assert not media.browser_playable(source, summary)
    preview = Preview(source, tmp_path / "preview.mp4")
    assert preview.wait(60) and preview.ready == tmp_path / "preview.mp4", preview.error
    copy = open_media(preview.ready)
    assert copy.info.codec == "h264" and (copy.info.width, copy.info.height) == (640, 480)
    assert [f.time for f in copy] == pytest.approx([f.time for f in open_media(source)])
    assert media.browser_playable(preview.ready, media.summarize(preview.ready))
