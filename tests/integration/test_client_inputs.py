"""Awkward and broken inputs through `gradcam-video` and the real Triton: one-line errors for
what cannot be used, a correct output for everything that can."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import media
import numpy as np
import psutil
import pytest
from client_runs import read_jsonl, run_cli
from served_models import TINY

from gradcam_client.media import iter_frames, probe, read_timestamps

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("inputs")


@pytest.fixture(scope="module")
def good_clip(folder) -> Path:
    return media.write_clip(folder / "good.mp4", size=(64, 48), n_frames=12)


@pytest.fixture(scope="module")
def intra_clip(folder) -> Path:
    """Every frame its own PNG packet, so damaging a packet damages exactly one frame."""
    return media.write_clip(
        folder / "intra.mov", size=(64, 48), n_frames=12, codec="png", pix_fmt="rgb24"
    )


def gradcam(capsys, triton, source: Path, output: Path, *args):
    return run_cli(capsys, source, "-o", output, "--url", triton.urls.grpc, "--model", TINY,
                   "--retry-deadline", 5, "-q", *args)  # fmt: skip


BROKEN = {
    "text posing as a video": (
        lambda d, clip, intra: media.write_text_file(d / "notes.mp4"),
        "notes.mp4: is a text file, not a video or image",
    ),
    "empty file": (
        lambda d, clip, intra: media.write_empty_file(d / "empty.mp4"),
        "empty.mp4: file is empty (0 bytes)",
    ),
    "truncated download": (
        lambda d, clip, intra: media.write_truncated(clip, d / "half.mp4", 0.5),
        "half.mp4: truncated MP4/QuickTime file: the 'mdat' box ends",
    ),
    "audio only": (
        lambda d, clip, intra: media.write_audio_only(d / "song.m4a"),
        "song.m4a: has no video stream (found: audio (aac))",
    ),
    "no decodable frame": (
        lambda d, clip, intra: media.write_corrupted(intra, d / "garbage.mov", range(12)),
        "garbage.mov: video stream has no decodable frame (12 corrupt packets)",
    ),
    "missing file": (lambda d, clip, intra: d / "nowhere.mp4", "nowhere.mp4: no such file"),
    "a folder": (lambda d, clip, intra: d, "not a regular file"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_unusable_inputs_get_one_clear_line(
    triton, folder, good_clip, intra_clip, tmp_path, capsys, case
):
    make, message = BROKEN[case]
    source = make(folder, good_clip, intra_clip)
    output = tmp_path / "out.mp4"
    run = gradcam(capsys, triton, source, output)
    assert run.code == 1
    assert message in run.error
    assert str(source) in run.error  # which file
    assert list(tmp_path.iterdir()) == []


def test_corrupt_frames_are_skipped_and_named_or_stop_the_run(
    triton, folder, intra_clip, tmp_path, capsys
):
    damaged = media.write_corrupted(intra_clip, folder / "damaged.mov", [4, 7])
    output = tmp_path / "out.mp4"
    run = gradcam(capsys, triton, damaged, output, "--predictions", tmp_path / "p.jsonl")
    assert run.code == 0
    assert run.err == (
        "gradcam-video: warning: skipped 2 corrupt frames (#4 at 0.333 s, #7 at 0.583 s)\n"
    )
    kept = [t for i, t in enumerate(read_timestamps(intra_clip)) if i not in (4, 7)]
    assert read_timestamps(output) == pytest.approx(kept, abs=1e-6)
    assert [r["time"] for r in read_jsonl(tmp_path / "p.jsonl")] == pytest.approx(kept, abs=1e-6)

    output.unlink()
    run = gradcam(capsys, triton, damaged, output, "--stop-on-corrupt")
    assert run.code == 1
    assert run.error.startswith(f"{damaged}: frame #4 at 0.333 s cannot be decoded")
    assert not output.exists()


@pytest.mark.parametrize(
    ("name", "write", "size"),
    [
        ("1x1", lambda p: media.write_clip(
            p.with_suffix(".mov"), frames=[np.full((1, 1, 3), 40 * i, np.uint8) for i in range(4)],
            codec="png", pix_fmt="rgb24"), (2, 2)),
        ("33x17", lambda p: media.write_clip(
            p, size=(33, 17), n_frames=4, codec="libx264", pix_fmt="yuv444p"), (34, 18)),
        ("gray", lambda p: media.write_gray_clip(
            p.with_suffix(".mkv"), size=(64, 48), n_frames=4), (64, 48)),
        ("alpha", lambda p: media.write_alpha_clip(
            p.with_suffix(".mov"), size=(64, 48), n_frames=4), (64, 48)),
        ("rotated", lambda p: media.write_clip(
            p, size=(64, 48), n_frames=4, rotation=90), (64, 48)),
    ],
)  # fmt: skip
def test_unusual_but_valid_videos_are_processed(triton, tmp_path, capsys, name, write, size):
    source = write(tmp_path / f"{name}.mp4")
    output = tmp_path / "out.mp4"
    run = gradcam(capsys, triton, source, output)
    assert run.code == 0, run.err
    info = probe(output)
    # yuv420p needs even sizes: odd ones gain a row/column; nothing else changes.
    assert (info.width, info.height, info.codec) == (*size, "h264")
    assert read_timestamps(output) == pytest.approx(read_timestamps(source), abs=1e-6)
    if name == "rotated":  # upright, like the input as a player shows it
        assert probe(source).rotation == 90 and info.rotation == 0


def test_odd_and_one_pixel_images_keep_their_size(triton, tmp_path, capsys):
    for size in [(1, 1), (33, 17)]:
        source = media.write_photo(tmp_path / f"{size[0]}.png", "coffee", size=size)
        output = tmp_path / f"out{size[0]}.png"
        run = gradcam(capsys, triton, source, output)
        assert run.code == 0, run.err
        assert cv2.imread(str(output)).shape == (size[1], size[0], 3)


def test_a_video_output_name_for_an_image_and_back(triton, good_clip, tmp_path, capsys):
    photo = media.write_photo(tmp_path / "photo.jpg", "coffee")
    run = gradcam(capsys, triton, photo, tmp_path / "out.mp4")
    assert run.code == 1 and "the input is an image; name an image output" in run.error
    run = gradcam(capsys, triton, good_clip, tmp_path / "out.png")
    assert run.code == 1 and "the input is a video; name an .mp4 output" in run.error


def test_huge_frames_take_bounded_memory_and_time(triton, tmp_path, capsys):
    """Two 8K frames (7680x4320, 100 MB each as RGB): decoded, sent, composed and encoded in
    well under a minute (about 20 s on two cores), in about 1 GB (x264's own buffers are much
    of it; the bound leaves room for encoders using more threads). How many frames a long
    clip keeps in memory is bounded separately (tests/unit/test_pipeline_stream.py)."""
    size = (7680, 4320)
    source = media.write_clip(tmp_path / "8k.mp4", frames=media.pan_zoom_frames(2, size),
                              fps=2, options={"preset": "ultrafast"})  # fmt: skip
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        run = gradcam(capsys, triton, source, tmp_path / "out.mp4")
    finally:
        running = False
        sampler.join()
    seconds = time.monotonic() - started
    assert run.code == 0, run.err
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count) == (*size, 2)
    frame_bytes = size[0] * size[1] * 3
    assert peak - baseline < 20 * frame_bytes, f"{(peak - baseline) / 2**20:.0f} MiB"
    assert seconds < 90, f"{seconds:.1f} s"
    first = next(iter(iter_frames(tmp_path / "out.mp4"))).image
    assert first.shape == (size[1], size[0], 3)
