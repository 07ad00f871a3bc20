"""`gradcam-video --url a,b`: one video's frames spread over two Triton servers give the same
result as one server, and both servers did part of the work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from deploy_support import DEPLOY_MODEL
from triton_server import running_triton

from gradcam_client import cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def inference_count(url: str, model: str) -> int:
    """Frames the model computed on one server (batched frames count one each)."""
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
        return sum(int(s.get("inference_count", 0)) for s in stats)
    finally:
        client.close()


def explain(clip: Path, out: Path, urls: list[str]) -> list[dict]:
    """Run gradcam-video; returns the predictions, one dict per frame."""
    predictions = out.with_suffix(".jsonl")
    code = cli.main(
        [
            str(clip),
            "-o",
            str(out),
            "--url",
            ",".join(urls),
            "--model",
            DEPLOY_MODEL,
            "--predictions",
            str(predictions),
            "--maps",
            str(out.with_suffix(".npz")),
            "--batch-size",
            "4",
            "--max-in-flight",
            "4",
            "-q",
        ]
    )
    assert code == 0
    return [json.loads(line) for line in predictions.read_text().splitlines()]


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_two_servers_share_one_video(deploy_repository, tmp_path) -> None:
    from gradcam_client.media.samples import write_sample_clip

    clip = write_sample_clip(tmp_path / "clip.mp4", seconds=2.0, fps=15, size=(320, 240))
    frames = frame_count(clip)
    logs = tmp_path / "logs"
    with (
        running_triton(deploy_repository, log_dir=logs) as first,
        running_triton(deploy_repository, log_dir=logs) as second,
    ):
        urls = [first.urls.grpc, second.urls.grpc]
        single = explain(clip, tmp_path / "single.mp4", urls[:1])
        before = [inference_count(url, DEPLOY_MODEL) for url in urls]
        spread = explain(clip, tmp_path / "spread.mp4", urls)
        done = [inference_count(url, DEPLOY_MODEL) - b for url, b in zip(urls, before, strict=True)]

    assert len(single) == len(spread) == frames > 0
    assert frame_count(tmp_path / "single.mp4") == frame_count(tmp_path / "spread.mp4") == frames
    # Round robin: both servers computed frames, and together exactly the video's frames.
    assert all(count > 0 for count in done), done
    assert sum(done) == frames
    for one, two in zip(single, spread, strict=True):
        assert one["frame"] == two["frame"]
        assert one["class_index"] == two["class_index"]
        assert one["explained_class"] == two["explained_class"]
        assert abs(one["score"] - two["score"]) < 1e-4
        for a, b in zip(one["top5"], two["top5"], strict=True):
            assert a["index"] == b["index"] and abs(a["probability"] - b["probability"]) < 1e-4
    with (
        np.load(tmp_path / "single.npz") as a,
        np.load(tmp_path / "spread.npz") as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if a[name].dtype.kind == "f":
                np.testing.assert_allclose(a[name], b[name], atol=1e-4, rtol=1e-4)
            else:
                np.testing.assert_array_equal(a[name], b[name])
