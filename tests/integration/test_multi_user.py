"""One server, several users: no cross-talk, overload, faults and bad requests, for real.

Every client here is the real `gradcam-video` (in subprocesses when they run at once, in this
process for the single-client reference runs) against a real Triton. Timing is never asserted:
the clients are only made long enough for a fault to land in the middle of their work.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import media
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from client_runs import CliRun, read_jsonl, run_cli
from served_models import EFFNET, TINY
from triton_server import running_triton
from tritonclient.utils import InferenceServerException

from gradcam_client import cli
from gradcam_client.media import read_timestamps
from gradcam_client.remote import contract
from gradcam_client.remote.server import GradcamServer, InFlightWindow, RetryPolicy

pytestmark = pytest.mark.integration

ONLY_TINY = ["--model-control-mode=explicit", f"--load-model={TINY}"]
SMALL_QUEUE = "tiny-small-queue"
CLIENT_TIMEOUT = 240.0  # seconds a client subprocess may take before the test gives up on it


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class User:
    """One user's job: a clip of its own, a model and settings of its own."""

    name: str
    model: str
    photo: str
    size: tuple[int, int]
    frames: int
    options: tuple[str, ...] = ()

    def clip(self, folder: Path) -> Path:
        path = folder / f"{self.name}-{self.photo}-{self.frames}.mp4"
        if not path.exists():
            media.write_clip(path, size=self.size, n_frames=self.frames, photo_name=self.photo)
        return path


@dataclass(frozen=True)
class Outputs:
    """Where one run writes: the video, the predictions (JSON lines) and the raw maps."""

    video: Path
    predictions: Path
    maps: Path

    @classmethod
    def in_folder(cls, folder: Path, name: str) -> Outputs:
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / f"{name}.mp4", folder / f"{name}.jsonl", folder / f"{name}.npz")

    @property
    def partial(self) -> Path:
        return self.predictions.with_name(self.predictions.name + ".partial")

    def lines_done(self) -> int:
        """Prediction lines written so far (to the partial file while the job runs)."""
        for path in (self.partial, self.predictions):
            try:
                return path.read_text().count("\n")
            except FileNotFoundError:
                continue
        return 0


def cli_args(
    user: User,
    clip: Path,
    out: Outputs,
    url: str,
    *,
    batch_size: int = 1,
    in_flight: int = 1,
    retry_deadline: float = 120.0,
) -> list[str]:
    """The `gradcam-video` command line of one user's job."""
    return [
        str(clip), "-o", str(out.video), "--url", url, "--model", user.model,
        "--predictions", str(out.predictions), "--maps", str(out.maps),
        "--batch-size", str(batch_size), "--max-in-flight", str(in_flight),
        "--retry-deadline", str(retry_deadline), *user.options,
    ]  # fmt: skip


class ClientProcess:
    """`gradcam-video` running in a subprocess of its own."""

    def __init__(self, args: Sequence[str]) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gradcam_client.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def finish(self, timeout: float = CLIENT_TIMEOUT) -> CliRun:
        """Wait for the client (killing it after `timeout`) and return what it printed."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"gradcam-video still running after {timeout:g} s: {err[-2000:]}")
        return CliRun(self.proc.returncode, out, err)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)


def run_alone(args: Sequence[str]) -> None:
    """One client alone, in this process: the reference of a concurrent run."""
    assert cli.main([*args, "--quiet"]) == 0


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def batching_counts(url: str, models: Sequence[str]) -> tuple[int, int]:
    """(inferences, executions) so far, summed over `models`, from the server's statistics."""
    inferences = executions = 0
    for model in models:
        stats = GradcamServer(url, model).statistics()[0]["model_stats"][0]
        inferences += int(stats.get("inference_count", 0))
        executions += int(stats.get("execution_count", 0))
    return inferences, executions


# --------------------------------------------------------------------------- checks


def assert_same_predictions(got: list[dict], want: list[dict]) -> None:
    """Same frames, same classes, probabilities within 1e-4 (of a maximum of 1)."""
    assert [r["frame"] for r in got] == [r["frame"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert (a["class_index"], a["explained_class"]) == (b["class_index"], b["explained_class"])
        assert [t["index"] for t in a["top5"]] == [t["index"] for t in b["top5"]]
        for x, y in zip(a["top5"], b["top5"], strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-4)


def assert_same_maps(got: Path, want: Path) -> None:
    """Every layer's raw maps within 1e-4 of their maximum."""
    with np.load(got) as a, np.load(want) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in b.files:
            assert a[key].shape == b[key].shape, key
            scale = max(float(np.abs(b[key]).max()), 1e-12)
            worst = float(np.abs(a[key] - b[key]).max()) / scale
            assert worst <= 1e-4, f"{key}: maps differ by {worst:.2e} of their maximum"


def assert_complete(out: Outputs, reference: Outputs, clip: Path) -> None:
    """A finished job: every output there, equal to the reference run, nothing partial."""
    assert_same_predictions(read_jsonl(out.predictions), read_jsonl(reference.predictions))
    assert_same_maps(out.maps, reference.maps)
    assert read_timestamps(out.video) == read_timestamps(clip)
    assert not out.partial.exists()


def assert_failed_cleanly(run: CliRun, out: Outputs, reference: Outputs, total: int) -> int:
    """A failed job: one error line naming how far it got, and nothing that looks complete.

    Returns the number of frames it reports as done.
    """
    assert run.code == 1, run.err
    error = run.error
    done = read_jsonl(out.partial)
    assert f"({len(done)} of {total} frames were done; " in error, error
    assert error.endswith(f"their predictions are in {out.partial}; no output was written to "
                          f"{out.video})"), error  # fmt: skip
    assert_same_predictions(done, read_jsonl(reference.predictions)[: len(done)])
    assert not out.video.exists() and not out.predictions.exists() and not out.maps.exists()
    assert not [p for p in out.video.parent.glob("*.mp4") if p.name.startswith(out.video.stem)]
    return len(done)


def assert_serves(url: str, model: str = TINY) -> None:
    """The server is ready and answers a fresh request correctly (as a second call does)."""
    client = GradcamServer(url, model, retry=RetryPolicy(deadline_s=10))
    assert client.is_ready()
    info = client.model_info()
    frames = np.random.default_rng(7).integers(
        0, 256, (2, info.input_height, info.input_width, 3), dtype=np.uint8
    )
    first = client.infer(frames, np.array([-1, 1]))
    again = client.infer(frames[::-1], np.array([1, -1]))
    np.testing.assert_allclose(first.probabilities, again.probabilities[::-1], atol=1e-5)
    assert first.class_index[1] == 1


# --------------------------------------------------------------------------- no cross-talk

MIXED_USERS = [
    User("a", TINY, "chelsea", (64, 48), 60, ("--target", "predicted", "--layers", "conv1")),
    User("b", TINY, "coffee", (48, 64), 60,
         ("--target", "2", "--layers", "conv1,conv2", "--methods", "gradcam,layercam",
          "--layout", "grid")),
    User("c", EFFNET, "astronaut", (96, 72), 10, ()),
    User("d", EFFNET, "rocket", (72, 96), 10, ("--target", "video", "--scope", "clip")),
]  # fmt: skip


def test_four_users_at_once_each_get_their_own_results(triton, tmp_path):
    """Different clips, models, targets and layers at once: each equals its run alone, while
    the server batched frames of different users together."""
    url = triton.urls.grpc
    clips = {user.name: user.clip(tmp_path) for user in MIXED_USERS}
    alone = {user.name: Outputs.in_folder(tmp_path / "alone", user.name) for user in MIXED_USERS}
    together = {user.name: Outputs.in_folder(tmp_path / "together", user.name)
                for user in MIXED_USERS}  # fmt: skip
    for user in MIXED_USERS:
        run_alone(cli_args(user, clips[user.name], alone[user.name], url))

    # One request of one frame in flight per client: a single client can never fill a batch
    # of more than one frame, so any batch of several frames mixes different clients.
    before = batching_counts(url, [TINY, EFFNET])
    clients = [
        ClientProcess(cli_args(user, clips[user.name], together[user.name], url))
        for user in MIXED_USERS
    ]
    runs = {user.name: client.finish() for user, client in zip(MIXED_USERS, clients, strict=True)}
    after = batching_counts(url, [TINY, EFFNET])

    for user in MIXED_USERS:
        assert runs[user.name].code == 0, f"{user.name}: {runs[user.name].err}"
        assert_complete(together[user.name], alone[user.name], clips[user.name])
    explained = {name: read_jsonl(together[name].predictions)[0]["explained_class"]
                 for name in ("b", "d")}  # fmt: skip
    assert explained["b"] == 2  # the fixed target, not another user's predicted class
    frames = sum(u.frames * (2 if "video" in u.options else 1) for u in MIXED_USERS)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    print(f"four users at once: {inferences} frames in {executions} executions")
    assert inferences == frames
    assert executions < inferences, f"{executions} executions for {inferences} frames"


# --------------------------------------------------------------------------- bad requests


def _grpc_inputs(frames: np.ndarray, targets: np.ndarray, targets_dtype: str = "INT32") -> list:
    inputs = [
        grpcclient.InferInput(contract.FRAMES, list(frames.shape), "UINT8"),
        grpcclient.InferInput(contract.TARGET_CLASS, list(targets.shape), targets_dtype),
    ]
    inputs[0].set_data_from_numpy(frames)
    inputs[1].set_data_from_numpy(targets)
    return inputs


ONE_FRAME = np.zeros((1, 32, 32, 3), np.uint8)


def short_frames_grpc(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    """The bytes of one frame, declared as two."""
    inputs = _grpc_inputs(ONE_FRAME, np.int32([[-1], [-1]]))
    inputs[0].set_shape([2, 32, 32, 3])
    grpc.infer(TINY, inputs)


def long_frames_grpc(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    """The bytes of two frames, declared as one."""
    inputs = _grpc_inputs(np.zeros((2, 32, 32, 3), np.uint8), np.int32([[-1]]))
    inputs[0].set_shape([1, 32, 32, 3])
    grpc.infer(TINY, inputs)


def short_frames_http(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    """The bytes of one frame declared as two, over the HTTP binary protocol."""
    frames = httpclient.InferInput(contract.FRAMES, [1, 32, 32, 3], "UINT8")
    frames.set_data_from_numpy(ONE_FRAME, binary_data=True)
    frames.set_shape([2, 32, 32, 3])
    targets = httpclient.InferInput(contract.TARGET_CLASS, [2, 1], "INT32")
    targets.set_data_from_numpy(np.int32([[-1], [-1]]), binary_data=True)
    httpclient.InferenceServerClient(http_url).infer(TINY, [frames, targets])


def int64_targets(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    grpc.infer(TINY, _grpc_inputs(ONE_FRAME, np.int64([[-1]]), "INT64"))


def more_targets_than_frames(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    grpc.infer(TINY, _grpc_inputs(np.zeros((2, 32, 32, 3), np.uint8), np.int32([[-1], [0], [1]])))


def two_targets_per_frame(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    grpc.infer(TINY, _grpc_inputs(ONE_FRAME, np.int32([[-1, 0]])))


def no_targets(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    grpc.infer(TINY, _grpc_inputs(ONE_FRAME, np.int32([[-1]]))[:1])


def unknown_output(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    outputs = [grpcclient.InferRequestedOutput("HEATMAP")]
    grpc.infer(TINY, _grpc_inputs(ONE_FRAME, np.int32([[-1]])), outputs=outputs)


def target_below_minus_one(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    grpc.infer(TINY, _grpc_inputs(ONE_FRAME, np.int32([[-2]])))


def no_frames(grpc: grpcclient.InferenceServerClient, http_url: str) -> None:
    grpc.infer(TINY, _grpc_inputs(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 1), np.int32)))


BAD_REQUESTS = {
    "short FRAMES (gRPC)": (short_frames_grpc, "input byte size mismatch for input 'FRAMES'"),
    "long FRAMES (gRPC)": (long_frames_grpc, "input byte size mismatch for input 'FRAMES'"),
    "short FRAMES (HTTP)": (short_frames_http, "input byte size mismatch for input 'FRAMES'"),
    "INT64 targets": (int64_targets, "data-type is 'INT64', but model 'tiny' expects 'INT32'"),
    "3 targets, 2 frames": (more_targets_than_frames, "batch size does not match other inputs"),
    "2 targets per frame": (two_targets_per_frame, "unexpected shape for input 'TARGET_CLASS'"),
    "no targets": (no_targets, "missing required input(s) ['TARGET_CLASS']"),
    "unknown output": (unknown_output, "unexpected inference output 'HEATMAP'"),
    "target -2": (target_below_minus_one, "TARGET_CLASS -2 is out of range: use -1"),
    "no frames": (no_frames, "input byte size mismatch"),
}


def test_bad_requests_get_clear_errors_while_good_ones_stream(triton):
    """Malformed requests (wrong byte length over gRPC and HTTP, dtypes, shapes, missing
    inputs or outputs, targets out of range) each fail alone with a clear error, while two
    other clients' requests keep succeeding with the right answers."""
    url = triton.urls.grpc
    frames = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    targets = np.array([-1, 0, 3, -1, 4])
    reference = GradcamServer(url, TINY).infer(frames, targets)
    stop = threading.Event()
    answered = [0, 0]
    wrong: list[str] = []

    def stream(index: int) -> None:
        client = GradcamServer(url, TINY, retry=RetryPolicy(deadline_s=30))
        for i in range(400):
            if stop.is_set():
                return
            start, size = (i + index) % 4, 1 + (i + index) % 2
            part = slice(start, start + size)
            try:
                got = client.infer(frames[part], targets[part])
                np.testing.assert_allclose(
                    got.probabilities, reference.probabilities[part], atol=1e-4
                )
                assert got.class_index.tolist() == reference.class_index[part].tolist()
            except Exception as error:  # collected, asserted below
                wrong.append(f"{type(error).__name__}: {error}")
                return
            answered[index] += 1

    streams = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(2)]
    for thread in streams:
        thread.start()
    try:
        wait_until(lambda: min(answered) >= 3 or wrong, 60, "the good requests to flow")
        grpc = grpcclient.InferenceServerClient(url)
        seen = {}
        for _ in range(2):
            for name, (send, message) in BAD_REQUESTS.items():
                with pytest.raises(InferenceServerException) as caught:
                    send(grpc, triton.urls.http_hostport)
                error = caught.value
                assert message in error.message(), f"{name}: {error}"
                assert str(error.status()) in ("StatusCode.INVALID_ARGUMENT", "400"), name
                seen[name] = error.message()
        during = list(answered)
        wait_until(lambda: min(answered) >= min(during) + 3 or wrong, 60, "more good answers")
    finally:
        stop.set()
        for thread in streams:
            thread.join(60)
    assert not wrong, wrong
    assert len(seen) == len(BAD_REQUESTS)
    assert_serves(url)


# --------------------------------------------------------------------------- overload


@pytest.fixture(scope="module")
def small_queue_server(tiny_keras_file, tmp_path_factory) -> Iterator:
    """A server whose only model queues at most 2 requests (and batches at most 2 frames)."""
    from gradcam_server import model_sources
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    repository = tmp_path_factory.mktemp("small-queue-repository")
    export(
        model_sources.keras_file(tiny_keras_file, "caffe"),
        repository,
        name=SMALL_QUEUE,
        layers=["conv2"],
        options=ServingOptions(max_batch_size=2, max_queue_size=2, max_queue_delay_us=1000),
    )
    logs = tmp_path_factory.mktemp("small-queue-logs")
    with running_triton(repository, log_dir=logs) as server:
        yield server


BUSY_USERS = [User(f"busy-{photo}", SMALL_QUEUE, photo, (48, 32), 40) for photo in media.PHOTOS]
QUEUE_FULL_REPORT = re.compile(r"^retried requests: (\d+) refused with a full queue", re.M)


def busy_round(url: str, clips, alone, busy) -> dict[str, int]:
    """The four busy clients at once against the small queue: each finishes with the right
    results or gives up cleanly; returns the queue-full refusals each one saw."""
    before = batching_counts(url, [SMALL_QUEUE])
    clients = [
        ClientProcess(
            cli_args(user, clips[user.name], busy[user.name], url, in_flight=8, retry_deadline=60)
        )
        for user in BUSY_USERS
    ]
    runs = {user.name: client.finish() for user, client in zip(BUSY_USERS, clients, strict=True)}
    after = batching_counts(url, [SMALL_QUEUE])
    refusals = {}
    for user in BUSY_USERS:
        run, out = runs[user.name], busy[user.name]
        if run.code == 0:
            assert_complete(out, alone[user.name], clips[user.name])
        else:  # gave up after its deadline: it must say so, and how far it got
            assert "the server's queue stayed full for 60 s" in run.error, run.err
            assert_failed_cleanly(run, out, alone[user.name], user.frames)
        found = QUEUE_FULL_REPORT.search(run.out)
        refusals[user.name] = int(found.group(1)) if found else 0
    print(f"queue-full refusals seen by each client: {refusals}")
    if all(run.code == 0 for run in runs.values()):
        # Refused requests were not computed, and every frame was computed exactly once.
        assert after[0] - before[0] == sum(user.frames for user in BUSY_USERS)
    return refusals


def test_a_full_queue_refuses_work_yet_every_client_finishes(small_queue_server, tmp_path):
    """Four clients with eight requests in flight each against a queue of two: the server
    refuses work (UNAVAILABLE, queue full), the clients back off and still finish with the
    right results, no frame is computed twice, and the server stays healthy."""
    url = small_queue_server.urls.grpc
    clips = {user.name: user.clip(tmp_path) for user in BUSY_USERS}
    alone = {user.name: Outputs.in_folder(tmp_path / "alone", user.name) for user in BUSY_USERS}
    busy = {user.name: Outputs.in_folder(tmp_path / "busy", user.name) for user in BUSY_USERS}
    for user in BUSY_USERS:
        run_alone(cli_args(user, clips[user.name], alone[user.name], url))

    # Whether the queue overflows depends on how fast the clients make their frames against how
    # fast the server drains them; on a loaded machine one round may not overflow. Every round
    # is checked in full; up to three are run to see the overload.
    for _ in range(3):
        refusals = busy_round(url, clips, alone, busy)
        if sum(refusals.values()) > 0:
            break
    assert sum(refusals.values()) > 0, "the small queue never filled: no overload was made"
    assert_serves(url, SMALL_QUEUE)


class RefusedAfter:
    """A real gRPC client whose inference requests, after the first `answered`, are refused
    the way Triton refuses them when the model's queue is full."""

    def __init__(self, client: grpcclient.InferenceServerClient, answered: int) -> None:
        self.client = client
        self.answered = answered
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def infer(self, *args, **kwargs):
        with self._lock:
            self.answered -= 1
            refuse = self.answered < 0
        if refuse:
            raise InferenceServerException(
                "[request id: <id_unknown>] Exceeds maximum queue size",
                status="StatusCode.UNAVAILABLE",
            )
        return self.client.infer(*args, **kwargs)


def test_a_client_that_gives_up_on_a_full_queue_says_how_far_it_got(
    small_queue_server, tmp_path, capsys, monkeypatch
):
    url = small_queue_server.urls.grpc
    user = BUSY_USERS[0]
    clip = user.clip(tmp_path)
    reference = Outputs.in_folder(tmp_path / "alone", user.name)
    run_alone(cli_args(user, clip, reference, url))
    connect = cli.connect

    def connect_to_a_busy_server(*args, **kwargs):
        server = connect(*args, **kwargs)
        server._clients = [RefusedAfter(client, answered=10) for client in server._clients]
        return server

    monkeypatch.setattr(cli, "connect", connect_to_a_busy_server)
    out = Outputs.in_folder(tmp_path / "gave-up", user.name)
    run = run_cli(capsys, *cli_args(user, clip, out, url, retry_deadline=1))
    assert run.error.startswith(
        f"inference on 1 frame(s): the server's queue stayed full for 1 s ({url}: "
        "UNAVAILABLE: Exceeds maximum queue size); try again later or with fewer requests "
        "in flight (10 of 40 frames were done; "
    ), run.error
    assert assert_failed_cleanly(run, out, reference, user.frames) == 10


def test_the_window_of_requests_in_flight_halves_on_a_full_queue_and_grows_back():
    """No server needed: the bookkeeping behind the overload test above."""
    window = InFlightWindow(cap=8)
    tickets = [window.acquire() for _ in range(8)]
    for ticket in tickets[:4]:  # four refusals of requests sent before the cut: one cut
        window.release(ticket, queue_full=True)
    assert window.limit == 4 and window.in_flight == 4
    window.release(tickets[4], answered=True)  # an answer makes room for one more
    assert window.limit == 4.25
    window.release(window.acquire(), queue_full=True)  # sent after the cut: cuts again
    assert window.limit == 2 and window.in_flight == 3
    for ticket in tickets[5:]:
        window.release(ticket, answered=True)
    for _ in range(200):
        window.release(window.acquire(), answered=True)
    assert window.limit == 8 and window.in_flight == 0  # back to the cap, never above
    lone = InFlightWindow(cap=1)
    lone.release(lone.acquire(), queue_full=True)
    assert lone.limit == 1  # never below one request


# --------------------------------------------------------------------------- faults


@pytest.fixture(scope="module")
def restartable(model_repository, tmp_path_factory) -> Iterator:
    """A server of our own (only `tiny`, so it restarts quickly), to kill and restart."""
    logs = tmp_path_factory.mktemp("restartable-logs")
    with running_triton(model_repository, extra_args=ONLY_TINY, log_dir=logs) as server:
        yield server


STREAMING_USERS = [
    User(f"stream-{photo}", TINY, photo, (48, 32), 320) for photo in ("chelsea", "coffee", "rocket")
]


@pytest.fixture(scope="module")
def streaming_references(triton, tmp_path_factory) -> dict[str, tuple[Path, Outputs]]:
    """Each streaming user's clip and its outputs when it runs alone on the shared server."""
    folder = tmp_path_factory.mktemp("streaming")
    references = {}
    for user in STREAMING_USERS:
        clip = user.clip(folder)
        out = Outputs.in_folder(folder / "alone", user.name)
        run_alone(cli_args(user, clip, out, triton.urls.grpc, batch_size=8, in_flight=2))
        references[user.name] = (clip, out)
    return references


def start_streaming(
    url: str, folder: Path, references: dict, deadlines: Sequence[float]
) -> tuple[list[ClientProcess], list[Outputs]]:
    """The streaming users at once (one frame per request), each with its retry deadline;
    returns once every one of them has written predictions and none has finished."""
    outs = [Outputs.in_folder(folder, user.name) for user in STREAMING_USERS]
    clients = [
        ClientProcess(cli_args(user, references[user.name][0], out, url, retry_deadline=deadline))
        for user, out, deadline in zip(STREAMING_USERS, outs, deadlines, strict=True)
    ]
    wait_until(
        lambda: all(out.lines_done() for out in outs) or any(c.proc.poll() is not None
                                                             for c in clients),
        CLIENT_TIMEOUT,
        "every client to be under way",
    )  # fmt: skip
    running = [c.proc.poll() is None for c in clients]
    if not all(running):
        for client in clients:
            client.kill()
        pytest.fail(f"a client ended before the fault: {[c.finish().err for c in clients]}")
    return clients, outs


def test_a_server_killed_and_restarted_mid_run(restartable, streaming_references, tmp_path):
    """SIGKILL of Triton and its stubs while three clients stream, then a restart: the two
    clients that may wait finish with the right results; the one with a 1 s deadline stops
    with an error naming how far it got, leaving nothing that looks complete."""
    url = restartable.urls.grpc
    clients, outs = start_streaming(url, tmp_path, streaming_references, [120, 120, 1])
    print(f"killed the server with {[out.lines_done() for out in outs]} prediction lines written")
    restartable.kill()
    restartable.start()
    restartable.wait_ready(120)
    runs = [client.finish() for client in clients]

    for user, run, out in zip(STREAMING_USERS[:2], runs, outs, strict=False):
        clip, reference = streaming_references[user.name]
        assert run.code == 0, run.err
        assert_complete(out, reference, clip)
        assert "while the server was unavailable" in run.out
    user, run, out = STREAMING_USERS[2], runs[2], outs[2]
    assert run.error.startswith("inference on 1 frame(s): no answer for 1 s ("), run.error
    done = assert_failed_cleanly(run, out, streaming_references[user.name][1], user.frames)
    assert 0 < done < user.frames
    assert_serves(url)


def test_a_client_killed_mid_run_leaves_the_server_and_the_others_unaffected(
    restartable, streaming_references, tmp_path
):
    url = restartable.urls.grpc
    server_pid = restartable.pid
    clients, outs = start_streaming(url, tmp_path, streaming_references, [60, 60, 60])
    clients[0].kill()
    killed = clients[0].finish()
    runs = [client.finish() for client in clients[1:]]

    assert killed.code == -signal.SIGKILL
    assert not outs[0].video.exists() and not outs[0].predictions.exists()
    assert not outs[0].maps.exists()
    for user, run, out in zip(STREAMING_USERS[1:], runs, outs[1:], strict=True):
        clip, reference = streaming_references[user.name]
        assert run.code == 0, run.err
        assert_complete(out, reference, clip)
    assert restartable.is_running() and restartable.pid == server_pid
    assert_serves(url)
