"""Helpers for tests of the `gradcam-video` client: run the CLI, read its outputs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_client import cli

ERROR_PREFIX = "gradcam-video: error: "


@dataclass
class CliRun:
    """What one `gradcam-video` run returned and printed."""

    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The error message (without the prefix); asserts it is the only line on stderr."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), self.err
        return lines[0][len(ERROR_PREFIX) :]


def run_cli(capsys, *args: Any) -> CliRun:
    """Run `gradcam-video` in this process (`main`) with `args` (made strings)."""
    capsys.readouterr()
    code = cli.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
