"""Two models, or two versions of one, on the same video through a real Triton.

The server of this module serves `tiny` in two versions (other weights, both loaded), `other`
(another input size and other class names; of its versions 1 and 2 only the latest is
loaded) and `nomaps` (predictions only).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import cv2
import media
import numpy as np
import pytest
from client_runs import read_jsonl, run_cli
from versioned_models import export_versions, tiny_source

from gradcam_client.compare.agreement import compare_maps
from gradcam_client.compare.job import compare_media
from gradcam_client.compare.results import read_comparisons, read_summary
from gradcam_client.errors import Cancelled, ModelNotFound
from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.remote.server import GradcamServer, RetryPolicy

pytestmark = pytest.mark.integration

SIZE = (96, 64)  # width, height
FRAMES = 12
OTHER_CLASSES = ["fox", "owl", "heron"]
LAYERS = ("conv1", "conv2")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from triton_server import running_triton

    folder = tmp_path_factory.mktemp("compare")
    repo, keras = folder / "repo", folder / "keras"
    export_versions(repo, "tiny", [tiny_source(keras, 0), tiny_source(keras, 1)], layers=LAYERS)
    other = tiny_source(keras, 2, size=48, classes=3, class_names=OTHER_CLASSES)
    export_versions(repo, "other", [other, other], policy="latest:1")
    export_versions(repo, "nomaps", [tiny_source(keras, 0)], layers=())
    with running_triton(repo, log_dir=folder / "logs") as triton:
        yield triton


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return media.write_clip(
        tmp_path_factory.mktemp("clip") / "pan.mp4", size=SIZE, n_frames=FRAMES, fps=12
    )


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def inferences(server, model: str, version: str) -> int:
    stats = GradcamServer(server.urls.grpc, f"{model}:{version}").statistics()[0]
    return sum(int(s.get("inference_count", 0)) for s in stats.get("model_stats", []))


def test_two_versions_side_by_side(server, clip, tmp_path, capsys):
    out = tmp_path / "cmp.mp4"
    run = run_cli(
        capsys, clip, "-o", out, "--url", server.urls.grpc, "--model", "tiny:1",
        "--compare", ":2", "--layers", "conv2", "--maps", tmp_path / "maps.npz",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "compared tiny:1 | tiny:2 on 12 frames" in run.out
    assert f"wrote {tmp_path / 'maps-a.npz'}" in run.out
    assert "top-1 agreement:" in run.out

    frames = decoded(out)
    assert len(frames) == FRAMES
    height, width = frames[0].shape[:2]
    assert width == 2 * SIZE[0]
    assert height > SIZE[1]  # the caption and the strip below the halves
    for i in (0, FRAMES - 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
    halves = [f[: SIZE[1]] for f in frames]
    left = np.stack([h[:, : SIZE[0]] for h in halves]).astype(float)
    right = np.stack([h[:, SIZE[0] :] for h in halves]).astype(float)
    assert left.mean() > 30 and right.mean() > 30  # neither half is black
    assert np.abs(left - right).mean() > 8  # other weights, other maps

    lines = read_jsonl(tmp_path / "cmp.compare.jsonl")
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    for line in lines:
        assert {"class_name", "score", "top5", "explained_class"} <= set(line["a"])
        assert {"class_name", "score", "top5", "explained_class"} <= set(line["b"])
        assert isinstance(line["top1_agree"], bool)
        assert -1 <= line["map_correlation"] <= 1 and 0 <= line["hot_iou"] <= 1
        assert line["map_distance"] >= 0
    summary = read_summary(tmp_path / "cmp.compare.json")
    assert (summary.a, summary.b, summary.frames) == ("tiny:1", "tiny:2", FRAMES)
    assert summary.map_correlation.mean < 0.99  # other weights look elsewhere
    agree = [line["top1_agree"] for line in lines]
    assert summary.agreement_rate == pytest.approx(sum(agree) / FRAMES)
    worst = max(lines, key=lambda line: line["map_distance"])
    assert summary.worst_frames[0] == worst["frame"]

    # --maps: each side's raw maps, the ones the per-frame measures were taken on
    with np.load(tmp_path / "maps-a.npz") as a_maps, np.load(tmp_path / "maps-b.npz") as b_maps:
        assert a_maps["conv2"].shape[0] == b_maps["conv2"].shape[0] == FRAMES
        for line, map_a, map_b in zip(lines, a_maps["conv2"], b_maps["conv2"], strict=True):
            measured = compare_maps(map_a[0], map_b[0])
            assert line["map_correlation"] == pytest.approx(measured.correlation, abs=1e-5)

    # A's side says what a run of A alone says
    alone = tmp_path / "alone.jsonl"
    run = run_cli(
        capsys, clip, "-o", tmp_path / "alone.mp4", "--url", server.urls.grpc,
        "--model", "tiny:1", "--layers", "conv2", "--predictions", alone,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert [r["class_name"] for r in read_jsonl(alone)] == [
        line["a"]["class_name"] for line in lines
    ]


def test_a_model_against_itself_agrees_exactly(server, clip, tmp_path):
    a = GradcamServer(server.urls.grpc, "tiny:2")
    b = GradcamServer(server.urls.grpc, "tiny:2")
    result = compare_media(a, b, clip, tmp_path / "same.mp4", JobSettings(batch_size=4))
    summary = result.summary
    assert summary.agreement_rate == 1.0
    assert (summary.map_correlation.worst, summary.hot_iou.worst) == (1.0, 1.0)
    assert summary.map_distance.worst == pytest.approx(0.0, abs=1e-6)
    assert summary.differing_frames == 0
    assert all(not f.differ for f in read_comparisons(result.predictions))
    frame = decoded(result.output)[FRAMES // 2]
    left, right = frame[: SIZE[1], : SIZE[0]], frame[: SIZE[1], SIZE[0] :]
    difference = np.abs(left.astype(np.int16) - right.astype(np.int16))
    # The same picture on both sides, up to H.264's noise, which can reach a few pixels hard.
    assert difference.mean() < 8, difference.mean()
    assert np.percentile(difference, 99.9) < 40, np.percentile(difference, 99.9)


def test_models_without_a_shared_class_compare_maps_only(server, clip, tmp_path, capsys):
    out = tmp_path / "other.mp4"
    run = run_cli(
        capsys, clip, "-o", out, "--url", server.urls.grpc, "--model", "tiny",
        "--compare", "other", "--layers", "conv2", "--summary", tmp_path / "s.json",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "tiny and other share no class name" in run.out
    assert "top-1 agreement: n/a" in run.out
    lines = read_jsonl(tmp_path / "other.compare.jsonl")
    assert {line["top1_agree"] for line in lines} == {None}
    assert {line["b"]["class_name"] for line in lines} <= set(OTHER_CLASSES)
    assert all(np.isfinite(line["map_distance"]) for line in lines)
    summary = read_summary(tmp_path / "s.json")
    assert summary.agreement_rate is None and summary.shared_classes == 0
    assert decoded(out)[0].shape[1] == 2 * SIZE[0]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Long enough that a run stopped after a few frames is far from its end."""
    return media.write_clip(
        tmp_path_factory.mktemp("long") / "long.mp4", size=SIZE, n_frames=600, fps=30
    )


def run_cancelled(job, after: int) -> tuple[Cancelled, float]:
    """Run `job(progress, cancel)`, its cancel set from another thread once `after` frames
    are done (at once for 0); the error it ends with and the seconds from cancel to there."""
    cancel, done = threading.Event(), []
    set_at: list[float] = []

    def stop_later() -> None:
        while len(done) < after:
            time.sleep(0.001)
        set_at.append(time.monotonic())
        cancel.set()

    stopper = threading.Thread(target=stop_later, daemon=True)
    stopper.start()
    if after == 0:
        stopper.join()
    with pytest.raises(Cancelled, match="the job was stopped") as caught:
        job(lambda count, total: done.append(count), cancel)
    return caught.value, time.monotonic() - set_at[0]


@pytest.mark.parametrize("after", [0, 5])
def test_a_cancelled_comparison_ends_at_once_keeping_only_its_lines(
    server, long_clip, tmp_path, after
):
    out = tmp_path / "stopped.mp4"
    a, b = GradcamServer(server.urls.grpc, "tiny:1"), GradcamServer(server.urls.grpc, "tiny:2")
    error, seconds = run_cancelled(
        lambda progress, cancel: compare_media(
            a, b, long_clip, out, JobSettings(batch_size=4), progress=progress, cancel=cancel
        ),
        after,
    )
    assert seconds < 5  # the whole clip takes far longer
    assert not out.exists() and not (tmp_path / "stopped.compare.json").exists()
    partial = tmp_path / "stopped.compare.jsonl.partial"
    notes = " ".join(getattr(error, "__notes__", []))
    if after:  # the frames compared before the stop keep their lines, in the partial file
        lines = read_jsonl(partial)
        assert after <= len(lines) < 600
        assert f"{len(lines)} of 600 frames were done" in notes and str(partial) in notes
    else:
        assert not partial.exists() or not partial.read_text()
        assert "frames were done" not in notes


@pytest.mark.parametrize("after", [0, 5])
def test_a_cancelled_single_model_run_ends_at_once(server, long_clip, tmp_path, after):
    out = tmp_path / "stopped.mp4"
    with GradcamServer(server.urls.grpc, "tiny:1") as tiny:
        _, seconds = run_cancelled(
            lambda progress, cancel: process_media(
                tiny, long_clip, out, JobSettings(batch_size=4), progress=progress, cancel=cancel
            ),
            after,
        )
    assert seconds < 5
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "tiny:1", "--compare", "other:1"],
         "the server has model 'other' but not its version 1; it serves version 2"),
        (["--model", "tiny:3", "--compare", "tiny:1"],
         "the server has model 'tiny' but not its version 3; it serves versions 1, 2"),
        (["--model", "tiny:1", "--compare", "nomaps"], "model nomaps computes no maps"),
        (["--model", "tiny:1", "--compare", "nope"], "no Grad-CAM model 'nope'; it hosts: "),
        (["--model", "tiny:1", "--compare", "other", "--target", "zebra"],
         "neither tiny:1 nor other knows the class 'zebra'"),
        (["--model", "tiny:1", "--compare", "other", "--target", "fox"],
         "other knows the class 'fox' but tiny:1 does not"),
        (["--model", "tiny:1", "--compare", ":2", "--layout", "grid"], "has its own layout"),
    ],
)  # fmt: skip
def test_bad_comparisons_fail_in_one_line_before_any_frame(
    server, clip, tmp_path, capsys, args, message
):
    before = inferences(server, "tiny", "1")
    out = tmp_path / "never.mp4"
    run = run_cli(capsys, clip, "-o", out, "--url", server.urls.grpc, "--retry-deadline", 5, *args)
    assert run.code == 1
    assert message in run.error
    assert inferences(server, "tiny", "1") == before  # not one frame was sent
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("tiny:9", "the server has model 'tiny' but not its version 9; it serves versions 1, 2"),
        ("other:1", "the server has model 'other' but not its version 1; it serves version 2"),
    ],
)
def test_a_version_that_is_not_loaded_fails_at_once_in_one_line(server, ref, message):
    client = GradcamServer(server.urls.grpc, ref, retry=RetryPolicy(deadline_s=60))
    started = time.monotonic()
    with pytest.raises(ModelNotFound) as caught:
        client.model_info()
    assert time.monotonic() - started < 10  # not retried until the 60 s deadline
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_list_models_names_each_loaded_version(server, capsys):
    run = run_cli(capsys, "--list-models", "--url", server.urls.grpc)
    assert run.code == 0, run.err
    assert run.out.split() == ["nomaps", "other", "tiny", "tiny:1", "tiny:2"]
