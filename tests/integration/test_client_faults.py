"""The client against a server that restarts, crashes, is absent or lacks the model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import media
import pytest
from client_runs import read_jsonl, run_cli
from served_models import EFFNET, TINY
from triton_server import free_port, running_triton
from tritonclient.utils import InferenceServerException

from gradcam_client import cli
from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.media import read_timestamps
from gradcam_client.remote.server import GradcamServer, RetryPolicy

pytestmark = pytest.mark.integration

N_FRAMES = 144
ONLY_TINY = ["--model-control-mode=explicit", f"--load-model={TINY}"]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """144 small frames: long enough for a restart to land in the middle."""
    folder = tmp_path_factory.mktemp("long")
    return media.write_clip(folder / "long.mp4", size=(48, 32), n_frames=N_FRAMES, fps=24)


@pytest.fixture(scope="module")
def own_server(model_repository, tmp_path_factory):
    """A server of our own (only `tiny`, so it restarts quickly): restarted, then killed."""
    logs = tmp_path_factory.mktemp("own-triton")
    with running_triton(model_repository, extra_args=ONLY_TINY, log_dir=logs) as server:
        yield server


def test_a_restart_mid_video_loses_and_repeats_no_frame(own_server, long_clip, tmp_path):
    client = GradcamServer(own_server.urls.grpc, TINY, retry=RetryPolicy(deadline_s=90))
    settings = JobSettings(batch_size=2, max_in_flight=2)
    calm = process_media(
        client, long_clip, tmp_path / "calm.mp4", settings, predictions=tmp_path / "calm.jsonl"
    )

    failed: list[str] = []  # requests that failed while the server was away (then retried)
    infer = client._clients[0].infer

    def recording_infer(*args, **kwargs):
        try:
            return infer(*args, **kwargs)
        except InferenceServerException as error:
            failed.append(str(error.status()))
            raise

    client._clients[0].infer = recording_infer
    restarted = threading.Event()
    down = threading.Event()
    errors: list[BaseException] = []

    def restart() -> None:
        try:
            own_server.stop()
            down.set()
            own_server.start()
            own_server.wait_ready(120)
            restarted.set()
        except BaseException as error:  # reported by the test below
            errors.append(error)
            down.set()

    seen: list[int] = []

    def progress(done: int, total: int | None) -> None:
        seen.append(done)
        if done == 30:  # stop the server while later frames are queued and in flight
            threading.Thread(target=restart, daemon=True).start()
            assert down.wait(60)

    result = process_media(
        client,
        long_clip,
        tmp_path / "out.mp4",
        settings,
        predictions=tmp_path / "out.jsonl",
        progress=progress,
    )
    assert not errors and restarted.is_set()
    assert failed and set(failed) <= {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND"}
    assert result.frames == calm.frames == N_FRAMES
    assert seen == list(range(1, N_FRAMES + 1))
    assert read_timestamps(tmp_path / "out.mp4") == read_timestamps(long_clip)
    got, want = read_jsonl(tmp_path / "out.jsonl"), read_jsonl(tmp_path / "calm.jsonl")
    assert [r["frame"] for r in got] == list(range(N_FRAMES))
    for a, b in zip(got, want, strict=True):
        assert (a["class_index"], a["explained_class"]) == (b["class_index"], b["explained_class"])
        assert [t["index"] for t in a["top5"]] == [t["index"] for t in b["top5"]]
        for x, y in zip(a["top5"], b["top5"], strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-4)
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_killed_server_fails_the_job_clearly_keeping_partial_predictions(
    own_server, long_clip, tmp_path, capsys, monkeypatch
):
    def kill_at_frame_40(*args, progress, **kwargs):
        def hooked(done: int, total: int | None) -> None:
            if done == 40:
                own_server.kill()  # SIGKILL of Triton and its stubs: a crash
            progress(done, total)

        return process_media(*args, progress=hooked, **kwargs)

    monkeypatch.setattr(cli, "process_media", kill_at_frame_40)
    output, predictions = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    started = time.monotonic()
    run = run_cli(
        capsys, long_clip, "-o", output, "--url", own_server.urls.grpc, "--model", TINY,
        "--batch-size", 2, "--max-in-flight", 2, "--retry-deadline", 1.5,
        "--predictions", predictions,
    )  # fmt: skip
    assert run.code == 1 and time.monotonic() - started < 60  # no hang
    assert run.error.startswith("inference on 2 frame(s): no answer for 1.5 s")
    partial = Path(f"{predictions}.partial")
    done = read_jsonl(partial)
    assert 40 <= len(done) < N_FRAMES
    assert [r["frame"] for r in done] == list(range(len(done)))
    assert f"({len(done)} of {N_FRAMES} frames were done; " in run.error
    assert run.error.endswith(
        f"their predictions are in {partial}; no output was written to {output})"
    )
    assert not output.exists() and not predictions.exists()
    assert list(tmp_path.glob("*.mp4")) == []  # no temporary video left behind either


def test_a_server_that_is_not_there_is_reported_quickly(tmp_path, capsys):
    clip = media.write_clip(tmp_path / "clip.mp4", size=(48, 32), n_frames=3)
    port = free_port()
    started = time.monotonic()
    run = run_cli(
        capsys, clip, "-o", tmp_path / "out.mp4", "--url", f"localhost:{port}", "--model", TINY,
        "--retry-deadline", 1,
    )  # fmt: skip
    assert run.code == 1 and time.monotonic() - started < 30  # no hang
    assert run.error.startswith(f"reading model 'tiny': no answer for 1 s (localhost:{port}: ")
    assert "UNAVAILABLE" in run.error
    assert not (tmp_path / "out.mp4").exists()


def test_an_unknown_model_lists_the_hosted_ones_without_waiting(triton, tmp_path, capsys):
    clip = media.write_clip(tmp_path / "clip.mp4", size=(48, 32), n_frames=3)
    started = time.monotonic()
    run = run_cli(capsys, clip, "-o", tmp_path / "out.mp4", "--url", triton.urls.grpc,
                  "--model", "resnet-9000")  # fmt: skip
    assert run.code == 1 and time.monotonic() - started < 10  # the default deadline is 120 s
    hosted = f"it hosts: {EFFNET}, {TINY}"
    assert run.error == f"the server has no Grad-CAM model 'resnet-9000'; {hosted}"
