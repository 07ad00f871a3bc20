"""Predictions and explained classes of the real EfficientNet-Lite0 on a clip of a cat."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import media
import pytest
from client_runs import read_jsonl, run_cli
from served_models import EFFNET, TINY

from gradcam_client.media import read_timestamps

pytestmark = pytest.mark.integration

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
N_FRAMES = 10


@pytest.fixture(scope="module")
def cat_clip(tmp_path_factory) -> Path:
    """A camera panning and zooming across scikit-image's `chelsea` (a tabby cat)."""
    folder = tmp_path_factory.mktemp("cat")
    return media.write_clip(folder / "chelsea.mp4", size=(224, 160), n_frames=N_FRAMES, fps=10)


def explain(capsys, triton, clip: Path, folder: Path, *args) -> list[dict]:
    """Run the CLI on the clip with efficientnet-lite0; return its JSONL records."""
    predictions = folder / "predictions.jsonl"
    run = run_cli(capsys, clip, "-o", folder / "out.mp4", "--url", triton.urls.grpc,
                  "--model", EFFNET, "--predictions", predictions, "-q", *args)  # fmt: skip
    assert run.code == 0, run.err
    assert run.err == ""
    return read_jsonl(predictions)


def test_the_predictions_name_a_cat_with_every_field(triton, cat_clip, tmp_path, capsys):
    records = explain(capsys, triton, cat_clip, tmp_path)
    assert [r["frame"] for r in records] == list(range(N_FRAMES))
    assert [r["time"] for r in records] == pytest.approx(read_timestamps(cat_clip), abs=1e-6)
    cats = sum(r["class_index"] in CATS for r in records)
    assert cats >= 0.8 * N_FRAMES, Counter(r["class_name"] for r in records)
    for r in records:
        assert set(r) >= {"frame", "time", "class_index", "class_name", "score", "top5"}
        assert [set(t) for t in r["top5"]] == [{"index", "name", "probability"}] * 5
        top = r["top5"]
        assert (top[0]["index"], top[0]["name"]) == (r["class_index"], r["class_name"])
        assert top[0]["probability"] == r["score"]
        probabilities = [t["probability"] for t in top]
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-6
        assert r["explained_class"] == r["class_index"]  # the predicted class by default
    assert "cat" in records[0]["class_name"] or records[0]["class_name"] == "tabby"


@pytest.mark.parametrize("target", ["Siamese cat", "siamese-cat", "SIAMESE CAT", "284"])
def test_a_target_class_by_forgiving_name_or_index(triton, cat_clip, tmp_path, capsys, target):
    records = explain(capsys, triton, cat_clip, tmp_path, "--target", target)
    assert {(r["explained_class"], r["explained_name"]) for r in records} == {(284, "Siamese cat")}


def test_the_video_target_explains_one_class_for_all_frames(triton, cat_clip, tmp_path, capsys):
    records = explain(capsys, triton, cat_clip, tmp_path, "--target", "video")
    explained = {r["explained_class"] for r in records}
    assert len(explained) == 1 and explained <= set(CATS)
    # The class with the highest mean probability (the top-5 lists hold every contender).
    mean = Counter()
    for r in records:
        for t in r["top5"]:
            mean[t["index"]] += t["probability"]
    assert explained == {mean.most_common(1)[0][0]}


def test_an_unknown_class_name_gets_suggestions(triton, cat_clip, tmp_path, capsys):
    run = run_cli(capsys, cat_clip, "-o", tmp_path / "out.mp4", "--url", triton.urls.grpc,
                  "--model", EFFNET, "--target", "siamese kitten")  # fmt: skip
    assert run.code == 1
    assert run.error.startswith("unknown class name 'siamese kitten'; did you mean: ")
    assert "Siamese cat" in run.error
    run = run_cli(capsys, cat_clip, "-o", tmp_path / "out.mp4", "--url", triton.urls.grpc,
                  "--model", TINY, "--target", "7")  # fmt: skip
    assert run.code == 1 and run.error == "class index 7 is out of range 0..4"
    assert not (tmp_path / "out.mp4").exists()
