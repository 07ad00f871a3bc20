"""What a Triton server hosts, read through the client library (`GradcamServer`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gradcam_client.errors import GradcamError
from gradcam_client.remote import contract
from gradcam_client.remote.contract import ModelInfo
from gradcam_client.remote.server import Connection, GradcamServer, RetryNotice, RetryPolicy
from gradcam_client.remote.wire import choose_wire

PROBE_RETRY = RetryPolicy(deadline_s=1.5, first_delay_s=0.1, max_delay_s=0.5)
"""Status checks give up quickly: a page should say "down" within seconds."""

JOB_RETRY_S = 20.0
"""A running job rides out a short restart of the server, but a person is waiting."""

INTERACTIVE_PRIORITY = 1
"""Dashboard requests go before batch jobs (priority 2, the server's default)."""


@dataclass(frozen=True)
class ModelSummary:
    """A model the server hosts: its Grad-CAM metadata, or why it has none."""

    name: str
    info: ModelInfo | None = None  # of its newest loaded version
    ready: bool = False
    problem: str = ""
    versions: tuple[int, ...] = ()  # the loaded versions, ascending

    @property
    def usable(self) -> bool:
        return self.info is not None and self.ready


@dataclass(frozen=True)
class ServerStatus:
    """Whether the server answers, and the models it hosts."""

    url: str
    live: bool
    models: tuple[ModelSummary, ...] = field(default_factory=tuple)
    error: str = ""

    @property
    def ready(self) -> bool:
        """Live, and at least one Grad-CAM model ready to use."""
        return self.live and any(model.usable for model in self.models)

    @property
    def usable_models(self) -> list[ModelSummary]:
        return [model for model in self.models if model.usable]


def split_urls(text: str) -> list[str]:
    """Server addresses from ``"HOST:PORT"`` or ``"HOST:PORT,HOST:PORT"`` (requests alternate)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _summary(
    url: str,
    name: str,
    versions: list[int],
    retry: RetryPolicy,
    connection: Connection | None,
) -> ModelSummary:
    server = GradcamServer(split_urls(url), name, connection, retry=retry)
    try:
        try:
            info = server.model_info()
        except ValueError as error:  # a model without Grad-CAM parameters
            return ModelSummary(name, problem=str(error), versions=tuple(versions))
        except GradcamError as error:
            return ModelSummary(name, problem=str(error), versions=tuple(versions))
        return ModelSummary(name, info, server.is_ready(), versions=tuple(versions))
    finally:
        server.close()


def version_info(
    url: str, ref: str, connection: Connection | None = None, retry: RetryPolicy = PROBE_RETRY
) -> ModelInfo:
    """The Grad-CAM metadata of model `ref` (NAME or NAME:VERSION) on the (first) server.

    Raises `GradcamError` with one line, at once, for a name or a version the server does not
    serve (as ``gradcam-video --model`` says it) and for a model without Grad-CAM metadata.
    """
    server = GradcamServer(split_urls(url), ref, connection, retry=retry)
    try:
        return server.model_info()
    except ValueError as error:
        raise GradcamError(f"{ref} is not a Grad-CAM model ({error})") from None
    finally:
        server.close()


def probe_server(
    url: str, connection: Connection | None = None, retry: RetryPolicy = PROBE_RETRY
) -> ServerStatus:
    """The server's status and models; never raises for an unreachable or odd server."""
    url = url.strip()
    if not split_urls(url):
        return ServerStatus(url, live=False, error="no server address given")
    try:
        server = GradcamServer(split_urls(url), "", connection, retry=retry)
    except Exception as error:  # e.g. an address gRPC cannot parse
        return ServerStatus(url, live=False, error=f"bad address {url!r}: {error}")
    try:
        served = server.list_versions()
    except GradcamError as error:
        return ServerStatus(url, live=False, error=str(error))
    except Exception as error:
        return ServerStatus(url, live=False, error=f"{type(error).__name__}: {error}")
    finally:
        server.close()
    models = tuple(
        _summary(url, name, versions, retry, connection)
        for name, versions in sorted(served.items())
    )
    return ServerStatus(url, live=True, models=models)


def job_server(
    url: str,
    model: str,
    retry_s: float = JOB_RETRY_S,
    connection: Connection | None = None,
    on_retry: Callable[[RetryNotice], None] | None = None,
    wire: str = "auto",
) -> GradcamServer:
    """A client for one run: interactive priority, retries over a short restart,
    `on_retry` told of every failed request (the page says the server is not answering), and
    frames sent as `wire` says (as gradcam-video's --wire: auto is raw for a server on this
    machine, JPEG for a remote one)."""
    urls = split_urls(url)
    return GradcamServer(
        urls,
        model,
        connection,
        retry=RetryPolicy(deadline_s=retry_s),
        priority=INTERACTIVE_PRIORITY,
        wire=choose_wire(wire, urls),
        on_retry=on_retry,
    )


def method_name(method: str) -> str:
    """Display name of a method id (``gradcampp`` -> ``Grad-CAM++``)."""
    return contract.METHODS.get(method, method)


def version_text(model: ModelSummary) -> str:
    """``version 1`` or ``versions 1, 2`` (empty when the server names no version)."""
    if not model.versions:
        return ""
    plural = "s" if len(model.versions) > 1 else ""
    return f"version{plural} {', '.join(map(str, model.versions))}"


def model_rows(status: ServerStatus) -> list[dict[str, str]]:
    """One row per model (each once, whatever its versions): name, status, versions, input
    size, classes, layers, methods."""
    rows = []
    for model in status.models:
        info = model.info
        if info is None:
            rows.append({"model": model.name, "status": "not Grad-CAM", "layers": model.problem})
            continue
        rows.append(
            {
                "model": model.name,
                "status": "ready" if model.ready else "not ready",
                "versions": version_text(model),
                "input": f"{info.input_width}x{info.input_height}",
                "classes": str(info.num_classes),
                "layers": ", ".join(
                    f"{lay.name} ({lay.height}x{lay.width})" for lay in info.layers
                ),
                "methods": ", ".join(method_name(m) for m in info.methods),
            }
        )
    return rows
