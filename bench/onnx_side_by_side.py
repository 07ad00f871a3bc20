"""The picture of `onnx_models.py`: one video frame explained by each converted model, the
served Grad-CAM map beside pytorch-grad-cam's map of the same frame on the PyTorch model.

Both maps are scaled by their own maximum, upsampled (bicubic) and colour-mapped (jet) by the
client library's `overlay`, so the two panels of a row differ only where the maps do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gradcam_client.render.compose import draw_label, grid, overlay

PANEL = 224  # pixels per panel side


@dataclass
class Row:
    """One model: the frame as the model saw it, and the two raw maps [h, w]."""

    model: str
    frame: np.ndarray  # RGB uint8 at the model's input size
    served: np.ndarray
    library: np.ndarray
    label: str = ""  # e.g. the predicted class


def scaled(heat: np.ndarray) -> np.ndarray:
    """A raw map scaled to [0, 1] by its maximum (all zero stays all zero)."""
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat).astype(np.float32)


def panels(row: Row) -> list[np.ndarray]:
    """The frame, the served map over it, pytorch-grad-cam's map over it; titled."""
    frame = cv2.resize(row.frame, (PANEL, PANEL), interpolation=cv2.INTER_CUBIC)
    served = overlay(frame, scaled(row.served))
    library = overlay(frame, scaled(row.library))
    return [
        draw_label(frame, f"{row.model} {row.label}".strip(), "top-left"),
        draw_label(served, "served (Triton)", "top-left"),
        draw_label(library, "pytorch-grad-cam", "top-left"),
    ]


def write_picture(rows: list[Row], path: Path) -> Path:
    """One row per model (frame | served | pytorch-grad-cam) as a PNG at `path`."""
    if not rows:
        raise ValueError("no converted model to draw")
    image = grid([p for row in rows for p in panels(row)], columns=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path
