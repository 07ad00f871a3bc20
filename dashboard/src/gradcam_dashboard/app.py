"""The Grad-CAM video dashboard: a Streamlit page (start it with ``gradcam-dashboard``).

The page talks to the server only through the client library, and only to the servers the
operator named at launch; everything that is not drawing (metrics, session folders, chart
data, runs in the background, previews) lives in plain modules of this package.
"""

from __future__ import annotations

import functools

import streamlit as st

from gradcam_dashboard import camera_view, compare_mode, live_view
from gradcam_dashboard.config import DashboardConfig, LiveSourceChoice
from gradcam_dashboard.file_view import file_ui
from gradcam_dashboard.input_view import input_ui
from gradcam_dashboard.server_panel import server_ui
from gradcam_dashboard.settings_view import settings_ui
from gradcam_dashboard.workspace import folders, forget_files, workspace


def main() -> None:
    """The whole page."""
    st.set_page_config(page_title="Grad-CAM video", page_icon="🔥", layout="wide")
    config = DashboardConfig.from_env()
    folder = workspace(config)
    st.title("Grad-CAM video")
    st.caption("Where does the model look? Heat maps over every frame of a video or an image.")
    choice, status = server_ui(config)
    mode = compare_mode.mode_ui()
    source = input_ui(config, folder)
    kind = st.session_state.get("source")
    if mode == "compare":
        file_source = None if isinstance(source, LiveSourceChoice) else source
        compare_mode.compare_ui(config, folder, choice, status, file_source)
    elif kind == "camera":
        request = settings_ui(status, live=True)
        touch = functools.partial(folders(config).touch, folder)
        camera_view.camera_ui(config, folder, choice, request, touch)
    elif isinstance(source, LiveSourceChoice) or kind == "live":
        live_source = source if isinstance(source, LiveSourceChoice) else None
        request = settings_ui(status, live=True)
        touch = functools.partial(folders(config).touch, folder)
        live_view.live_ui(config, folder, choice, live_source, request, touch)
    else:
        file_ui(config, folder, choice, source, settings_ui(status))
    with st.sidebar:
        st.divider()
        if st.button("Remove my files", key="forget", icon=":material/delete:"):
            forget_files(folder)
            st.rerun()


if __name__ == "__main__":
    main()
