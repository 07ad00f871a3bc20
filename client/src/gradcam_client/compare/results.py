"""The result files of a comparison: one JSON line per frame, and a summary JSON.

A frame's line (`FrameComparison.record`)::

    {"frame": 12, "time": 0.48,
     "a": {<the usual prediction fields of model A: class_index, class_name, score, top5,
           explained_class, explained_name>},
     "b": {<the same for model B>},
     "top1_agree": true,          # A's and B's top classes (by name, among the names they
                                  # share) are the same; null when they share no class name
     "map_correlation": 0.93,     # Pearson correlation of the two raw maps, -1..1
     "hot_iou": 0.71,             # IoU of their hottest 20 %, 0..1
     "map_distance": 0.04,        # sliced earth mover's distance, in frame sides (sort by it)
     "differ": false}             # what the video's strip marks (see `differs`)

The summary (`CompareSummary`, written as ``<output>.compare.json`` unless named otherwise):
the two models, frames, shared class names, the top-1 agreement rate, the mean and worst of
each map measure, the frames that differ and the worst frames' indices (largest distance
first). `read_comparisons` and `read_summary` load them back (the dashboard does).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradcam_client.compare.agreement import MapAgreement
from gradcam_client.errors import InputError, OutputError

WORST_FRAMES = 10
"""How many of the worst frames the summary names."""

DIFFER_IOU = 0.5
"""Maps whose hot regions overlap less than this (IoU) count as looking elsewhere."""


def differs(top1_agree: bool | None, agreement: MapAgreement) -> bool:
    """Whether a frame is marked as one where the models differ: other top classes, or hot
    regions overlapping less than `DIFFER_IOU`."""
    return top1_agree is False or agreement.hot_iou < DIFFER_IOU


@dataclass(frozen=True)
class FrameComparison:
    """One frame of a comparison: both models' predictions and how their maps agree."""

    frame: int
    time: float
    a: dict[str, Any]  # `results.frame_record` fields without frame and time
    b: dict[str, Any]
    top1_agree: bool | None
    agreement: MapAgreement

    @property
    def differ(self) -> bool:
        return differs(self.top1_agree, self.agreement)

    def record(self) -> dict[str, Any]:
        """The frame's JSON line."""
        metrics = self.agreement.as_dict()
        return {
            "frame": self.frame,
            "time": round(self.time, 6),
            "a": self.a,
            "b": self.b,
            "top1_agree": self.top1_agree,
            "map_correlation": metrics["correlation"],
            "hot_iou": metrics["hot_iou"],
            "map_distance": metrics["distance"],
            "differ": self.differ,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FrameComparison:
        return cls(
            frame=int(record["frame"]),
            time=float(record["time"]),
            a=record["a"],
            b=record["b"],
            top1_agree=record["top1_agree"],
            agreement=MapAgreement(
                correlation=float(record["map_correlation"]),
                hot_iou=float(record["hot_iou"]),
                distance=float(record["map_distance"]),
            ),
        )


@dataclass(frozen=True)
class Spread:
    """Mean and worst value of one measure over the frames."""

    mean: float
    worst: float
    worst_frame: int


@dataclass(frozen=True)
class CompareSummary:
    """What a comparison found over the whole clip."""

    a: str  # the models as addressed: NAME or NAME:VERSION
    b: str
    frames: int
    shared_classes: int
    agreement_rate: float | None  # top-1 agreement over the frames; None: no shared classes
    map_correlation: Spread  # worst = lowest
    hot_iou: Spread  # worst = lowest
    map_distance: Spread  # worst = largest
    differing_frames: int
    worst_frames: list[int] = field(default_factory=list)  # largest distance first
    notes: list[str] = field(default_factory=list)  # e.g. that no class names are shared

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareSummary:
        spreads = {
            key: Spread(**data[key]) for key in ("map_correlation", "hot_iou", "map_distance")
        }
        return cls(**{**data, **spreads})

    def lines(self) -> list[str]:
        """The summary for a person, a few lines."""
        rate = (
            "n/a (no class names in common)"
            if self.agreement_rate is None
            else f"{self.agreement_rate:.1%}"
        )
        c, i, d = self.map_correlation, self.hot_iou, self.map_distance
        return [
            f"compared {self.a} | {self.b} on {self.frames} frames",
            f"top-1 agreement: {rate}",
            f"map correlation: mean {c.mean:.3f}, worst {c.worst:.3f} (frame {c.worst_frame})",
            f"hottest-20% IoU: mean {i.mean:.3f}, worst {i.worst:.3f} (frame {i.worst_frame})",
            f"map distance: mean {d.mean:.3f}, worst {d.worst:.3f} (frame {d.worst_frame})",
            f"frames that differ: {self.differing_frames}; worst frames: "
            + (", ".join(map(str, self.worst_frames)) or "none"),
            *self.notes,
        ]


def _spread(values: Sequence[float], frames: Sequence[int], lowest_is_worst: bool) -> Spread:
    if not values:
        return Spread(math.nan, math.nan, -1)
    pick = min if lowest_is_worst else max
    worst = pick(range(len(values)), key=lambda i: values[i])
    return Spread(round(sum(values) / len(values), 6), round(values[worst], 6), frames[worst])


def summarize(
    a: str,
    b: str,
    frames: Iterable[FrameComparison],
    shared_classes: int,
    notes: Sequence[str] = (),
    worst: int = WORST_FRAMES,
) -> CompareSummary:
    """The summary of a comparison's frames."""
    frames = list(frames)
    indices = [f.frame for f in frames]
    agreeing = [f.top1_agree for f in frames if f.top1_agree is not None]
    by_distance = sorted(frames, key=lambda f: (-f.agreement.distance, f.frame))
    return CompareSummary(
        a=a,
        b=b,
        frames=len(frames),
        shared_classes=shared_classes,
        agreement_rate=round(sum(agreeing) / len(agreeing), 6) if agreeing else None,
        map_correlation=_spread([f.agreement.correlation for f in frames], indices, True),
        hot_iou=_spread([f.agreement.hot_iou for f in frames], indices, True),
        map_distance=_spread([f.agreement.distance for f in frames], indices, False),
        differing_frames=sum(f.differ for f in frames),
        worst_frames=[f.frame for f in by_distance[:worst]],
        notes=list(notes),
    )


def summary_path(output: str | Path) -> Path:
    """Where the summary of a comparison writing `output` goes by default."""
    output = Path(output)
    return output.with_name(f"{output.stem}.compare.json")


def predictions_path(output: str | Path) -> Path:
    """Where the per-frame lines of a comparison writing `output` go by default."""
    output = Path(output)
    return output.with_name(f"{output.stem}.compare.jsonl")


def write_summary(summary: CompareSummary, path: str | Path) -> Path:
    """Write the summary as JSON, atomically."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        raise OutputError(f"cannot write the summary ({error.strerror})", path) from error
    return path


def read_summary(path: str | Path) -> CompareSummary:
    """A summary written by `write_summary`; InputError for a file that is not one."""
    try:
        return CompareSummary.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as error:
        raise InputError(f"cannot read the summary ({error.strerror})", path) from error
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"not a comparison summary ({error})", path) from error


def read_comparisons(path: str | Path) -> list[FrameComparison]:
    """The frames of a comparison's JSON lines; InputError for a file that is not one."""
    try:
        with Path(path).open(encoding="utf-8") as lines:
            return [FrameComparison.from_record(json.loads(line)) for line in lines if line.strip()]
    except OSError as error:
        raise InputError(f"cannot read the comparison ({error.strerror})", path) from error
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"not a comparison's JSON lines ({error})", path) from error
