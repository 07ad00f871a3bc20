"""Talking to Grad-CAM models on one or several Triton servers over gRPC, with retries.

`UNAVAILABLE` and `NOT_FOUND` (server down, restarting, queue full, model reloading) are
retried with exponential back-off until a deadline; `INVALID_ARGUMENT` and every other error
are not, nor is `NOT_FOUND` for a model the server's repository does not list at all (a
mistyped model name fails at once, naming the models that are there). Unary calls only: after
a server restart the same channel works again, and unary requests spread over several servers
(or sit behind a load balancer) without sticky streams.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gradcam_client import contract
from gradcam_client.contract import ModelInfo
from gradcam_client.errors import ModelNotFound, RequestRejected, ServerError, ServerUnavailable

RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND"}


class RequestCancelled(ServerError):
    """The caller gave up on a request while it was being retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter for transient server errors."""

    deadline_s: float = 120.0
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delays(self):
        """Successive waits, each within [0.5, 1] of the exponential value."""
        delay = self.first_delay_s
        while True:
            yield delay * random.uniform(0.5, 1.0)
            delay = min(delay * 2, self.max_delay_s)


@dataclass(frozen=True)
class Connection:
    """How to reach the server(s): TLS, compression and per-request timeout."""

    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    compression: str | None = None  # "gzip" or "deflate" for slow links
    request_timeout_s: float | None = 300.0


@dataclass
class BatchResult:
    """The server's answer for a batch of frames."""

    probabilities: np.ndarray  # [n, classes]
    class_index: np.ndarray  # [n]
    maps: dict[str, np.ndarray]  # layer -> [n, methods, h, w]


def is_retryable(error: InferenceServerException) -> bool:
    return str(error.status()) in RETRYABLE


def is_not_found(error: InferenceServerException) -> bool:
    return str(error.status()) == "StatusCode.NOT_FOUND"


def describe(error: InferenceServerException) -> str:
    """One line: the gRPC status and Triton's message."""
    status = str(error.status() or "").replace("StatusCode.", "")
    message = (error.message() or "").strip().splitlines()
    text = message[0] if message else "no message"
    return f"{status}: {text}" if status else text


class GradcamServer:
    """A Grad-CAM model on one or several Triton servers (requests go round robin)."""

    def __init__(
        self,
        urls: str | list[str],
        model: str,
        connection: Connection | None = None,
        retry: RetryPolicy | None = None,
        priority: int = 0,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("give at least one server URL")
        self.model = model
        self.connection = connection or Connection()
        self.retry = retry or RetryPolicy()
        self.priority = priority
        self._clients = [self._connect(url) for url in self.urls]
        self._next = itertools.cycle(range(len(self._clients)))
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None

    def _connect(self, url: str) -> grpcclient.InferenceServerClient:
        c = self.connection
        return grpcclient.InferenceServerClient(
            url,
            ssl=c.ssl,
            root_certificates=c.root_certificates,
            private_key=c.private_key,
            certificate_chain=c.certificate_chain,
            channel_args=[
                ("grpc.max_receive_message_length", 1 << 30),
                ("grpc.max_send_message_length", 1 << 30),
                # Reconnect quickly once a restarted server is back.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )

    def _pick(self) -> tuple[str, grpcclient.InferenceServerClient]:
        with self._lock:
            index = next(self._next)
        return self.urls[index], self._clients[index]

    def _with_retry(
        self,
        action: str,
        call,
        *,
        model_call: bool = False,
        cancel: threading.Event | None = None,
    ):
        """Run `call(client)` on the next server, retrying transient errors.

        With `model_call`, a NOT_FOUND from a server whose repository does not even list the
        model fails at once with `ModelNotFound` (a model that is loading is waited for).
        Once `cancel` is set no further attempt is made (`RequestCancelled`).
        """
        give_up = time.monotonic() + self.retry.deadline_s
        delays = self.retry.delays()
        while True:
            if cancel is not None and cancel.is_set():
                raise RequestCancelled(f"{action}: cancelled")
            url, client = self._pick()
            try:
                return call(client)
            except InferenceServerException as error:
                if not is_retryable(error):
                    raise RequestRejected(f"{action} refused by {url}: {describe(error)}") from None
                if model_call and is_not_found(error) and not self._lists_model(client):
                    raise ModelNotFound(self._unknown_model_message()) from None
                last = f"{url}: {describe(error)}"
            wait = next(delays)
            if time.monotonic() + wait > give_up:
                raise ServerUnavailable(
                    f"{action}: no answer for {self.retry.deadline_s:g} s ({last})"
                )
            if cancel is not None:
                if cancel.wait(wait):
                    raise RequestCancelled(f"{action}: cancelled")
            else:
                time.sleep(wait)

    def _lists_model(self, client: grpcclient.InferenceServerClient) -> bool:
        """Whether the server's repository has the model in any state (True if unsure)."""
        try:
            index = client.get_model_repository_index(as_json=True)
        except InferenceServerException:
            return True
        return any(m.get("name") == self.model for m in index.get("models", []))

    def model_info(self) -> ModelInfo:
        """The model's metadata, read from the server's model config (cached)."""
        if self._info is None:
            try:
                config = self._with_retry(
                    f"reading model {self.model!r}",
                    lambda client: client.get_model_config(self.model, as_json=True),
                    model_call=True,
                )
            except RequestRejected as error:
                if "unknown model" in str(error).lower():
                    raise ModelNotFound(self._unknown_model_message()) from None
                raise
            self._info = ModelInfo.from_triton_config(config)
        return self._info

    def _unknown_model_message(self) -> str:
        try:
            names = self.list_models()
        except ServerUnavailable:
            names = []
        hosted = ", ".join(names) if names else "none"
        return f"the server has no Grad-CAM model {self.model!r}; it hosts: {hosted}"

    def list_models(self) -> list[str]:
        """Names of the ready models on the first server."""
        index = self._with_retry(
            "listing models", lambda client: client.get_model_repository_index(as_json=True)
        )
        return sorted(
            m["name"] for m in index.get("models", []) if m.get("state", "READY") == "READY"
        )

    def is_ready(self) -> bool:
        """Whether every server answers and has the model ready (no retries)."""
        try:
            return all(client.is_model_ready(self.model) for client in self._clients)
        except InferenceServerException:
            return False

    def infer(
        self, frames: np.ndarray, targets: np.ndarray, cancel: threading.Event | None = None
    ) -> BatchResult:
        """Predictions and maps for frames [n, H, W, 3] uint8 and targets [n] int.

        More frames than the model's maximum batch size go as several requests. Setting
        `cancel` stops retrying (`RequestCancelled`), e.g. when the job has failed anyway.
        """
        info = self.model_info()
        step = info.max_batch_size
        if len(frames) > step:
            parts = [
                self.infer(frames[i : i + step], targets[i : i + step], cancel)
                for i in range(0, len(frames), step)
            ]
            return BatchResult(
                probabilities=np.concatenate([p.probabilities for p in parts]),
                class_index=np.concatenate([p.class_index for p in parts]),
                maps={k: np.concatenate([p.maps[k] for p in parts]) for k in parts[0].maps},
            )
        inputs = [
            grpcclient.InferInput(contract.FRAMES, list(frames.shape), "UINT8"),
            grpcclient.InferInput(contract.TARGET_CLASS, [len(frames), 1], "INT32"),
        ]
        inputs[0].set_data_from_numpy(np.ascontiguousarray(frames, dtype=np.uint8))
        inputs[1].set_data_from_numpy(np.asarray(targets, dtype=np.int32).reshape(-1, 1))
        outputs = [grpcclient.InferRequestedOutput(name) for name in info.outputs()]
        response = self._with_retry(
            f"inference on {len(frames)} frame(s)",
            lambda client: client.infer(
                self.model,
                inputs,
                outputs=outputs,
                priority=self.priority,
                client_timeout=self.connection.request_timeout_s,
                compression_algorithm=self.connection.compression,
            ),
            model_call=True,
            cancel=cancel,
        )
        return BatchResult(
            probabilities=response.as_numpy(contract.PROBABILITIES),
            class_index=response.as_numpy(contract.CLASS_INDEX).reshape(-1),
            maps={layer.name: response.as_numpy(layer.output_name) for layer in info.layers},
        )

    def statistics(self) -> list[dict[str, Any]]:
        """The model's inference statistics on each server (counts, queue and compute time)."""
        return [
            client.get_inference_statistics(self.model, as_json=True) for client in self._clients
        ]

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def __enter__(self) -> GradcamServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
