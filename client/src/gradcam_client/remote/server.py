"""Talking to Grad-CAM models on one or several Triton servers over gRPC, with retries.

`UNAVAILABLE` and `NOT_FOUND` (server down, restarting, queue full, model reloading) are
retried with exponential back-off until a deadline; `INVALID_ARGUMENT` and every other error
are not, nor is `NOT_FOUND` for a model the server's repository does not list at all (a
mistyped model name fails at once, naming the models that are there). Unary calls only: after
a server restart the same channel works again, and unary requests spread over several servers
(or sit behind a load balancer) without sticky streams.

A server whose queue is full ("Exceeds maximum queue size") is busy, not down: the client then
sends fewer requests at once (`InFlightWindow`: halved on a refusal, grown back by one per
window of answered requests, never above `max_in_flight`) and backs off before resending a
refused request as for a server that is down. Refusals are counted (`GradcamServer.retried`),
and a client that gives up says the queue stayed full (`ServerBusy`).

Live frames are worth little late: `infer(..., queue_timeout=...)` asks the server to drop
the request if it waited longer than that in the queue, and a request refused for a full queue
or dropped that way is not retried but raised as `FramesTurnedAway` (the caller counts its
frames as skipped); the window shrinks as for any refusal.

Frames go raw or encoded (`Wire`); answers carry the full probability vector or only the
top-k (`top_k`), which the client spreads back into a vector that is zero elsewhere.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gradcam_client.errors import (
    GradcamError,
    InvalidResponse,
    ModelNotFound,
    RequestRejected,
    ServerBusy,
    ServerError,
    ServerUnavailable,
    TlsError,
)
from gradcam_client.remote import contract
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.model_ref import ModelRef
from gradcam_client.remote.wire import Wire

RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND"}
QUEUE_FULL = "exceeds maximum queue size"  # Triton's message when a model's queue is full
QUEUE_TIMEOUT = "request timeout expired"  # ... when a request waited past its queue time-out
_REQUEST_ID = re.compile(r"^\[request id: [^\]]*\]\s*")
_TLS_FAILURE = re.compile(r"tls handshake failed|certificate_verify_failed|peer name", re.I)
_TLS_REASON = re.compile(r"OPENSSL_internal:([A-Z_]+): ([^:]+)")
_UNREACHABLE = (  # gRPC's words for "no connection could be made" -> ours
    (re.compile(r"connection refused", re.I), "connection refused"),
    (re.compile(r"dns resolution failed|domain name not found|name or service", re.I),
     "host name not found"),
    (re.compile(r"no route to host", re.I), "no route to host"),
    (re.compile(r"network is unreachable", re.I), "network unreachable"),
    (re.compile(r"timeout occurred|timed out", re.I), "connection timed out"),
    (re.compile(r"connection reset|socket closed|connection closed", re.I), "connection closed"),
    (re.compile(r"failed to connect", re.I), "cannot connect"),
)  # fmt: skip


class RequestCancelled(ServerError):
    """The caller gave up on a request while it was being retried."""


class FramesTurnedAway(ServerError):
    """A live request the server refused (queue full) or dropped (it waited past its queue
    time-out): its frames are skipped, the run goes on."""


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
    """How to reach the server(s): TLS, compression and per-request timeout.

    The TLS fields are paths of PEM files (gRPC reads them): the CA to trust (None: the
    system's), and for mutual TLS the client's key and certificate.
    """

    ssl: bool = False
    root_certificates: str | None = None
    private_key: str | None = None
    certificate_chain: str | None = None
    compression: str | None = None  # "gzip" or "deflate" for slow links
    request_timeout_s: float | None = 300.0


@dataclass(frozen=True)
class RetryNotice:
    """A transient failure about to be retried: what failed, why, and the last retry time.

    `first` marks the first failure of `url` since it last answered (or since the client
    started): the moment to tell a person, once, that the server is not answering.
    """

    action: str
    problem: str  # "URL: STATUS: message"
    queue_full: bool
    give_up_at: float  # time.monotonic() after which this request is not retried
    url: str = ""
    unreachable: str | None = None  # why no connection was made ("connection refused"), if so
    first: bool = False


@dataclass
class BatchResult:
    """The server's answer for a batch of frames."""

    probabilities: np.ndarray  # [n, classes]
    class_index: np.ndarray  # [n]
    maps: dict[str, np.ndarray]  # layer -> [n, methods, h, w]


def check_finite(result: BatchResult, info: ModelInfo) -> None:
    """Raise InvalidResponse if a probability or a map holds NaN or infinity.

    A raw map is ReLU'd and finite by the contract; normalising one holding +inf would erase
    every other value of it (and NaN would vanish as 0), so such an answer is refused whole.
    """
    if not np.isfinite(result.probabilities).all():
        frame = int(np.argwhere(~np.isfinite(result.probabilities))[0][0])
        raise InvalidResponse(
            f"the server returned NaN or infinite probabilities for frame {frame} of a batch "
            f"of {len(result.probabilities)}; a fault of the server or its model"
        )
    for layer, maps in result.maps.items():
        bad = ~np.isfinite(maps)
        if bad.any():
            frame, method = (int(i) for i in np.argwhere(bad)[0][:2])
            name = info.methods[method] if method < len(info.methods) else method
            raise InvalidResponse(
                f"the server returned a {name} map of layer {layer!r} holding NaN or infinity "
                f"(frame {frame} of a batch of {len(maps)}); a fault of the server or its "
                "model, not of the video"
            )


def is_retryable(error: InferenceServerException) -> bool:
    return str(error.status()) in RETRYABLE


def is_not_found(error: InferenceServerException) -> bool:
    return str(error.status()) == "StatusCode.NOT_FOUND"


def is_queue_full(error: InferenceServerException) -> bool:
    """Whether the server refused the request because the model's queue is full."""
    return (
        str(error.status()) == "StatusCode.UNAVAILABLE"
        and QUEUE_FULL in (error.message() or "").lower()
    )


def is_queue_timeout(error: InferenceServerException) -> bool:
    """Whether the server dropped the request because it waited past its queue time-out."""
    return (
        str(error.status()) == "StatusCode.UNAVAILABLE"
        and QUEUE_TIMEOUT in (error.message() or "").lower()
    )


def tls_failure(error: InferenceServerException) -> str | None:
    """Why the TLS handshake failed ("CERTIFICATE_VERIFY_FAILED: ..."), or None if it did not.

    Not transient: retrying cannot make an untrusted certificate trusted.
    """
    message = error.message() or ""
    if not _TLS_FAILURE.search(message):
        return None
    reason = _TLS_REASON.search(message)
    return f"{reason.group(1)}: {reason.group(2).strip()}" if reason else describe(error)


def unreachable_reason(error: InferenceServerException) -> str | None:
    """Why no connection to the server could be made ("connection refused", "host name not
    found", ...), or None when the server itself answered (a full queue, a model loading)."""
    if str(error.status()) != "StatusCode.UNAVAILABLE" or is_queue_full(error):
        return None
    message = error.message() or ""
    return next((reason for pattern, reason in _UNREACHABLE if pattern.search(message)), None)


def describe(error: InferenceServerException) -> str:
    """One line: the gRPC status and Triton's message (without its request id prefix)."""
    status = str(error.status() or "").replace("StatusCode.", "")
    message = (error.message() or "").strip().splitlines()
    text = _REQUEST_ID.sub("", message[0]) if message else "no message"
    return f"{status}: {text or 'no message'}" if status else text or "no message"


class InFlightWindow:
    """How many requests one client sends at once: additive increase, multiplicative decrease.

    At most `cap` (None: no cap). A refusal because the server's queue is full halves the
    window (once per window of requests: refusals of requests sent before the last cut do not
    cut again); every answered request widens it by 1/window, i.e. by one per window. The
    window never drops below one request, so a client always makes progress.
    """

    def __init__(self, cap: int | None = None) -> None:
        if cap is not None and cap < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.cap = cap
        self.limit: float = float(cap) if cap is not None else math.inf
        self.in_flight = 0
        self._sent = 0  # tickets handed out
        self._cut_at = 0  # ticket count at the last cut
        self._condition = threading.Condition()

    def acquire(self, cancel: threading.Event | None = None) -> int:
        """Wait for a free slot (or `cancel`: RequestCancelled); returns the request's ticket."""
        with self._condition:
            while self.limit != math.inf and self.in_flight >= max(1, math.floor(self.limit)):
                if cancel is not None and cancel.is_set():
                    raise RequestCancelled("cancelled while waiting to send")
                self._condition.wait(0.05)
            self.in_flight += 1
            self._sent += 1
            return self._sent

    def release(self, ticket: int, *, answered: bool = False, queue_full: bool = False) -> None:
        """Free the slot of request `ticket`, adjusting the window to how it went."""
        with self._condition:
            self.in_flight -= 1
            if queue_full and ticket > self._cut_at:
                current = min(self.limit, float(self.in_flight + 1))
                self.limit = max(1.0, current / 2)
                self._cut_at = self._sent
            elif answered and self.limit != math.inf:
                cap = math.inf if self.cap is None else float(self.cap)
                self.limit = min(cap, self.limit + 1 / self.limit)
            self._condition.notify_all()


@dataclass
class RetryCounts:
    """Transient errors a client saw and retried (for reports; counted over its lifetime)."""

    queue_full: int = 0  # refused: the model's queue was full
    unavailable: int = 0  # any other retried error (server down, restarting, model loading)


def answer_output(response: grpcclient.InferResult, name: str) -> np.ndarray:
    """One output of an answer; `InvalidResponse` when the server left it out."""
    value = response.as_numpy(name)
    if value is None:
        raise InvalidResponse(
            f"the server's answer lacks {name}, which the model's configuration declares: "
            "its SavedModel was probably exported by an older version; export it again"
        )
    return value


class GradcamServer:
    """A Grad-CAM model on one or several Triton servers (requests go round robin)."""

    def __init__(
        self,
        urls: str | list[str],
        model: str | ModelRef,
        connection: Connection | None = None,
        retry: RetryPolicy | None = None,
        priority: int = 0,
        max_in_flight: int | None = None,
        wire: Wire | None = None,
        top_k: int | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
    ) -> None:
        """`model` is ``NAME`` (its newest loaded version) or ``NAME:VERSION`` (`ModelRef`).

        `max_in_flight` caps the inference requests this client has outstanding at once,
        over all the threads that share it (None: no cap beyond the adaptive window).

        `wire` is the form of the frames on the wire (default raw). With `top_k`, answers carry
        only the top-k probabilities (the model's TOP_* outputs) when the model has at least
        that many; the others read as 0. `on_retry` hears of every transient failure before
        it is retried (from the thread that made the request), e.g. to tell a waiting person
        that the server is not answering."""
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("give at least one server URL")
        if isinstance(model, str):
            model = ModelRef.parse(model) if model.strip() else ModelRef("")
        self.ref = model
        self.model = model.name
        self.version = model.triton_version  # "" for the newest
        self.connection = connection or Connection()
        self.retry = retry or RetryPolicy()
        self.priority = priority
        self._clients = [self._connect(url) for url in self.urls]
        self._next = itertools.cycle(range(len(self._clients)))
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self.window = InFlightWindow(max_in_flight)
        self.retried = RetryCounts()
        self.wire = wire or Wire()
        self.top_k = top_k
        self.on_retry = on_retry
        self._failing: set[str] = set()  # URLs whose last attempt failed transiently

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
        window: InFlightWindow | None = None,
        turn_away: bool = False,
    ):
        """Run `call(client)` on the next server, retrying transient errors.

        With `model_call`, a NOT_FOUND from a server whose repository does not even list the
        model fails at once with `ModelNotFound` (a model that is loading is waited for).
        Once `cancel` is set no further attempt is made (`RequestCancelled`). With `window`,
        each attempt waits for a slot in it and reports how it went (a full queue shrinks it).
        With `turn_away`, a full queue or a queue time-out raises `FramesTurnedAway` at once.
        """
        give_up = time.monotonic() + self.retry.deadline_s
        delays = self.retry.delays()
        while True:
            if cancel is not None and cancel.is_set():
                raise RequestCancelled(f"{action}: cancelled")
            ticket = window.acquire(cancel) if window is not None else 0
            answered = full = False
            try:
                url, client = self._pick()
                try:
                    result = call(client)
                    answered = True
                    self._answered(url)
                    return result
                except InferenceServerException as error:
                    problem = tls_failure(error)
                    if problem:
                        answered = True  # a configuration problem, not an overloaded server
                        raise TlsError(
                            f"TLS handshake with {url} failed ({problem}): the server's "
                            "certificate is not trusted; pass the CA that signed it with "
                            "--root-certificates, and a --url host the certificate names"
                        ) from None
                    if not is_retryable(error):
                        answered = True  # the server is not overloaded: it answered
                        raise RequestRejected(
                            f"{action} refused by {url}: {describe(error)}"
                        ) from None
                    if model_call and is_not_found(error) and not self._lists_model(client):
                        raise ModelNotFound(self._unknown_model_message()) from None
                    full = is_queue_full(error) or is_queue_timeout(error)
                    if full and turn_away:
                        raise FramesTurnedAway(f"{action}: {describe(error)}") from None
                    self._count(full)
                    last = f"{url}: {describe(error)}"
                    first = self._failed(url, full)
                    unreachable = unreachable_reason(error)
            finally:
                if window is not None:
                    window.release(ticket, answered=answered, queue_full=full)
            wait = next(delays)
            if time.monotonic() + wait > give_up:
                if full:
                    raise ServerBusy(
                        f"{action}: the server's queue stayed full for "
                        f"{self.retry.deadline_s:g} s ({last}); try again later or with "
                        "fewer requests in flight"
                    )
                raise ServerUnavailable(
                    f"{action}: no answer for {self.retry.deadline_s:g} s ({last})"
                    + self._closed_socket_hint(last)
                )
            if self.on_retry is not None:
                self.on_retry(RetryNotice(action, last, full, give_up, url, unreachable, first))
            if cancel is not None:
                if cancel.wait(wait):
                    raise RequestCancelled(f"{action}: cancelled")
            else:
                time.sleep(wait)

    def _closed_socket_hint(self, last: str) -> str:
        """A server that closes every connection at once may want another kind of client."""
        if "socket closed" not in last.lower():
            return ""
        if self.connection.ssl and not self.connection.certificate_chain:
            return (
                "; the server closed each connection at once: it may require a client "
                "certificate (--private-key and --certificate-chain)"
            )
        if not self.connection.ssl:
            return "; the server closed each connection at once: it may expect TLS (--ssl)"
        return ""

    def _answered(self, url: str) -> None:
        with self._lock:
            self._failing.discard(url)

    def _failed(self, url: str, queue_full: bool) -> bool:
        """Note a transient failure of `url`; whether it is the first since it answered."""
        with self._lock:
            if queue_full:  # refused, but the server is there and answering
                self._failing.discard(url)
                return False
            first = url not in self._failing
            self._failing.add(url)
            return first

    def _count(self, queue_full: bool) -> None:
        with self._lock:
            if queue_full:
                self.retried.queue_full += 1
            else:
                self.retried.unavailable += 1

    def _lists_model(self, client: grpcclient.InferenceServerClient) -> bool:
        """Whether the server's repository has the model (and the version asked for) in any
        state (True if unsure)."""
        try:
            index = client.get_model_repository_index(as_json=True)
        except InferenceServerException:
            return True
        return any(
            m.get("name") == self.model and self.version in ("", m.get("version"))
            for m in index.get("models", [])
        )

    def model_info(self) -> ModelInfo:
        """The model's metadata, read from the server's model config (cached)."""
        if self._info is None:
            try:
                config = self._with_retry(
                    f"reading model {str(self.ref)!r}",
                    lambda client: client.get_model_config(
                        self.model, model_version=self.version, as_json=True
                    ),
                    model_call=True,
                )
            except RequestRejected as error:
                if "unknown model" in str(error).lower():
                    raise ModelNotFound(self._unknown_model_message()) from None
                raise
            info = ModelInfo.from_triton_config(config)
            if self.wire.encoded and not info.encoded_frames and self.wire.automatic:
                self.wire = Wire()  # an older export: raw frames, as before
            if self.wire.encoded and not info.encoded_frames:
                raise GradcamError(
                    f"model {self.model!r} takes raw frames only (it was exported before "
                    f"encoded frames existed): use --wire raw, or export it again to send "
                    f"{self.wire.format.upper()}"
                )
            self._info = info
        return self._info

    def answers_top_k(self) -> bool:
        """Whether answers carry the top-k only (asked for, and the model has enough)."""
        return self.top_k is not None and self.model_info().top_k >= self.top_k

    def _requested_outputs(self, info: ModelInfo) -> list[str]:
        if self.answers_top_k():
            unwanted = {contract.PROBABILITIES}
        else:
            unwanted = {contract.TOP_CLASSES, contract.TOP_PROBABILITIES}
        return [name for name in info.outputs() if name not in unwanted]

    def _frame_inputs(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        if self.wire.encoded:
            return {contract.ENCODED_FRAMES: self.wire.encode(frames)}
        return {
            contract.FRAMES: np.ascontiguousarray(frames, contract.numpy_dtype(contract.FRAMES))
        }

    def _unknown_model_message(self) -> str:
        try:
            index = self._with_retry(
                "listing models", lambda client: client.get_model_repository_index(as_json=True)
            )
        except ServerUnavailable:
            index = {}
        entries = index.get("models", [])
        versions = sorted(
            int(m["version"])
            for m in entries
            if m.get("name") == self.model and str(m.get("version", "")).isdigit()
        )
        if self.version and versions:
            served = ", ".join(map(str, versions))
            return (
                f"the server has model {self.model!r} but not its version {self.version}; it "
                f"serves version{'s' if len(versions) > 1 else ''} {served} (Triton loads the "
                "versions its version policy names: gradcam-server export --version-policy all)"
            )
        names = sorted({m["name"] for m in entries if m.get("state", "READY") == "READY"})
        hosted = ", ".join(names) if names else "none"
        return f"the server has no Grad-CAM model {str(self.ref)!r}; it hosts: {hosted}"

    def list_models(self) -> list[str]:
        """Names of the ready models on the first server."""
        return sorted(self.list_versions())

    def list_versions(self) -> dict[str, list[int]]:
        """The ready models on the first server, each with its ready versions (ascending)."""
        index = self._with_retry(
            "listing models", lambda client: client.get_model_repository_index(as_json=True)
        )
        versions: dict[str, list[int]] = {}
        for m in index.get("models", []):
            if m.get("state", "READY") == "READY":
                number = str(m.get("version", ""))
                versions.setdefault(m["name"], [])
                if number.isdigit():
                    versions[m["name"]].append(int(number))
        return {name: sorted(numbers) for name, numbers in versions.items()}

    def is_ready(self) -> bool:
        """Whether every server answers and has the model ready (no retries)."""
        try:
            return all(
                client.is_model_ready(self.model, model_version=self.version)
                for client in self._clients
            )
        except InferenceServerException:
            return False

    def infer(
        self,
        frames: np.ndarray,
        targets: np.ndarray,
        cancel: threading.Event | None = None,
        queue_timeout: float | None = None,
    ) -> BatchResult:
        """Predictions and maps for frames [n, H, W, 3] uint8 and targets [n] int.

        More frames than the model's maximum batch size go as several requests. Setting
        `cancel` stops retrying (`RequestCancelled`), e.g. when the job has failed anyway.
        With `queue_timeout` (seconds), the server drops the request if it waited longer in
        its queue, and a dropped or refused request raises `FramesTurnedAway` (no retry).
        """
        info = self.model_info()
        step = info.max_batch_size
        if len(frames) > step:
            parts = [
                self.infer(frames[i : i + step], targets[i : i + step], cancel, queue_timeout)
                for i in range(0, len(frames), step)
            ]
            return BatchResult(
                probabilities=np.concatenate([p.probabilities for p in parts]),
                class_index=np.concatenate([p.class_index for p in parts]),
                maps={k: np.concatenate([p.maps[k] for p in parts]) for k in parts[0].maps},
            )
        arrays = {
            **self._frame_inputs(frames),
            contract.TARGET_CLASS: np.asarray(
                targets, contract.numpy_dtype(contract.TARGET_CLASS)
            ).reshape(-1, 1),
        }
        inputs = []
        for name, array in arrays.items():
            tensor = grpcclient.InferInput(name, list(array.shape), contract.triton_dtype(name))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(n) for n in self._requested_outputs(info)]
        response = self._with_retry(
            f"inference on {len(frames)} frame(s)",
            lambda client: client.infer(
                self.model,
                inputs,
                model_version=self.version,
                outputs=outputs,
                priority=self.priority,
                timeout=None if queue_timeout is None else max(1, round(queue_timeout * 1e6)),
                client_timeout=self.connection.request_timeout_s,
                compression_algorithm=self.connection.compression,
            ),
            model_call=True,
            cancel=cancel,
            window=self.window,
            turn_away=queue_timeout is not None,
        )
        result = BatchResult(
            probabilities=self._probabilities(response, info),
            class_index=answer_output(response, contract.CLASS_INDEX).reshape(-1),
            maps={layer.name: answer_output(response, layer.output_name) for layer in info.layers},
        )
        check_finite(result, info)
        return result

    def _probabilities(self, response: grpcclient.InferResult, info: ModelInfo) -> np.ndarray:
        """The probability vectors [n, classes]; from top-k answers, zero beyond the top-k."""
        if not self.answers_top_k():
            return answer_output(response, contract.PROBABILITIES)
        top = answer_output(response, contract.TOP_CLASSES)[:, : self.top_k]
        values = answer_output(response, contract.TOP_PROBABILITIES)[:, : self.top_k]
        if top.min(initial=0) < 0 or top.max(initial=0) >= info.num_classes:
            raise InvalidResponse(
                f"the server returned a top class out of range 0..{info.num_classes - 1}"
            )
        probabilities = np.zeros((len(top), info.num_classes), np.float32)
        np.put_along_axis(probabilities, top.astype(np.intp), values, axis=1)
        return probabilities

    def statistics(self) -> list[dict[str, Any]]:
        """The model's inference statistics on each server (counts, queue and compute time)."""
        return [
            client.get_inference_statistics(self.model, model_version=self.version, as_json=True)
            for client in self._clients
        ]

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def __enter__(self) -> GradcamServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
