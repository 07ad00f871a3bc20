"""The README's container commands, for real, on a fresh clone: `make compose-up` with no
wheelhouse and no project images (this host's pip fills the wheelhouse, the images build with no
network), the README's client line, the client on the host against the published port, the
dashboard in its container driven by a real Chromium, Triton restarted and killed mid-video,
plain `docker compose down` / `up -d --build` (the CPU stack), a changed source built in by the
next `make compose-up`, and `make compose-down`.

The tests run in file order on one stack (the `stack` fixture); traffic goes only to ports
published on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from browser_support import CHROMIUM_ARGS, chromium, video_state
from client_runs import read_jsonl
from conftest import PROJECT_IMAGES, artifacts
from media import write_clip
from readme_blocks import readme_commands
from stack import run

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

GRADCAM_VIDEO = str(Path(sys.executable).with_name("gradcam-video"))
SAVEDMODEL = Path("efficientnet-lite0") / "1" / "model.savedmodel" / "saved_model.pb"
CONTAINERS = readme_commands("Run it in containers")
(MAKE_UP, CLIENT, MAKE_DOWN), (PLAIN_UP, PLAIN_DOWN), (GPU_UP,) = CONTAINERS


def test_the_readme_commands_are_these() -> None:
    """What these tests run is what the README says, word for word."""
    assert [MAKE_UP, CLIENT, MAKE_DOWN] == [
        "make compose-up",
        "gradcam-video in.mp4 -o out.mp4",
        "make compose-down",
    ]
    assert [PLAIN_UP, PLAIN_DOWN] == ["docker compose up -d --build", "docker compose down"]
    assert GPU_UP == "docker compose -f docker-compose.yml -f docker-compose.gpu.yml up -d --build"


def gradcam_video(url: str, clip: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [GRADCAM_VIDEO, str(clip), "-o", str(out), "--url", url, "--quiet"]
    command += ["--model", "efficientnet-lite0", "--predictions", str(out.with_suffix(".jsonl"))]
    return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=600)


def decoded_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("container-clips")
    return {
        "cat": write_clip(folder / "cat.mp4", size=(320, 240), n_frames=24, fps=12),
        "long": write_clip(folder / "long.mp4", size=(320, 180), n_frames=240, fps=24),
    }


def test_a_fresh_clone_filled_its_wheelhouse_and_built_with_no_network(stack) -> None:
    said = stack.outputs[MAKE_UP]
    assert "Downloading wheels for CPython 3.11" in said, said[-3000:]
    assert list((stack.clone / "wheelhouse").glob(".complete-*"))
    assert list((stack.clone / "wheelhouse" / "debs").glob("python3_*.deb"))
    assert "building from wheelhouse/ with no network" in said, said[-3000:]
    assert f"gRPC:      localhost:{stack.ports['grpc']}" in said


def test_the_readme_client_line_runs_a_video_through_the_stack(stack, clips) -> None:
    shutil.copy(clips["cat"], stack.clone / "in.mp4")
    stack.shell(CLIENT, timeout=600)
    assert decoded_times(stack.clone / "out.mp4") == pytest.approx(
        [i / 12 for i in range(24)], abs=1e-3
    )


def test_images_are_lean_and_run_as_a_user(stack) -> None:
    sizes = {}
    for image in PROJECT_IMAGES:
        sizes[image] = int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout)
        listing = run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                "root",
                "--entrypoint",
                "sh",
                image,
                "-c",
                "ls /root/.cache /wheelhouse /src 2>&1; command -v gcc pip",
            ],
            check=False,
        ).stdout
        assert listing.count("No such file") == 3, listing  # no pip cache, wheels or sources
        assert "gcc" not in listing and "pip" not in listing, listing
    no_tf = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "gradcam-dashboard:latest",
        "python",
        "-c",
        "import tensorflow",
    ]
    assert run(no_tf, check=False).returncode != 0
    assert sizes["gradcam-dashboard:latest"] < sizes["gradcam-triton:cpu"]
    (artifacts() / "image-sizes.json").write_text(json.dumps(sizes, indent=1))
    users = run(["docker", "top", stack.container("triton"), "-eo", "pid,uid,comm"]).stdout
    rows = [line.split(None, 2)[1:] for line in users.splitlines()[1:]]
    assert rows and all(uid != "0" for uid, _ in rows), users
    assert any(command.strip() == "tritonserver" for _, command in rows), users


def test_the_host_client_gets_what_the_pip_triton_gives(stack, triton, clips, tmp_path) -> None:
    container = gradcam_video(stack.grpc_url, clips["cat"], tmp_path / "container.mp4")
    assert container.returncode == 0, container.stderr
    local = gradcam_video(triton.urls.grpc, clips["cat"], tmp_path / "local.mp4")
    assert local.returncode == 0, local.stderr
    served = read_jsonl(tmp_path / "container.jsonl")
    reference = read_jsonl(tmp_path / "local.jsonl")
    assert len(served) == len(reference) == 24
    for a, b in zip(served, reference, strict=True):
        assert a["class_name"] == b["class_name"]
        assert [c["index"] for c in a["top5"]] == [c["index"] for c in b["top5"]]
        for ca, cb in zip(a["top5"], b["top5"], strict=True):
            assert ca["probability"] == pytest.approx(cb["probability"], abs=1e-4)
    assert "cat" in served[0]["class_name"]
    times = decoded_times(tmp_path / "container.mp4")
    assert times == pytest.approx([i / 12 for i in range(24)], abs=1e-3)


def test_the_dashboard_container_runs_a_clip_in_chromium(stack, clips) -> None:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(180_000)
        try:
            page.goto(stack.dashboard_url)
            page.get_by_text("Live and ready").wait_for()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
                str(clips["cat"])
            )
            page.get_by_text("320x240 video").wait_for()
            page.get_by_role("button", name="Run", exact=True).click()
            video = page.locator(".st-key-result-media video")
            video.wait_for()
            state = video_state(page, ".st-key-result-media video")
            video.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(artifacts() / "dashboard-in-container.png"))
            page.locator(".st-key-result-media").screenshot(
                path=str(artifacts() / "dashboard-in-container-result.png")
            )
        finally:
            browser.close()
    assert state["error"] is None and state["readyState"] >= 2 and state["advanced"], state
    assert state["width"] == 320


def _run_while(stack, clip: Path, out: Path, disrupt) -> subprocess.CompletedProcess:
    """gradcam-video on `clip`; `disrupt()` once its first frames are done; then its result."""
    command = [
        GRADCAM_VIDEO,
        str(clip),
        "-o",
        str(out),
        "--url",
        stack.grpc_url,
        "--model",
        "efficientnet-lite0",
        "--predictions",
        str(out.with_suffix(".jsonl")),
        "--retry-deadline",
        "240",
        "--batch-size",
        "4",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out.with_suffix(".jsonl.partial")
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.read_text().count("\n") >= 20):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.1)
    disrupt()
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _assert_complete(out: Path, n_frames: int, fps: float) -> None:
    records = read_jsonl(out.with_suffix(".jsonl"))
    assert [r["frame"] for r in records] == list(range(n_frames))
    assert decoded_times(out) == pytest.approx([i / fps for i in range(n_frames)], abs=1e-3)


def test_a_restarted_triton_costs_no_frame(stack, clips, tmp_path) -> None:
    out = tmp_path / "restart.mp4"
    result = _run_while(stack, clips["long"], out, lambda: stack.compose("restart", "triton"))
    assert result.returncode == 0, result.stderr
    _assert_complete(out, 240, 24)
    stack.wait_healthy()


def test_a_killed_triton_comes_back_by_the_restart_policy(stack, clips, tmp_path) -> None:
    out = tmp_path / "killed.mp4"
    restarts = json.loads(run(["docker", "inspect", stack.container("triton")]).stdout)[0]
    before = restarts["RestartCount"]

    def kill() -> None:
        os.kill(stack.tritonserver_pid(), signal.SIGKILL)

    result = _run_while(stack, clips["long"], out, kill)
    assert result.returncode == 0, result.stderr
    _assert_complete(out, 240, 24)
    after = json.loads(run(["docker", "inspect", stack.container("triton")]).stdout)[0]
    assert after["RestartCount"] == before + 1
    stack.wait_healthy()


def test_plain_compose_down_and_up_reuse_the_exported_model_and_serve_a_new_one(
    stack, model_repository, clips, tmp_path
) -> None:
    exported = stack.models / SAVEDMODEL
    first_export = exported.stat().st_mtime
    assert "exporting efficientnet-lite0" in stack.logs("triton")
    stack.shell(PLAIN_DOWN)
    assert not stack.leftovers()["containers"]
    # A model the user exported on the host, dropped into the repository.
    shutil.copytree(model_repository / "tiny", stack.models / "tiny")
    stack.timings["up again"] = stack.up(PLAIN_UP)
    triton = json.loads(run(["docker", "inspect", stack.container("triton")]).stdout)[0]
    assert not triton["HostConfig"].get("DeviceRequests")  # the CPU stack: no GPU asked for
    assert triton["Config"]["Image"] == "gradcam-triton:cpu"
    listed = subprocess.run(
        [GRADCAM_VIDEO, "--list-models", "--url", stack.grpc_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and "tiny" in listed.stdout, listed
    logs = stack.logs()
    assert "exporting" not in stack.logs("triton")
    assert exported.stat().st_mtime == first_export
    assert "Traceback" not in logs, logs[-3000:]
    result = gradcam_video(stack.grpc_url, clips["cat"], tmp_path / "again.mp4")
    assert result.returncode == 0, result.stderr


def test_a_changed_source_is_built_in_by_the_next_compose_up(stack) -> None:
    """`make compose-up` builds every time: nothing changed, the same images; a source changed
    (as after a `git pull`), new images that hold it, from cached dependency layers."""
    before = stack.image_ids()
    stack.timings["up, nothing changed"] = stack.up(MAKE_UP)
    assert stack.image_ids() == before
    changed = stack.clone / "client" / "src" / "gradcam_client" / "__init__.py"
    changed.write_text(changed.read_text() + "# a change after a git pull\n")
    stack.timings["up, a source changed"] = stack.up(MAKE_UP)
    after = stack.image_ids()
    assert after["triton"] != before["triton"] and after["dashboard"] != before["dashboard"]
    installed = run(
        ["docker", "exec", stack.container("triton"), "python", "-c",
         "import gradcam_client, pathlib; print(pathlib.Path(gradcam_client.__file__).read_text())"]
    ).stdout  # fmt: skip
    assert "# a change after a git pull" in installed
    (artifacts() / "timings.json").write_text(json.dumps(stack.timings, indent=1))


def test_make_compose_down_leaves_nothing_behind(stack) -> None:
    stack.shell(MAKE_DOWN)
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert run(["docker", "info"], check=False).returncode == 0  # the tests' engine still runs
