"""The run's settings: target, layers, methods, colours, normalisation, output."""

from __future__ import annotations

import streamlit as st

from gradcam_client.remote.contract import ModelInfo
from gradcam_client.render.compose import COLORMAPS
from gradcam_dashboard import (
    jobs,
    media,
    servers,
)
from gradcam_dashboard.jobs import RunRequest
from gradcam_dashboard.servers import ServerStatus


def _layer_method_ui(layout: str, info: ModelInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The layer(s) and method(s) the layout shows."""
    model = info.name
    layers, methods = info.layer_names, list(info.methods)
    if layout == "grid_layers":
        chosen_layers = st.multiselect("Layers", layers, default=layers, key=f"layers:{model}")
    else:
        chosen_layers = [st.selectbox("Layer", layers, key=f"layer:{model}")]
    if layout == "grid_methods":
        chosen_methods = st.multiselect(
            "Methods",
            methods,
            default=methods,
            format_func=servers.method_name,
            key=f"methods:{model}",
        )
    else:
        chosen_methods = [
            st.selectbox("Method", methods, format_func=servers.method_name, key=f"method:{model}")
        ]
    return tuple(chosen_layers), tuple(chosen_methods)


def _step(value: float, step: float = 0.05) -> float:
    """A default on a slider's steps."""
    return round(round(value / step) * step, 2)


def _offered(key: str, options: dict[str, str], live: bool, whole: str) -> list[str]:
    """The choices of a radio: a live source has no whole clip, so `whole` goes in Live."""
    offered = [option for option in options if not (live and option == whole)]
    if st.session_state.get(key) not in offered:
        st.session_state.pop(key, None)
    return offered


def settings_ui(status: ServerStatus, live: bool = False) -> RunRequest | None:
    """Model, layers, methods, target and looks; None while the choice is incomplete.

    live: for a live source (no choices that need the whole video first).
    """
    st.subheader("2 · Settings")
    models = status.usable_models
    if not status.live:
        st.caption("The settings appear once the server answers.")
        return None
    if not models:
        st.warning("The server hosts no Grad-CAM model that is ready.")
        return None
    by_name = {m.name: m.info for m in models if m.info is not None}
    what, target_col, looks = st.columns(3, gap="large")
    with what:
        model = st.selectbox("Model", list(by_name), key="model")
        info = by_name[model]
        layouts = jobs.layouts_for(info)
        if st.session_state.get("layout") not in layouts:
            st.session_state["layout"] = layouts[0]
        layout = st.radio("Layout", layouts, format_func=jobs.LAYOUTS.get, key="layout")
        layers, methods = _layer_method_ui(layout, info)
        include_original = layout.startswith("grid") and st.checkbox(
            "Original frame as first panel", key="include_original"
        )
    with target_col:
        target = st.radio(
            "Class to explain",
            _offered("target", jobs.TARGETS, live, "video"),
            format_func=jobs.TARGETS.get,
            key="target",
        )
        class_index = None
        if target == "class":
            names = info.class_names
            class_index = st.selectbox(
                "Class (type to search)",
                range(len(names)),
                format_func=lambda i: f"{names[i]} ({i})",
                key=f"class:{model}",
            )
        st.caption(
            "Predicted: each frame explains its own top class."
            + (
                ""
                if live
                else " Whole video: one class, the one with the highest mean probability, "
                "for every frame (needs a first pass)."
            )
        )
    with looks:
        colormaps = list(COLORMAPS)
        colormap = st.selectbox(
            "Colour map",
            colormaps,
            index=colormaps.index(jobs.DEFAULTS.composition.colormap),
            key="colormap",
        )
        st.image(media.colormap_strip(colormap), caption="low → high", width="stretch")
        alpha = st.slider(
            "Opacity", 0.0, 1.0, _step(jobs.DEFAULTS.composition.alpha), 0.05, key="alpha"
        )
        scopes = _offered("scope", jobs.SCOPES, live, "clip")
        scope = st.radio(
            "Normalisation",
            scopes,
            index=scopes.index(jobs.DEFAULTS.scope) if jobs.DEFAULTS.scope in scopes else 0,
            format_func=jobs.SCOPES.get,
            key="scope",
        )
        smoothing = st.slider(
            "Temporal smoothing",
            0.0,
            0.95,
            min(0.95, _step(jobs.DEFAULTS.smoothing)),
            0.05,
            key="smoothing",
            help="Exponential moving average of the raw maps over frames (0 = off).",
        )
    if not layers or not methods:
        st.warning("Choose at least one layer and one method.")
        return None
    return RunRequest(
        model=model,
        layout=layout,
        layers=layers,
        methods=methods,
        target=target,
        class_index=class_index,
        colormap=colormap,
        alpha=alpha,
        scope=scope,
        smoothing=smoothing,
        include_original=bool(include_original),
    )
