"""The result of a run on the page: the video beside the original, the top classes over time,
the frame inspector with the raw maps, and downloads."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np
import streamlit as st

from gradcam_client.remote.contract import ModelInfo
from gradcam_dashboard import charts, jobs, media, servers
from gradcam_dashboard.jobs import RunOutput
from gradcam_dashboard.preview import Preview

PREVIEW_POLL_S = 1.0
INSPECTOR_POLL_S = 1.0


def _records(run: RunOutput) -> list[charts.Record]:
    if "records" not in run.extras:
        run.extras["records"] = charts.read_predictions(run.predictions)
    return run.extras["records"]  # type: ignore[return-value]


def _maps(run: RunOutput) -> dict[str, np.ndarray]:
    if "maps" not in run.extras:
        with np.load(run.maps) as data:
            run.extras["maps"] = {name: data[name] for name in data.files}
    return run.extras["maps"]  # type: ignore[return-value]


def results_ui(run: RunOutput, preview: Preview | None) -> None:
    """The result beside the original, the timeline, the frame inspector and downloads."""
    info: ModelInfo = run.extras["info"]  # type: ignore[assignment]
    st.subheader("4 · Result")
    request = run.request
    st.caption(
        f"{request.model} · {jobs.LAYOUTS[request.layout].lower()} · explained: {run.target} · "
        f"{run.frames} frame(s) in {run.seconds:.1f} s ({run.fps:.1f} frames/s)"
        + (f" · frames sent as {run.extras['wire']}" if "wire" in run.extras else "")
        + (f" · {run.skipped}" if run.skipped else "")
    )
    original, result = st.columns([1, 1] if request.layout == "overlay" else [1, 2])
    with original, st.container(key="original-media"):
        st.markdown("**Original**")
        original_ui(run, preview)
    with result, st.container(key="result-media"):
        st.markdown("**Grad-CAM**")
        if run.is_image:
            st.image(str(run.output))
        else:
            st.video(str(run.output))
    records = _records(run)
    key = f"inspect:{run.folder.name}"
    index = min(max(int(st.session_state.get(key, 0)), 0), len(records) - 1)
    if len(records) > 1:
        with st.container(key="timeline"):
            st.markdown("**Top classes over the video**")
            marker = float(records[min(index, len(records) - 1)]["time"])
            data = charts.timeline_data(records)
            st.altair_chart(charts.timeline_chart(data, marker))
    strip: Future[media.FrameStrip] = run.extras["strip"]  # type: ignore[assignment]
    if strip.done():
        inspector_ui(run, records, info, key)
    else:
        inspector_pending_ui(strip)
    downloads_ui(run)


def original_ui(run: RunOutput, preview: Preview | None) -> None:
    """The input as a browser can play it: as it is, or its preview once made."""
    if run.is_image:
        st.image(str(run.source))
        return
    if run.extras.get("playable"):
        st.video(str(run.source))
    elif preview is not None and preview.ready is not None:
        st.video(str(preview.ready))
    elif preview is not None and preview.pending:
        preview_pending_ui(preview)
    else:
        reason = preview.error if preview is not None else "no preview was made"
        st.caption(f"This video cannot be shown here ({reason}); the inspector shows its frames.")


@st.fragment(run_every=PREVIEW_POLL_S)
def preview_pending_ui(preview: Preview) -> None:
    """Waits for the playable copy of the original, then redraws the page with it."""
    if not preview.pending:
        st.rerun()
    st.caption("Making a copy of the original that the browser can play...")


@st.fragment(run_every=INSPECTOR_POLL_S)
def inspector_pending_ui(strip: Future[media.FrameStrip]) -> None:
    """Waits for the inspector's pictures (made after the video), then redraws the page."""
    if strip.done():
        st.rerun()
    with st.container(key="inspector-pending"):
        st.markdown("**Frame inspector**")
        st.caption("Preparing the frame inspector...")


def inspector_ui(run: RunOutput, records: list[charts.Record], info: ModelInfo, key: str) -> None:
    """A frame slider: original, result, raw maps at layer resolution and the top five."""
    future: Future[media.FrameStrip] = run.extras["strip"]  # type: ignore[assignment]
    try:
        strip = future.result()
    except Exception as error:
        st.caption(f"The frame inspector is not available: {error}")
        return
    with st.container(key="inspector"):
        st.markdown("**Frame inspector**")
        if len(records) > 1:
            index = st.slider("Frame", 0, strip.frames - 1, 0, key=key, help="Every frame")
        else:
            index = 0
        index = strip.clamp(index)
        record = records[min(index, len(records) - 1)]
        panels = jobs.panels(run.request, info)
        if len(panels) == 1:
            original, result, raw, top = st.columns([3, 3, 2, 3])
        else:  # the maps get a row of their own
            original, result, top = st.columns([2, 3, 2])
            raw = None
        original.image(
            str(strip.original(index)),
            caption=f"Original · frame {index} · {record['time']:.2f} s",
            width="stretch",
        )
        result.image(str(strip.result(index)), caption="Grad-CAM", width="stretch")
        with top:
            st.altair_chart(charts.top5_chart(charts.frame_top5(record)))
            st.caption(f"Explained: **{record['explained_name']}**")
        cells = [raw] if raw is not None else st.columns(max(len(panels), 4))
        maps_ui(run, index, info, panels, cells)


def maps_ui(
    run: RunOutput,
    index: int,
    info: ModelInfo,
    panels: list[tuple[str, int]],
    cells: list,
) -> None:
    """The raw maps of one frame at the layer's resolution, each scaled to its own maximum."""
    maps = _maps(run)
    for (layer, method_index), cell in zip(panels, cells, strict=False):
        if layer not in maps or index >= len(maps[layer]):
            continue
        raw = maps[layer][index, method_index]
        method = servers.method_name(info.methods[method_index])
        cell.image(
            media.map_picture(raw, run.request.colormap),
            caption=f"{layer} · {method} · {raw.shape[0]}x{raw.shape[1]} · max {raw.max():.3g}",
            width="stretch",
        )


def downloads_ui(run: RunOutput) -> None:
    """Download buttons: the result, the per-frame predictions and the raw maps."""
    video, predictions, maps = st.columns(3)
    kind = "Image" if run.is_image else "Video (MP4)"
    mime = "image/png" if run.is_image else "video/mp4"
    video.download_button(
        f"{kind}", run.output.read_bytes, run.output.name, mime, key="dl_video", on_click="ignore"
    )
    predictions.download_button(
        "Predictions (JSONL)",
        run.predictions.read_bytes,
        "predictions.jsonl",
        "application/jsonl",
        key="dl_predictions",
        on_click="ignore",
    )
    maps.download_button(
        "Raw maps (NPZ)",
        run.maps.read_bytes,
        "maps.npz",
        "application/octet-stream",
        key="dl_maps",
        on_click="ignore",
    )


def partial_downloads_ui(video: Path | None, predictions: Path | None) -> None:
    """What a failed run made: the video of the frames done and their predictions."""
    if video is not None:
        player, _ = st.columns(2)
        player.video(str(video))
    left, right, _ = st.columns(3)
    if video is not None:
        left.download_button(
            "Video so far (MP4)",
            video.read_bytes,
            "result-partial.mp4",
            "video/mp4",
            key="dl_partial_video",
            on_click="ignore",
        )
    if predictions is not None:
        right.download_button(
            "Predictions so far (JSONL)",
            predictions.read_bytes,
            "predictions-partial.jsonl",
            "application/jsonl",
            key="dl_partial_predictions",
            on_click="ignore",
        )
