"""The page's logic under Streamlit's AppTest, against a real Triton (or none)."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest
from app_page import no_exception, page, texts
from media import write_photo
from streamlit.testing.v1 import AppTest
from triton_server import free_port, running_triton

from gradcam_client.remote.wire import Wire
from gradcam_dashboard import charts, jobs, media, servers
from gradcam_dashboard.sessions import SessionFolders

pytestmark = pytest.mark.integration


def image_captions(at: AppTest) -> str:
    return "\n".join(caption for image in at.get("image") for caption in image.captions)


def run_to_the_end(at: AppTest, timeout: float = 180) -> AppTest:
    """Click Run, wait for the run in the background, and redraw the page."""
    at.button(key="run").click().run()
    no_exception(at)
    return wait_for_the_end(at, timeout)


def wait_for_the_end(at: AppTest, timeout: float = 180) -> AppTest:
    """Wait for the run in the background, then for the inspector's pictures; redraw."""
    assert at.session_state["active_run"].wait(timeout), "the run did not end"
    at.run()
    if "result" in at.session_state:
        at.session_state["result"].extras["strip"].result(timeout)
        at.run()
    return at


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
    choice = at.sidebar.selectbox(key="server_url")
    assert choice.value == triton.urls.grpc and choice.disabled
    assert not at.sidebar.text_input  # no free-form address unless the operator allows it


def test_the_operators_servers_are_offered_and_metrics_follow_each(page_env, monkeypatch, triton):
    grpc = triton.urls.grpc
    down = f"127.0.0.1:{free_port()}"
    # the same server alone, then twice sharing the work (its metrics derived: port + 1
    # is not its metrics port here, so the page says so), then a server that is down
    monkeypatch.setenv("GRADCAM_URL", f"{grpc} {grpc},{grpc} {down}")
    monkeypatch.setenv("GRADCAM_METRICS_URL", triton.urls.metrics)
    at = page().run()
    no_exception(at)
    assert at.sidebar.selectbox(key="server_url").options == [grpc, f"{grpc},{grpc}", down]
    at.sidebar.selectbox(key="server_url").set_value(f"{grpc},{grpc}").run()
    no_exception(at)
    assert "Live and ready: 2 Grad-CAM model(s)" in texts(at.sidebar.success)
    host, port = grpc.rsplit(":", 1)
    assert f"http://{host}:{int(port) + 1}/metrics" in texts(at.sidebar.caption)
    assert "No load figures: the server's metrics endpoint does not answer" in texts(
        at.sidebar.caption
    )
    at.sidebar.selectbox(key="server_url").set_value(down).run()
    no_exception(at)
    assert f"Down: {down}" in texts(at.sidebar.error)
    assert "cannot be reached" in texts(at.error)


def test_a_visitor_cannot_make_the_page_contact_another_address(page_env, monkeypatch, triton):
    """A forged address in the session (as a crafted websocket message would set it) is
    replaced by the operator's server; nothing connects to the forged one, not even for
    metrics."""
    monkeypatch.setenv("GRADCAM_URL", triton.urls.grpc)
    monkeypatch.setenv("GRADCAM_METRICS_URL", triton.urls.metrics)
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.settimeout(0.5)
    forged = f"127.0.0.1:{trap.getsockname()[1]}"
    try:
        for value in (forged, f"{forged},{triton.urls.grpc}"):
            at = page()
            at.session_state["server_url"] = value
            at.run()
            no_exception(at)
        assert "Live and ready: 2 Grad-CAM model(s)" in texts(at.sidebar.success)
        assert f"{triton.urls.metrics}" not in texts(at.sidebar.caption)  # its load is shown
        assert {m.label for m in at.sidebar.metric} >= {"Requests/s", "Frames/s"}
        with pytest.raises(TimeoutError):
            trap.accept()
    finally:
        trap.close()


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
    run_to_the_end(at)
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
    assert "frames sent as raw" in texts(at.caption)  # the server is on this machine
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
    assert "4 · Result" not in [s.value for s in at.subheader]  # not under the new progress
    wait_for_the_end(at)
    no_exception(at)
    second = at.session_state["result"]
    assert second.folder != result.folder and not result.folder.exists()
    assert second.request.layout == "grid_methods" and len(second.request.methods) == 5
    assert media.summarize(second.output).width == 3 * 480  # a 3x2 grid of 480x320 panels


def test_the_operator_can_have_frames_sent_as_jpeg(served_page, monkeypatch):
    encoded = []
    encode = Wire.encode
    monkeypatch.setattr(Wire, "encode", lambda self, f: encoded.append(len(f)) or encode(self, f))
    monkeypatch.setenv("GRADCAM_WIRE", "jpeg")
    at = page().run()
    at.radio(key="source").set_value("sample").run()
    at.selectbox(key="model").set_value("tiny").run()
    run_to_the_end(at)
    no_exception(at)
    result = at.session_state["result"]
    assert result.frames == 30 and sum(encoded) == 30
    assert result.extras["wire"] == "jpeg (quality 95)"
    assert "frames sent as jpeg (quality 95)" in texts(at.caption)


def test_two_sessions_keep_their_own_folders_and_results(served_page):
    one, two = page().run(), page().run()
    for at, target in ((one, "predicted"), (two, "video")):
        at.radio(key="source").set_value("sample").run()
        at.selectbox(key="model").set_value("tiny").run()
        at.radio(key="target").set_value(target).run()
        run_to_the_end(at)
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


def test_a_server_lost_during_a_run_is_told_at_once_then_what_was_made_is_offered(
    page_env, monkeypatch, own_triton
):
    monkeypatch.setenv("GRADCAM_URL", own_triton.urls.grpc)
    monkeypatch.setenv("GRADCAM_METRICS_URL", own_triton.urls.metrics)
    monkeypatch.setenv("GRADCAM_RETRY_S", "6")
    monkeypatch.setenv("GRADCAM_SAMPLE_SECONDS", "30")  # a run long enough to be cut short
    at = page().run()
    at.radio(key="source").set_value("sample").run()
    at.button(key="run").click().run()
    no_exception(at)
    run = at.session_state["active_run"]
    deadline = time.monotonic() + 120
    while run.snapshot().done < 20:
        assert time.monotonic() < deadline and not run.snapshot().finished
        time.sleep(0.02)
    own_triton.kill()
    killed = time.monotonic()
    while run.snapshot().outage is None:
        # said while the run still retries (its deadline is 6 s), however busy the machine
        assert time.monotonic() - killed < 6, "no word of the lost server while retrying"
        time.sleep(0.05)
    at.run()  # the page as it is redrawn meanwhile
    no_exception(at)
    notice = texts(at.warning)
    assert "The server is not answering." in notice and "keeps retrying until" in notice
    assert "Not answering; retrying until" in texts(at.sidebar.error)
    assert run.wait(60)
    at.run()
    no_exception(at)
    failure = at.session_state["failed"].failure
    assert failure.server_lost and 20 <= failure.frames_done < 450
    message = texts(at.error)
    assert "the server did not answer for 6 s" in message
    assert f"{failure.frames_done} of 450 frames were done" in message
    assert failure.video is not None and failure.video.is_file()
    assert sum(1 for _ in media.open_media(failure.video)) > 0
    assert len(failure.predictions.read_text().splitlines()) == failure.frames_done
    assert at.get("video")  # the video so far is shown
    labels = [button.label for button in at.button]
    assert "Video so far (MP4)" in [b.label for b in at.get("download_button")]
    assert labels.count("Try again") == 1 and "Retry" not in labels  # one button, not two
    assert "result" not in at.session_state
    own_triton.start()
    own_triton.wait_ready(120)
    at.button(key="retry_run").click().run()
    no_exception(at)
    wait_for_the_end(at)
    no_exception(at)
    assert not at.error
    assert at.session_state["result"].frames == 450
    assert not failure.video.exists()  # the failed run's files went with it
