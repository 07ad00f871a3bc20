"""The page's logic under Streamlit's AppTest, against a real Triton (or none)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from media import write_photo
from streamlit.testing.v1 import AppTest
from triton_server import free_port, running_triton

import gradcam_dashboard
from gradcam_dashboard import charts, jobs, media, servers
from gradcam_dashboard.sessions import SessionFolders

pytestmark = pytest.mark.integration

APP = Path(gradcam_dashboard.__file__).with_name("app.py")


def page() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=180)


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def image_captions(at: AppTest) -> str:
    return "\n".join(caption for image in at.get("image") for caption in image.captions)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def test_a_server_that_is_down_is_a_clear_message_with_a_retry_button(page_env, monkeypatch):
    url = f"localhost:{free_port()}"
    monkeypatch.setenv("GRADCAM_URL", url)
    at = page().run()
    no_exception(at)
    errors = texts(at.error)
    assert f"The Grad-CAM server at `{url}` cannot be reached" in errors
    assert "Traceback" not in errors
    assert at.button(key="retry").label == "Retry"
    assert "The settings appear once the server answers." in texts(at.caption)
    assert at.button(key="run").disabled
    # the input still works while the server is down
    at.radio(key="source").set_value("sample").run()
    no_exception(at)
    assert "chelsea.mp4" in texts(at.caption)
    at.button(key="retry").click().run()
    no_exception(at)
    assert at.session_state["attempt"] == 1
    assert "cannot be reached" in texts(at.error)
    assert "No load figures" in texts(at.sidebar.caption)


def test_the_server_panel_lists_models_layers_methods_and_load(served_page, triton):
    at = page().run()
    no_exception(at)
    assert not at.error
    assert "Live and ready: 2 Grad-CAM model(s)" in texts(at.sidebar.success)
    labels = [e.label for e in at.sidebar.expander]
    assert any("tiny" in label for label in labels)
    assert any("efficientnet-lite0" in label for label in labels)
    panel = texts(at.sidebar.markdown)
    assert "conv1 (30x30), conv2 (13x13)" in panel
    assert "Grad-CAM, Grad-CAM++, Layer-CAM, HiResCAM, XGrad-CAM" in panel
    assert "1000 classes" in panel
    assert {m.label for m in at.sidebar.metric} >= {"Requests/s", "Frames/s", "Mean batch"}
    assert at.sidebar.text_input(key="server_url").value == triton.urls.grpc
    # several addresses share the work; here the same server twice
    at.sidebar.text_input(key="server_url").set_value(f"{triton.urls.grpc}, {triton.urls.grpc}")
    at.run()
    no_exception(at)
    assert "Live and ready: 2 Grad-CAM model(s)" in texts(at.sidebar.success)


def test_settings_follow_the_model_and_layout(served_page):
    at = page().run()
    at.radio(key="source").set_value("sample").run()
    at.selectbox(key="model").set_value("tiny").run()
    no_exception(at)
    assert at.selectbox(key="layer:tiny").options == ["conv1", "conv2"]
    assert at.selectbox(key="method:tiny").value == "gradcam"
    at.radio(key="layout").set_value("grid_layers").run()
    assert at.multiselect(key="layers:tiny").value == ["conv1", "conv2"]
    at.radio(key="layout").set_value("grid_methods").run()
    assert len(at.multiselect(key="methods:tiny").value) == 5
    at.multiselect(key="methods:tiny").set_value([]).run()
    assert "Choose at least one layer and one method." in texts(at.warning)
    assert at.button(key="run").disabled
    at.radio(key="target").set_value("class").run()
    classes = at.selectbox(key="class:tiny")
    assert classes.options == [f"class {i} ({i})" for i in range(5)]
    at.selectbox(key="model").set_value("efficientnet-lite0").run()
    no_exception(at)
    effnet_classes = at.selectbox(key="class:efficientnet-lite0")
    assert len(effnet_classes.options) == 1000
    assert "tabby (281)" in effnet_classes.options
    assert not at.button(key="run").disabled


def test_a_run_shows_the_result_timeline_inspector_and_downloads(served_page):
    at = page().run()
    at.radio(key="source").set_value("sample").run()
    at.selectbox(key="model").set_value("efficientnet-lite0").run()
    at.selectbox(key="colormap").set_value("inferno").run()
    at.button(key="run").click().run()
    no_exception(at)
    assert not at.error
    result = at.session_state["result"]
    assert result.frames == 30 and result.output.is_file()
    assert result.request.colormap == "inferno"
    top = charts.top_classes(charts.read_predictions(result.predictions), 1)[0]
    assert "cat" in result.extras["info"].class_names[top]  # Chelsea the tabby cat
    assert [s.value for s in at.subheader][:4] == [
        "1 · Input",
        "2 · Settings",
        "3 · Run",
        "4 · Result",
    ]
    assert "frame(s)" in texts(at.caption)
    folder = Path(at.session_state["workdir"])
    assert result.folder.parent == folder
    assert {p.name for p in result.folder.iterdir()} >= {
        "result.mp4",
        "predictions.jsonl",
        "maps.npz",
        "frames",
    }
    slider = at.slider(key=f"inspect:{result.folder.name}")
    assert (slider.min, slider.max) == (0, 29)
    slider.set_value(15).run()
    no_exception(at)
    captions = image_captions(at)
    assert "Original · frame 15 · 1.00 s" in captions
    assert "7x7 · max" in captions  # the raw map at the layer's resolution
    assert "Explained: **" in texts(at.caption)
    # a new run replaces the old one and its files
    at.selectbox(key="model").set_value("tiny").run()
    at.radio(key="layout").set_value("grid_methods").run()
    at.button(key="run").click().run()
    no_exception(at)
    second = at.session_state["result"]
    assert second.folder != result.folder and not result.folder.exists()
    assert second.request.layout == "grid_methods" and len(second.request.methods) == 5
    assert media.summarize(second.output).width == 3 * 480  # a 3x2 grid of 480x320 panels


def test_two_sessions_keep_their_own_folders_and_results(served_page):
    one, two = page().run(), page().run()
    for at, target in ((one, "predicted"), (two, "video")):
        at.radio(key="source").set_value("sample").run()
        at.selectbox(key="model").set_value("tiny").run()
        at.radio(key="target").set_value(target).run()
        at.button(key="run").click().run()
        no_exception(at)
    first, second = one.session_state["result"], two.session_state["result"]
    assert one.session_state["workdir"] != two.session_state["workdir"]
    assert first.target == "predicted class of each frame"
    assert second.target.startswith("class ")  # one class for the whole video
    assert first.folder.exists() and second.folder.exists()
    assert not set(first.folder.parent.iterdir()) & set(second.folder.parent.iterdir())
    # removing one session's files leaves the other's alone
    one.button(key="forget").click().run()
    no_exception(one)
    assert "result" not in one.session_state and not first.folder.exists()
    assert second.folder.exists()
    assert len(SessionFolders(served_page).sessions()) == 2


def test_an_image_runs_through_the_same_steps(triton, tmp_path):
    image = write_photo(tmp_path / "astronaut.jpg", size=(200, 160))
    server = servers.job_server(triton.urls.grpc, "tiny")
    request = jobs.RunRequest(model="tiny", layout="side_by_side")
    out = jobs.run(server, request, image, tmp_path, is_image=True)
    assert out.output.name == "result.jpg" and out.frames == 1
    strip = media.extract_frames(image, out.output, tmp_path / "frames", out.frames)
    assert strip.indices == [0] and strip.result(0).is_file()
    assert media.summarize(out.output).width == 400  # original | overlay


@pytest.fixture
def own_triton(model_repository, tmp_path):
    """A Triton of our own (only `tiny`), to kill and restart."""
    repository = tmp_path / "repository"
    shutil.copytree(model_repository / "tiny", repository / "tiny")
    with running_triton(repository, log_dir=tmp_path) as server:
        yield server


def kill_when_a_run_starts(server, root: Path) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 120
        while not list(root.glob("session-*/run-*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        server.kill()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_server_lost_during_a_run_is_a_clear_message_then_try_again_works(
    page_env, monkeypatch, own_triton
):
    monkeypatch.setenv("GRADCAM_URL", own_triton.urls.grpc)
    monkeypatch.setenv("GRADCAM_METRICS_URL", own_triton.urls.metrics)
    monkeypatch.setenv("GRADCAM_RETRY_S", "2")
    monkeypatch.setenv("GRADCAM_SAMPLE_SECONDS", "10")  # a run long enough to be cut short
    at = page().run()
    at.radio(key="source").set_value("sample").run()
    no_exception(at)
    watcher = kill_when_a_run_starts(own_triton, page_env)
    at.button(key="run").click().run()
    watcher.join()
    no_exception(at)
    assert "The run failed: the server stopped answering." in texts(at.error)
    assert "result" not in at.session_state
    assert not list(page_env.glob("session-*/run-*"))  # the half-made files are gone
    own_triton.start()
    own_triton.wait_ready(120)
    at.button(key="retry_run").click().run()
    no_exception(at)
    assert not at.error
    assert at.session_state["result"].frames == 150
