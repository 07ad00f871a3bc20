"""Per-frame results on disk: JSON-lines predictions and raw maps, complete or clearly partial."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcam_client.errors import OutputError
from gradcam_client.jobs.results import MapStore, PredictionLog, frame_record

NAMES = ("a", "b", "c", "d", "e", "f")


def test_a_frame_record_has_the_top_class_the_top_k_and_the_explained_class():
    probabilities = np.array([0.06, 0.5, 0.12, 0.2, 0.08, 0.04], np.float32)
    record = frame_record(7, 0.2333333333, probabilities, explained=3, class_names=NAMES)
    assert record == {
        "frame": 7,
        "time": 0.233333,
        "class_index": 1,
        "class_name": "b",
        "score": pytest.approx(0.5),
        "top5": [
            {"index": 1, "name": "b", "probability": pytest.approx(0.5)},
            {"index": 3, "name": "d", "probability": pytest.approx(0.2)},
            {"index": 2, "name": "c", "probability": pytest.approx(0.12)},
            {"index": 4, "name": "e", "probability": pytest.approx(0.08)},
            {"index": 0, "name": "a", "probability": pytest.approx(0.06)},
        ],
        "explained_class": 3,
        "explained_name": "d",
    }
    assert json.loads(json.dumps(record)) == record  # plain JSON types only
    assert len(frame_record(0, 0, probabilities, 1, NAMES, top_k=2)["top5"]) == 2
    assert len(frame_record(0, 0, probabilities[:3], 1, NAMES[:3])["top5"]) == 3


def test_predictions_get_their_name_only_when_committed(tmp_path):
    path = tmp_path / "sub" / "p.jsonl"
    log = PredictionLog(path)
    log.write({"frame": 0})
    log.write({"frame": 1})
    assert not path.exists() and log.partial == tmp_path / "sub" / "p.jsonl.partial"
    assert log.commit() == path
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"frame": 0},
        {"frame": 1},
    ]
    assert not log.partial.exists() and log.count == 2


def test_predictions_of_a_failed_run_stay_partial(tmp_path):
    path = tmp_path / "p.jsonl"
    log = PredictionLog(path)
    log.write({"frame": 0})
    log.close()
    log.close()  # idempotent
    assert not path.exists()
    assert log.partial.read_text() == '{"frame": 0}\n'


def test_an_unwritable_predictions_path_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"p.jsonl: cannot write predictions"):
        PredictionLog(blocker / "p.jsonl")


def test_maps_go_to_disk_and_come_back_per_layer(tmp_path, rng):
    shapes = {"conv1": (2, 4, 4), "conv2": (2, 3, 3)}
    frames = [{name: rng.random(shape, np.float32) for name, shape in shapes.items()}]
    frames.append({name: rng.random(shape, np.float32) for name, shape in shapes.items()})
    with MapStore(shapes) as store:
        assert store.read("conv1").shape == (0, 2, 4, 4)
        for maps in frames:
            store.append(maps)
        conv1 = store.read("conv1")
        assert conv1.shape == (2, 2, 4, 4) and store.count == 2
        np.testing.assert_array_equal(conv1[1], frames[1]["conv1"])
        path = store.save_npz(tmp_path / "out" / "maps.npz", frame_time=np.array([0.0, 0.5]))
        folder = store._dir
    assert not folder.exists()  # the temporary maps are removed
    assert sorted(p.name for p in path.parent.iterdir()) == ["maps.npz"]  # no partial left
    with np.load(path) as saved:
        assert set(saved.files) == {"conv1", "conv2", "frame_time"}
        np.testing.assert_array_equal(saved["conv2"], np.stack([f["conv2"] for f in frames]))
        assert saved["frame_time"].tolist() == [0.0, 0.5]


def test_an_unwritable_maps_path_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with MapStore({"l": (1, 2, 2)}) as store:
        store.append({"l": np.zeros((1, 2, 2), np.float32)})
        with pytest.raises(OutputError, match="cannot write the maps"):
            store.save_npz(blocker / "maps.npz")
