"""Per-frame results on disk: JSONL predictions and raw maps, written as they arrive.

Both are written under a temporary name; `commit()` gives them their final name. After a
failure the predictions made so far stay in ``<name>.partial`` so no finished work is lost,
while nothing looks complete that is not.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gradcam_client.errors import OutputError


def frame_record(
    index: int,
    time: float,
    probabilities: np.ndarray,
    explained: int,
    class_names: Sequence[str],
    top_k: int = 5,
) -> dict[str, Any]:
    """The JSON object of one frame: its top class, the top-k and the explained class."""
    order = np.argsort(probabilities)[::-1][:top_k]
    best = int(order[0])
    return {
        "frame": index,
        "time": round(float(time), 6),
        "class_index": best,
        "class_name": class_names[best],
        "score": float(probabilities[best]),
        "top5": [
            {"index": int(i), "name": class_names[i], "probability": float(probabilities[i])}
            for i in order
        ],
        "explained_class": int(explained),
        "explained_name": class_names[explained],
    }


class PredictionLog:
    """Appends one JSON line per frame to ``<path>.partial``; renamed to ``path`` on commit.

    With `direct` (live sources, which have no complete state) the lines go straight to
    `path`, each one flushed to the operating system as it is written, so that whatever
    stops the process, every frame made so far has its line.
    """

    def __init__(self, path: str | Path, *, direct: bool = False) -> None:
        self.path = Path(path)
        self.direct = direct
        self.partial = self.path if direct else self.path.with_name(self.path.name + ".partial")
        self.count = 0
        self._file: TextIO | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.partial.open("w", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"cannot write predictions ({error.strerror})", path) from error

    def write(self, record: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(record) + "\n")
        if self.direct:
            self._file.flush()
        self.count += 1

    def close(self) -> None:
        """Stop writing, keeping the partial file (after a failure)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def commit(self) -> Path:
        """Close and give the file its final name."""
        self.close()
        try:
            self.partial.replace(self.path)
        except OSError as error:
            raise OutputError(f"cannot write predictions ({error.strerror})", self.path) from error
        return self.path


class MapStore:
    """Raw maps of every frame, appended to files on disk so memory stays flat."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self._dir = Path(tempfile.mkdtemp(prefix="gradcam-maps-"))
        self._files = {name: (self._dir / f"{i}.f32").open("wb") for i, name in enumerate(shapes)}
        self.count = 0

    def append(self, maps: dict[str, np.ndarray]) -> None:
        for name, file in self._files.items():
            file.write(np.ascontiguousarray(maps[name], dtype=np.float32).tobytes())
        self.count += 1

    def read(self, name: str) -> np.ndarray:
        """All maps of one layer, memory-mapped: [frames, *shape]."""
        self._files[name].flush()
        path = self._dir / f"{list(self.shapes).index(name)}.f32"
        if self.count == 0:
            return np.zeros((0, *self.shapes[name]), np.float32)
        return np.memmap(path, np.float32, "r", shape=(self.count, *self.shapes[name]))

    def save_npz(self, path: str | Path, **extra: np.ndarray) -> Path:
        """Write every layer's maps (and extra arrays) as a compressed .npz, atomically."""
        path = Path(path)
        partial = path.with_name(f".{path.stem}.partial.npz")
        arrays = {name: np.asarray(self.read(name)) for name in self.shapes}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(partial, **arrays, **extra)
            partial.replace(path)
        except OSError as error:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise OutputError(f"cannot write the maps ({error.strerror})", path) from error
        return path

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> MapStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
