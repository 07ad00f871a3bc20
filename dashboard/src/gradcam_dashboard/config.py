"""Dashboard settings read from the environment (the launcher sets them from its options).

- ``GRADCAM_URL``: the Triton gRPC address (default ``localhost:8001``);
- ``GRADCAM_METRICS_URL``: Triton's metrics (default ``http://HOST:8002/metrics``);
- ``GRADCAM_MAX_UPLOAD_MB``: the largest accepted upload in MB (default 200, fractions work);
- ``GRADCAM_DASHBOARD_DIR``: session folders and sample clips (default a temp folder);
- ``GRADCAM_SESSION_MAX_AGE_H``: idle hours before a session's folder is removed (default 6);
- ``GRADCAM_SAMPLE_SECONDS``: length of the sample clips (default 4);
- ``GRADCAM_RETRY_S``: how long a run waits for a server that stopped answering (default 20).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_URL = "GRADCAM_URL"
ENV_METRICS_URL = "GRADCAM_METRICS_URL"
ENV_MAX_UPLOAD_MB = "GRADCAM_MAX_UPLOAD_MB"
ENV_DIR = "GRADCAM_DASHBOARD_DIR"
ENV_MAX_AGE_H = "GRADCAM_SESSION_MAX_AGE_H"
ENV_SAMPLE_SECONDS = "GRADCAM_SAMPLE_SECONDS"
ENV_RETRY_S = "GRADCAM_RETRY_S"

DEFAULT_URL = "localhost:8001"
DEFAULT_METRICS_PORT = 8002
DEFAULT_MAX_UPLOAD_MB = 200.0
DEFAULT_MAX_AGE_H = 6.0
DEFAULT_SAMPLE_SECONDS = 4.0
DEFAULT_RETRY_S = 20.0


def split_host_port(url: str) -> tuple[str, int | None]:
    """Host and port of ``HOST:PORT``, ``grpc://HOST:PORT``, ``[::1]:PORT`` or ``HOST``."""
    text = url.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a bare host, or a bare IPv6 address
        host, port = text, ""
    return host or "localhost", int(port) if port.isdigit() else None


def metrics_url_for(grpc_url: str, port: int = DEFAULT_METRICS_PORT) -> str:
    """Triton's default metrics endpoint on the host of a gRPC address (the first, if several)."""
    host, _ = split_host_port(grpc_url.split(",")[0])
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number; got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive; got {text!r}")
    return value


@dataclass(frozen=True)
class DashboardConfig:
    """Where the server is, how large uploads may be, where session files go."""

    url: str = DEFAULT_URL
    metrics_url: str | None = None  # None: derived from the host of `url`
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    root: Path = Path(tempfile.gettempdir()) / "gradcam-dashboard"
    max_age_hours: float = DEFAULT_MAX_AGE_H
    sample_seconds: float = DEFAULT_SAMPLE_SECONDS
    retry_s: float = DEFAULT_RETRY_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardConfig:
        """The configuration from environment variables (see the module docstring)."""
        env = os.environ if env is None else env
        root = env.get(ENV_DIR, "").strip()
        return cls(
            url=env.get(ENV_URL, "").strip() or DEFAULT_URL,
            metrics_url=env.get(ENV_METRICS_URL, "").strip() or None,
            max_upload_mb=_number(env, ENV_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_MB),
            root=Path(root) if root else cls.root,
            max_age_hours=_number(env, ENV_MAX_AGE_H, DEFAULT_MAX_AGE_H),
            sample_seconds=_number(env, ENV_SAMPLE_SECONDS, DEFAULT_SAMPLE_SECONDS),
            retry_s=_number(env, ENV_RETRY_S, DEFAULT_RETRY_S),
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def metrics_for(self, url: str) -> str:
        """The metrics URL to use with the gRPC address `url`.

        The configured metrics URL belongs to the configured server; another address gets
        Triton's default metrics port on its host.
        """
        if self.metrics_url and url.strip() == self.url:
            return self.metrics_url
        return metrics_url_for(url)
