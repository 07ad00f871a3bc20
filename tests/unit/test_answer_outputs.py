"""Answers and model folders that do not match the model's configuration: clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradcam_client.errors import InvalidResponse
from gradcam_client.remote.server import answer_output
from gradcam_server.triton_model import check_outputs


class Answer:
    """An inference answer holding only CLASS_INDEX."""

    def as_numpy(self, name: str) -> np.ndarray | None:
        return np.zeros((2, 1), np.int32) if name == "CLASS_INDEX" else None


def test_an_output_missing_from_an_answer_is_named() -> None:
    assert answer_output(Answer(), "CLASS_INDEX").shape == (2, 1)
    with pytest.raises(InvalidResponse, match=r"lacks TOP_CLASSES.*exported by an older version"):
        answer_output(Answer(), "TOP_CLASSES")


def test_a_savedmodel_lacking_declared_outputs_is_refused_by_name() -> None:
    config = {"output": [{"name": "CLASS_INDEX"}, {"name": "TOP_CLASSES"}, {"name": "CAM__a"}]}
    check_outputs(config, frozenset({"CLASS_INDEX", "TOP_CLASSES", "CAM__a", "EXTRA"}), Path("m"))
    with pytest.raises(RuntimeError, match=r"^m lacks CAM__a, TOP_CLASSES, which config.pbtxt"):
        check_outputs(config, frozenset({"CLASS_INDEX"}), Path("m"))
