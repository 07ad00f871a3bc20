"""Chart data from the per-frame predictions (JSONL), and the Altair charts drawn from it."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

Record = dict[str, Any]

CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
"""Clearly distinct colours for the classes of the timeline (blue, orange, green, red...)."""


def read_predictions(path: Path) -> list[Record]:
    """The per-frame records of a predictions file, one JSON object per line."""
    records = []
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                records.append(json.loads(line))
    return records


def _labels(records: Sequence[Record]) -> dict[int, str]:
    """Class index -> display name; names shared by several classes get their index."""
    names: dict[int, str] = {}
    for record in records:
        for entry in record.get("top5", ()):
            names[int(entry["index"])] = str(entry["name"])
    counts = Counter(names.values())
    return {i: name if counts[name] == 1 else f"{name} ({i})" for i, name in names.items()}


def top_classes(records: Sequence[Record], count: int = 5) -> list[int]:
    """The classes with the highest mean probability over the clip.

    A class outside a frame's top five counts as 0 for that frame (its probability is below
    the fifth's, so little is lost).
    """
    totals: dict[int, float] = defaultdict(float)
    for record in records:
        for entry in record.get("top5", ()):
            totals[int(entry["index"])] += float(entry["probability"])
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return [index for index, _ in ranked[:count]]


def timeline_data(records: Sequence[Record], count: int = 5) -> pd.DataFrame:
    """Long table (frame, time, class, probability) of the top `count` classes per frame."""
    classes = top_classes(records, count)
    labels = _labels(records)
    rows = []
    for record in records:
        probabilities = {int(e["index"]): float(e["probability"]) for e in record.get("top5", ())}
        for index in classes:
            rows.append(
                {
                    "frame": int(record["frame"]),
                    "time": float(record["time"]),
                    "class": labels[index],
                    "probability": probabilities.get(index, 0.0),
                }
            )
    frame = pd.DataFrame(rows, columns=["frame", "time", "class", "probability"])
    order = [labels[i] for i in classes]
    frame["class"] = pd.Categorical(frame["class"], categories=order, ordered=True)
    return frame


def thinned(records: Sequence[Record], most: int) -> list[Record]:
    """At most `most` records, evenly spread and always with the last one (chart data of a
    long stretch of frames)."""
    if len(records) <= most:
        return list(records)
    step = len(records) / most
    last = len(records) - 1
    return [records[last - round(i * step)] for i in range(most - 1, -1, -1)]


def frame_top5(record: Record) -> pd.DataFrame:
    """The top five classes of one frame (class, probability), best first."""
    rows = [
        {"class": str(e["name"]), "index": int(e["index"]), "probability": float(e["probability"])}
        for e in record.get("top5", ())
    ]
    return pd.DataFrame(rows, columns=["class", "index", "probability"])


def explained_summary(records: Sequence[Record]) -> pd.DataFrame:
    """How many frames explained each class (class, frames), most frequent first."""
    counts = Counter(str(r.get("explained_name", r.get("class_name", "?"))) for r in records)
    rows = [{"class": name, "frames": n} for name, n in counts.most_common()]
    return pd.DataFrame(rows, columns=["class", "frames"])


def timeline_chart(data: pd.DataFrame, marker_time: float | None = None) -> alt.LayerChart:
    """Lines of the top classes' probabilities over time, with the inspected frame marked."""
    order = list(data["class"].cat.categories) if len(data) else []
    lines = (
        alt.Chart(data)
        .mark_line(point=len(data) <= 5 * 60, interpolate="monotone")
        .encode(
            x=alt.X("time:Q", title="time (s)"),
            y=alt.Y("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "class:N",
                sort=order,
                title="class",
                scale=alt.Scale(domain=order, range=CLASS_COLOURS[: max(1, len(order))]),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=[
                alt.Tooltip("frame:Q"),
                alt.Tooltip("time:Q", format=".2f"),
                alt.Tooltip("class:N"),
                alt.Tooltip("probability:Q", format=".3f"),
            ],
        )
    )
    layers: list[alt.Chart] = [lines]
    if marker_time is not None:
        rule = (
            alt.Chart(pd.DataFrame({"time": [marker_time]}))
            .mark_rule(color="#444", strokeDash=[4, 3])
            .encode(x="time:Q")
        )
        layers.append(rule)
    return alt.layer(*layers).properties(height=260)


def top5_chart(data: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of one frame's top-5 probabilities."""
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
            y=alt.Y("class:N", sort="-x", title=None),
            color=alt.Color("probability:Q", scale=alt.Scale(scheme="oranges"), legend=None),
            tooltip=[alt.Tooltip("class:N"), alt.Tooltip("probability:Q", format=".3f")],
        )
        .properties(height=180)
    )


def load_history_data(history: Sequence[tuple[float, float, float]]) -> pd.DataFrame:
    """Long table (seconds ago, figure, value) of (time, requests/s, frames/s) samples."""
    if not history:
        return pd.DataFrame(columns=["seconds ago", "figure", "value"])
    last = history[-1][0]
    rows = []
    for time, requests, frames in history:
        rows.append({"seconds ago": time - last, "figure": "requests/s", "value": requests})
        rows.append({"seconds ago": time - last, "figure": "frames/s", "value": frames})
    return pd.DataFrame(rows)


def axis_format(values: Sequence[float]) -> str:
    """A d3 format for rate axis labels: whole numbers from 10 up, one decimal below (never
    the exponent notation "2e+1")."""
    return ",.0f" if values and max(values) >= 10 else ".1f"


def load_chart(data: pd.DataFrame, figure: str = "frames/s") -> alt.Chart:
    """A small area chart of one of the server's recent rates (frames/s by default)."""
    values = [float(v) for v in data.loc[data["figure"] == figure, "value"]] if len(data) else []
    return (
        alt.Chart(data)
        .transform_filter(alt.datum.figure == figure)
        .mark_area(line=True, opacity=0.35, interpolate="monotone")
        .encode(
            x=alt.X("seconds ago:Q", title="seconds ago"),
            y=alt.Y(
                "value:Q", title=figure, axis=alt.Axis(tickCount=3, format=axis_format(values))
            ),
            tooltip=[alt.Tooltip("seconds ago:Q"), alt.Tooltip("value:Q", format=".1f")],
        )
        .properties(height=150)
    )
