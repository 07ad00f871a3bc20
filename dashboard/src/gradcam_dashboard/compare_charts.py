"""The agreement of two models over a clip: chart data from a comparison's frames, the chart,
and the worst frames' lines."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from gradcam_client.compare.results import FrameComparison

MEASURES = {"map_correlation": "map correlation", "hot_iou": "hottest-20% IoU"}
"""The per-frame measures drawn as lines (both 1 where the maps agree)."""

MEASURE_COLOURS = ["#1f77b4", "#2ca02c"]
DISAGREE_COLOUR = "#d62728"


def agreement_data(frames: Sequence[FrameComparison]) -> pd.DataFrame:
    """Long table (frame, time, measure, value) of the map measures per frame."""
    rows = []
    for f in frames:
        values = {"map_correlation": f.agreement.correlation, "hot_iou": f.agreement.hot_iou}
        for key, label in MEASURES.items():
            rows.append({"frame": f.frame, "time": f.time, "measure": label, "value": values[key]})
    return pd.DataFrame(rows, columns=["frame", "time", "measure", "value"])


def disagreement_data(frames: Sequence[FrameComparison]) -> pd.DataFrame:
    """The frames whose top classes differ (frame, time, a, b)."""
    rows = [
        {
            "frame": f.frame,
            "time": f.time,
            "a": f.a.get("class_name", "?"),
            "b": f.b.get("class_name", "?"),
        }
        for f in frames
        if f.top1_agree is False
    ]
    return pd.DataFrame(rows, columns=["frame", "time", "a", "b"])


def agreement_chart(
    frames: Sequence[FrameComparison], marker_time: float | None = None
) -> alt.LayerChart:
    """The map measures over time, the frames where the top classes differ shaded red, and
    the inspected frame marked."""
    data = agreement_data(frames)
    low = min(0.0, float(data["value"].min())) if len(data) else 0.0
    labels = list(MEASURES.values())
    lines = (
        alt.Chart(data)
        .mark_line(point=len(frames) <= 120, interpolate="monotone")
        .encode(
            x=alt.X("time:Q", title="time (s)"),
            y=alt.Y("value:Q", title="agreement", scale=alt.Scale(domain=[low, 1])),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(domain=labels, range=MEASURE_COLOURS),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=[
                alt.Tooltip("frame:Q"),
                alt.Tooltip("time:Q", format=".2f"),
                alt.Tooltip("measure:N"),
                alt.Tooltip("value:Q", format=".3f"),
            ],
        )
    )
    layers: list[alt.Chart] = []
    differ = disagreement_data(frames)
    if len(differ):
        layers.append(
            alt.Chart(differ)
            .mark_rule(color=DISAGREE_COLOUR, opacity=0.35, strokeWidth=4)
            .encode(
                x="time:Q",
                tooltip=[
                    alt.Tooltip("frame:Q", title="top classes differ at frame"),
                    alt.Tooltip("a:N", title="A"),
                    alt.Tooltip("b:N", title="B"),
                ],
            )
        )
    layers.append(lines)
    if marker_time is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"time": [marker_time]}))
            .mark_rule(color="#444", strokeDash=[4, 3])
            .encode(x="time:Q")
        )
    return alt.layer(*layers).properties(height=240)


def worst_frame_label(f: FrameComparison) -> str:
    """``"frame 12 · 0.48 s · distance 0.210 · IoU 0.35 · tabby | tiger cat"``."""
    classes = f"{f.a.get('class_name', '?')} | {f.b.get('class_name', '?')}"
    return (
        f"frame {f.frame} · {f.time:.2f} s · distance {f.agreement.distance:.3f} · "
        f"IoU {f.agreement.hot_iou:.2f} · {classes}"
    )
