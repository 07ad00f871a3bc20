"""Dashboard settings read from the environment (the launcher sets them from its options).

Servers (the page contacts no others):

- ``GRADCAM_URL``: the Triton gRPC address(es) the page offers, separated by spaces or ``;``
  (default ``localhost:8001``); ``HOST:PORT,HOST:PORT`` is one choice whose servers share the
  work;
- ``GRADCAM_METRICS_URL``: their metrics URLs in the same order, ``none`` for a server
  without; default ``http://HOST:PORT+1/metrics`` (Triton's layout: gRPC 8001, metrics 8002);
- ``GRADCAM_ALLOW_ANY_URL``: ``1`` lets visitors type any address (default: only the above);
- ``GRADCAM_TLS`` (``1``), ``GRADCAM_TLS_CA``, ``GRADCAM_TLS_KEY``, ``GRADCAM_TLS_CERT``: gRPC
  over TLS (a CA file implies TLS; key and certificate chain for mutual TLS);
- ``GRADCAM_WIRE``: how frames travel, as gradcam-video's ``--wire``: ``auto`` (default: raw
  for a server on this machine, JPEG quality 95 for a remote one, raw for a model exported
  before encoded frames), ``raw``, ``jpeg`` or ``png``.

Uploads and runs:

- ``GRADCAM_MAX_UPLOAD_MB``: the largest accepted upload in MB (default 200, fractions work);
- ``GRADCAM_MAX_SECONDS``, ``GRADCAM_MAX_FRAMES``, ``GRADCAM_MAX_RESOLUTION``: the longest
  decoded video, the most frames and the largest frame (``WIDTHxHEIGHT``, either
  orientation) a run accepts (defaults 300, 9000, 1920x1080); live runs stop after the
  longest duration and refuse larger frames;
- ``GRADCAM_MAX_FPS``: the highest frame rate a live source may declare (default 60);
- ``GRADCAM_DASHBOARD_DIR``: session folders and sample clips (default a temp folder);
- ``GRADCAM_SESSION_MAX_AGE_H``: idle hours before a session's folder is removed (default 6);
- ``GRADCAM_SAMPLE_SECONDS``: length of the sample clips (default 4);
- ``GRADCAM_RETRY_S``: how long a run waits for a server that stopped answering (default 20).

Live sources (the page's Live mode; without any, the mode says how to add them):

- ``GRADCAM_LIVE_SOURCES``: the streams and cameras visitors may pick, ``NAME=URL`` items
  separated by spaces or ``;`` (``door=rtsp://cam1/stream lab=/dev/video0``; a bare URL is
  named by itself). Visitors see the names only, never the addresses;
- ``GRADCAM_ALLOW_ANY_SOURCE``: ``1`` lets visitors type any stream address
  (``ANY_SOURCE_SCHEMES`` only: no files, no cameras), opened through a `SourceGuard`: hosts
  that resolve to loopback, private, link-local, multicast, unspecified or reserved
  addresses are refused;
- ``GRADCAM_ALLOW_SOURCE_NETWORKS``: networks (CIDR, separated by spaces, ``,`` or ``;``) visitors'
  addresses may reach although they are not public (e.g. ``10.1.0.0/16`` for the cameras
  of a site);
- ``GRADCAM_MAX_LIVE_JOBS``: live streams this dashboard keeps going at once, over all
  visitors (default 2);
- ``GRADCAM_LIVE_STREAMS_PER_SESSION``: streams one visitor may run side by side (default 1),
  sharing one server connection;
- ``GRADCAM_LIVE_RECORDING_MB``: a live run stops once its recording and predictions hold
  this many MB (default 200; the files are kept).

The visitor's own camera (the page's Camera mode, over WebRTC; also within the limits above):

- ``GRADCAM_CAMERA``: ``0`` turns the Camera mode off (default on);
- ``GRADCAM_MAX_CAMERAS``: cameras this dashboard explains at once, over all visitors
  (default 2);
- ``GRADCAM_CAMERA_ICE_SERVERS``: the STUN/TURN servers of both ends, as the JSON list of
  WebRTC's ``iceServers`` (default none: browser and dashboard must reach each other directly);
- ``GRADCAM_CAMERA_ADDRESSES``: the addresses of this machine the dashboard offers browsers for
  the camera's media (separated by spaces, ``,`` or ``;``; default all but loopback).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gradcam_client.live.source import is_live_address
from gradcam_client.live.source_guard import Network, SourceGuard, parse_networks
from gradcam_client.remote.server import Connection
from gradcam_client.remote.wire import WIRE_CHOICES
from gradcam_dashboard.webrtc_network import IceServer, parse_addresses, parse_ice_servers

ENV_URL = "GRADCAM_URL"
ENV_METRICS_URL = "GRADCAM_METRICS_URL"
ENV_ALLOW_ANY_URL = "GRADCAM_ALLOW_ANY_URL"
ENV_TLS = "GRADCAM_TLS"
ENV_TLS_CA = "GRADCAM_TLS_CA"
ENV_TLS_KEY = "GRADCAM_TLS_KEY"
ENV_TLS_CERT = "GRADCAM_TLS_CERT"
ENV_WIRE = "GRADCAM_WIRE"
ENV_MAX_UPLOAD_MB = "GRADCAM_MAX_UPLOAD_MB"
ENV_MAX_SECONDS = "GRADCAM_MAX_SECONDS"
ENV_MAX_FRAMES = "GRADCAM_MAX_FRAMES"
ENV_MAX_RESOLUTION = "GRADCAM_MAX_RESOLUTION"
ENV_DIR = "GRADCAM_DASHBOARD_DIR"
ENV_MAX_AGE_H = "GRADCAM_SESSION_MAX_AGE_H"
ENV_SAMPLE_SECONDS = "GRADCAM_SAMPLE_SECONDS"
ENV_RETRY_S = "GRADCAM_RETRY_S"
ENV_LIVE_SOURCES = "GRADCAM_LIVE_SOURCES"
ENV_ALLOW_ANY_SOURCE = "GRADCAM_ALLOW_ANY_SOURCE"
ENV_MAX_LIVE_JOBS = "GRADCAM_MAX_LIVE_JOBS"
ENV_LIVE_STREAMS_PER_SESSION = "GRADCAM_LIVE_STREAMS_PER_SESSION"
ENV_ALLOW_SOURCE_NETWORKS = "GRADCAM_ALLOW_SOURCE_NETWORKS"
ENV_MAX_FPS = "GRADCAM_MAX_FPS"
ENV_LIVE_RECORDING_MB = "GRADCAM_LIVE_RECORDING_MB"
ENV_CAMERA = "GRADCAM_CAMERA"
ENV_MAX_CAMERAS = "GRADCAM_MAX_CAMERAS"
ENV_CAMERA_ICE_SERVERS = "GRADCAM_CAMERA_ICE_SERVERS"
ENV_CAMERA_ADDRESSES = "GRADCAM_CAMERA_ADDRESSES"

DEFAULT_URL = "localhost:8001"
DEFAULT_WIRE = "auto"
METRICS_PORT_OFFSET = 1  # Triton's defaults: gRPC 8001, metrics 8002
DEFAULT_GRPC_PORT = 8001
NO_METRICS = "none"
DEFAULT_MAX_UPLOAD_MB = 200.0
DEFAULT_MAX_SECONDS = 300.0
DEFAULT_MAX_FRAMES = 9000
DEFAULT_MAX_RESOLUTION = (1920, 1080)
DEFAULT_MAX_AGE_H = 6.0
DEFAULT_SAMPLE_SECONDS = 4.0
DEFAULT_RETRY_S = 20.0
DEFAULT_MAX_LIVE_JOBS = 2
DEFAULT_LIVE_STREAMS_PER_SESSION = 1
DEFAULT_MAX_FPS = 60.0
DEFAULT_LIVE_RECORDING_MB = 200.0
DEFAULT_MAX_CAMERAS = 2
ANY_SOURCE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https")
"""What a visitor may type when the operator allows any source: streams the page pulls from a
server (never files, cameras, or addresses that make the dashboard listen, like udp://)."""
TRUE_WORDS = {"1", "true", "yes", "on"}
CAMERA_NAME = re.compile(r"/dev/video\d+")
"""An operator's camera, accepted by name although it may be plugged in only later."""


def env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Whether an on/off environment setting is on (1, true, yes or on; `default` unset)."""
    text = env.get(name, "").strip().lower()
    return text in TRUE_WORDS if text else default


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


def metrics_url_for(grpc_url: str) -> str:
    """Triton's metrics endpoint for a gRPC address (the first, if several): same host, the
    port after the gRPC port (8001 -> 8002, Triton's defaults)."""
    host, port = split_host_port(grpc_url.split(",")[0])
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{(port or DEFAULT_GRPC_PORT) + METRICS_PORT_OFFSET}/metrics"


def split_list(text: str) -> list[str]:
    """Items of a list separated by spaces or semicolons (``a:1, b:1`` stays one item)."""
    text = re.sub(r"\s*,\s*", ",", text.strip())
    return [item for item in re.split(r"[\s;]+", text) if item]


@dataclass(frozen=True)
class ServerChoice:
    """A server (or servers sharing the work) the page may contact, and its metrics URL."""

    url: str
    metrics_url: str | None  # None: this server has no metrics endpoint


def server_choices(urls: list[str], metrics: list[str]) -> tuple[ServerChoice, ...]:
    """Pair each address with its metrics URL (given in the same order, else derived)."""
    if len(metrics) > len(urls):
        raise ValueError(f"{len(metrics)} metrics URLs for {len(urls)} servers")
    choices = []
    for i, url in enumerate(urls):
        given = metrics[i] if i < len(metrics) else ""
        if given.lower() == NO_METRICS:
            choices.append(ServerChoice(url, None))
        else:
            choices.append(ServerChoice(url, given or metrics_url_for(url)))
    return tuple(choices)


@dataclass(frozen=True)
class LiveSourceChoice:
    """A live source the page may open: the name visitors see, and its address."""

    name: str
    url: str
    visitor: bool = False  # typed by a visitor: opened through the source guard

    def redact(self, text: str) -> str:
        """`text` with the address (which may hold a password) replaced by the name."""
        return text.replace(self.url, self.name)


def parse_live_source(text: str) -> LiveSourceChoice:
    """``NAME=URL`` (or a bare URL, named by itself) as a live source choice."""
    text = text.strip()
    name, equals, url = text.partition("=")
    if not equals or "://" in name or name.startswith("/"):  # a bare URL (may hold "=")
        name, url = text, text
    name, url = name.strip(), url.strip()
    if not name or not url:
        raise ValueError(f"a live source is NAME=URL, e.g. door=rtsp://cam1/stream; got {text!r}")
    if not (is_live_address(url) or CAMERA_NAME.fullmatch(url)):
        raise ValueError(f"live source {name!r}: {url!r} is not a stream address or a camera")
    return LiveSourceChoice(name, url)


def live_source_choices(items: list[str]) -> tuple[LiveSourceChoice, ...]:
    """The operator's live sources, in order; names must differ."""
    choices = tuple(parse_live_source(item) for item in items)
    names = [choice.name for choice in choices]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two live sources are named {name!r}")
    return choices


def visitor_source_problem(url: str) -> str | None:
    """Why a typed address cannot be opened for a visitor (None: it can)."""
    scheme = urlsplit(url.strip()).scheme.lower()
    if "://" not in url or scheme not in ANY_SOURCE_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in ANY_SOURCE_SCHEMES)
        return f"give a stream address starting with one of {allowed}"
    return None


@dataclass(frozen=True)
class Limits:
    """What a run accepts: decoded duration, frame count, frame size and frame rate."""

    max_seconds: float = DEFAULT_MAX_SECONDS
    max_frames: int = DEFAULT_MAX_FRAMES
    max_resolution: tuple[int, int] = DEFAULT_MAX_RESOLUTION  # (long side, short side)
    max_fps: float = DEFAULT_MAX_FPS  # live sources only (a file's frames are counted)

    def describe(self) -> str:
        width, height = self.max_resolution
        return f"up to {self.max_seconds:g} s, {self.max_frames} frames and {width}x{height}"


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080), the long side first."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or 0 in (int(match.group(1)), int(match.group(2))):
        raise ValueError(f"a resolution is WIDTHxHEIGHT, e.g. 1920x1080; got {text!r}")
    sides = sorted((int(match.group(1)), int(match.group(2))), reverse=True)
    return sides[0], sides[1]


@dataclass(frozen=True)
class Tls:
    """gRPC over TLS: the CA that signed the server's certificate, and the client's own key
    and certificate chain for mutual TLS (PEM files)."""

    ca_file: Path | None = None
    key_file: Path | None = None
    cert_file: Path | None = None

    def connection(self) -> Connection:
        """The client's connection settings (tritonclient reads the files; they are checked
        to be readable now)."""

        def readable(path: Path | None) -> str | None:
            if path is None:
                return None
            try:
                with path.open("rb"):
                    return str(path.resolve())
            except OSError as error:
                raise ValueError(f"cannot read {path}: {error.strerror}") from None

        return Connection(
            ssl=True,
            root_certificates=readable(self.ca_file),
            private_key=readable(self.key_file),
            certificate_chain=readable(self.cert_file),
        )


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


def _path(env: Mapping[str, str], name: str) -> Path | None:
    text = env.get(name, "").strip()
    return Path(text) if text else None


def _networks(env: Mapping[str, str]) -> tuple[Network, ...]:
    try:
        items = re.split(r"[\s;,]+", env.get(ENV_ALLOW_SOURCE_NETWORKS, "").strip())
        return parse_networks(item for item in items if item)
    except ValueError as error:
        raise ValueError(f"{ENV_ALLOW_SOURCE_NETWORKS}: {error}") from None


def _ice_servers(env: Mapping[str, str]) -> tuple[IceServer, ...]:
    try:
        return parse_ice_servers(env.get(ENV_CAMERA_ICE_SERVERS, ""))
    except ValueError as error:
        raise ValueError(f"{ENV_CAMERA_ICE_SERVERS}: {error}") from None


def _addresses(env: Mapping[str, str]) -> tuple[str, ...]:
    try:
        return parse_addresses(env.get(ENV_CAMERA_ADDRESSES, ""))
    except ValueError as error:
        raise ValueError(f"{ENV_CAMERA_ADDRESSES}: {error}") from None


def _wire(env: Mapping[str, str]) -> str:
    text = env.get(ENV_WIRE, "").strip().lower() or DEFAULT_WIRE
    if text not in WIRE_CHOICES:
        raise ValueError(f"{ENV_WIRE} must be one of {', '.join(WIRE_CHOICES)}; got {text!r}")
    return text


def _tls(env: Mapping[str, str]) -> Tls | None:
    files = Tls(_path(env, ENV_TLS_CA), _path(env, ENV_TLS_KEY), _path(env, ENV_TLS_CERT))
    if (files.key_file is None) != (files.cert_file is None):
        raise ValueError(f"mutual TLS needs both {ENV_TLS_KEY} and {ENV_TLS_CERT}")
    wanted = env_flag(env, ENV_TLS)
    if wanted or files != Tls():
        return files
    return None


@dataclass(frozen=True)
class DashboardConfig:
    """The servers the page may contact, how, and what uploads and runs it accepts."""

    servers: tuple[ServerChoice, ...] = (ServerChoice(DEFAULT_URL, metrics_url_for(DEFAULT_URL)),)
    allow_any_url: bool = False
    tls: Tls | None = None
    wire: str = DEFAULT_WIRE  # as gradcam-video's --wire
    limits: Limits = field(default_factory=Limits)
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    root: Path = Path(tempfile.gettempdir()) / "gradcam-dashboard"
    max_age_hours: float = DEFAULT_MAX_AGE_H
    sample_seconds: float = DEFAULT_SAMPLE_SECONDS
    retry_s: float = DEFAULT_RETRY_S
    live_sources: tuple[LiveSourceChoice, ...] = ()
    allow_any_source: bool = False
    allowed_source_networks: tuple[Network, ...] = ()
    max_live_jobs: int = DEFAULT_MAX_LIVE_JOBS  # streams, over all sessions
    live_streams_per_session: int = DEFAULT_LIVE_STREAMS_PER_SESSION
    live_recording_mb: float = DEFAULT_LIVE_RECORDING_MB
    camera: bool = True
    max_cameras: int = DEFAULT_MAX_CAMERAS
    camera_ice_servers: tuple[IceServer, ...] = ()
    camera_addresses: tuple[str, ...] = ()  # empty: all of this machine's but loopback

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardConfig:
        """The configuration from environment variables (see the module docstring)."""
        env = os.environ if env is None else env
        root = env.get(ENV_DIR, "").strip()
        urls = split_list(env.get(ENV_URL, "")) or [DEFAULT_URL]
        resolution = env.get(ENV_MAX_RESOLUTION, "").strip()
        limits = Limits(
            max_seconds=_number(env, ENV_MAX_SECONDS, DEFAULT_MAX_SECONDS),
            max_frames=int(_number(env, ENV_MAX_FRAMES, DEFAULT_MAX_FRAMES)),
            max_resolution=parse_resolution(resolution) if resolution else DEFAULT_MAX_RESOLUTION,
            max_fps=_number(env, ENV_MAX_FPS, DEFAULT_MAX_FPS),
        )
        return cls(
            servers=server_choices(urls, split_list(env.get(ENV_METRICS_URL, ""))),
            allow_any_url=env_flag(env, ENV_ALLOW_ANY_URL),
            tls=_tls(env),
            wire=_wire(env),
            limits=limits,
            max_upload_mb=_number(env, ENV_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_MB),
            root=Path(root) if root else cls.root,
            max_age_hours=_number(env, ENV_MAX_AGE_H, DEFAULT_MAX_AGE_H),
            sample_seconds=_number(env, ENV_SAMPLE_SECONDS, DEFAULT_SAMPLE_SECONDS),
            retry_s=_number(env, ENV_RETRY_S, DEFAULT_RETRY_S),
            live_sources=live_source_choices(split_list(env.get(ENV_LIVE_SOURCES, ""))),
            allow_any_source=env_flag(env, ENV_ALLOW_ANY_SOURCE),
            allowed_source_networks=_networks(env),
            max_live_jobs=int(_number(env, ENV_MAX_LIVE_JOBS, DEFAULT_MAX_LIVE_JOBS)),
            live_streams_per_session=int(
                _number(env, ENV_LIVE_STREAMS_PER_SESSION, DEFAULT_LIVE_STREAMS_PER_SESSION)
            ),
            live_recording_mb=_number(env, ENV_LIVE_RECORDING_MB, DEFAULT_LIVE_RECORDING_MB),
            camera=env_flag(env, ENV_CAMERA, default=True),
            max_cameras=int(_number(env, ENV_MAX_CAMERAS, DEFAULT_MAX_CAMERAS)),
            camera_ice_servers=_ice_servers(env),
            camera_addresses=_addresses(env),
        )

    @property
    def url(self) -> str:
        """The first server: the one a new visitor starts with."""
        return self.servers[0].url

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def choice(self, url: str | None) -> ServerChoice | None:
        """The server choice for an address a visitor asked for; None if it is not allowed.

        The operator's servers are always allowed; any other address only when the operator
        allows free-form addresses (its metrics URL is then derived from it).
        """
        url = (url or "").strip()
        for server in self.servers:
            if server.url == url:
                return server
        if self.allow_any_url and url:
            return ServerChoice(url, metrics_url_for(url))
        return None

    @property
    def live_enabled(self) -> bool:
        """Whether the Live mode can open anything."""
        return bool(self.live_sources) or self.allow_any_source

    def live_choice(self, name_or_url: str | None) -> LiveSourceChoice | None:
        """The live source a visitor asked for (an operator's name, or an address if any
        is allowed); None if it is not allowed."""
        text = (name_or_url or "").strip()
        for source in self.live_sources:
            if source.name == text:
                return source
        if self.allow_any_source and text and visitor_source_problem(text) is None:
            return LiveSourceChoice(text, text, visitor=True)
        return None

    def source_guard(self) -> SourceGuard:
        """How visitors' addresses are checked: public hosts and the operator's networks."""
        return SourceGuard(self.allowed_source_networks)

    def connection(self) -> Connection | None:
        """The gRPC connection settings (None: plain gRPC)."""
        return self.tls.connection() if self.tls is not None else None
