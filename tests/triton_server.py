"""Start the real Triton server for tests (`bench/local_triton.py`), plus test models.

Usage in a test module::

    from triton_server import running_triton, write_add_one_model

    @pytest.fixture(scope="module")
    def triton(tmp_path_factory):
        repo = tmp_path_factory.mktemp("repo")
        write_add_one_model(repo)
        with running_triton(repo, log_dir=tmp_path_factory.mktemp("logs")) as server:
            yield server  # server.urls.grpc -> "localhost:PORT"

The yielded `TritonServer` listens on free ports and can be `stop()`-ed, `start()`-ed again (then
`wait_ready()`), `restart()`-ed on the same ports, or `kill()`-ed (SIGKILL of Triton and its
backend stubs) for fault tests; it is stopped when the block ends. `server.pids()` lists the live
processes (Triton and its stubs); `assert_processes_gone()` checks that they are gone.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from local_triton import free_port, free_ports, new_triton, running_triton

__all__ = [
    "alive",
    "assert_processes_gone",
    "free_port",
    "free_ports",
    "new_triton",
    "processes_mentioning",
    "running_triton",
    "write_add_one_model",
    "write_failing_model",
    "write_python_model",
]


def alive(pids: Iterable[int]) -> list[int]:
    """The pids that still name a live (non-zombie) process."""
    import psutil

    living = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
    return living


def processes_mentioning(text: str | os.PathLike[str]) -> list[int]:
    """Pids of live processes whose command line mentions `text` (e.g. a temp repository path:
    both `tritonserver --model-repository=...` and the backend stubs name it)."""
    import psutil

    text = str(text)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                text in arg for arg in proc.info["cmdline"] or ()
            ):
                found.append(proc.pid)
    return found


def assert_processes_gone(pids: Iterable[int], timeout: float = 10.0) -> None:
    """Fail unless every pid is gone within `timeout` seconds."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pids), f"processes left behind: {alive(pids)}"


def write_python_model(
    repository: str | os.PathLike[str],
    name: str,
    model_py: str,
    *,
    max_batch_size: int = 8,
    inputs: Sequence[tuple[str, str, Sequence[int]]] = (("INPUT0", "TYPE_FP32", (-1,)),),
    outputs: Sequence[tuple[str, str, Sequence[int]]] = (("OUTPUT0", "TYPE_FP32", (-1,)),),
    instance_count: int = 1,
) -> Path:
    """Write a python-backend model `name` (version 1) with the given model.py source."""

    def tensors(specs: Sequence[tuple[str, str, Sequence[int]]]) -> str:
        return ",\n".join(
            f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}'
            for n, t, d in specs
        )

    model_dir = Path(repository) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        f"input [\n{tensors(inputs)}\n]\noutput [\n{tensors(outputs)}\n]\n"
        f"instance_group [ {{ kind: KIND_CPU count: {instance_count} }} ]\n"
    )
    (model_dir / "1" / "model.py").write_text(textwrap.dedent(model_py))
    return model_dir


ADD_ONE_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", (x + 1).astype(x.dtype))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def write_add_one_model(repository: str | os.PathLike[str], name: str = "add_one") -> Path:
    """A tiny model: FP32 INPUT0 [-1] (batched, max 8) -> OUTPUT0 = INPUT0 + 1."""
    return write_python_model(repository, name, ADD_ONE_MODEL)


def write_failing_model(
    repository: str | os.PathLike[str], message: str, name: str = "broken"
) -> Path:
    """A model whose initialize() raises RuntimeError(message), so loading it fails."""
    source = f"""\
    class TritonPythonModel:
        def initialize(self, args):
            raise RuntimeError({message!r})

        def execute(self, requests):
            return []
    """
    return write_python_model(repository, name, source)
