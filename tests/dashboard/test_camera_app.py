"""The page's Camera mode under Streamlit's AppTest: offered or not, and its first lines."""

from __future__ import annotations

from app_page import no_exception, page, texts


def test_the_operator_can_turn_the_camera_off(page_env, monkeypatch):
    monkeypatch.setenv("GRADCAM_CAMERA", "0")
    at = page().run()
    no_exception(at)
    assert at.radio(key="source").options == ["Upload a file", "Sample clip", "Live"]


def test_the_camera_mode_waits_for_the_server_before_it_can_start(page_env, monkeypatch):
    monkeypatch.setenv("GRADCAM_URL", "127.0.0.1:1")  # nothing answers there
    at = page().run()
    assert "Camera" in at.radio(key="source").options
    at.radio(key="source").set_value("camera").run()
    no_exception(at)
    assert "3 · Camera" in texts(at.subheader)
    assert "The camera can start once the server answers" in texts(at.caption)
