"""Opening addresses that strangers typed: only public hosts, only network protocols.

A dashboard that lets its visitors type a stream address hands that address to FFmpeg, which
would otherwise connect wherever it points, follow redirects and playlists anywhere, and read
local files (``file:``, ``concat:``, ``subfile:``, ``data:``). `SourceGuard` prevents that:

- the host is resolved and refused if ANY of its addresses is loopback, private, link-local,
  multicast, unspecified or reserved, unless it lies in a network the operator allows;
- FFmpeg gets a protocol whitelist per scheme (it also binds the playlists and segments an
  HLS stream opens), so nothing local is reachable;
- HTTP(S) goes through `GuardProxy`, a proxy on 127.0.0.1 that checks every connection FFmpeg
  makes - the first, each redirect, each playlist and segment - and connects to the very
  address it checked (a name that resolves elsewhere a second later changes nothing). The
  request itself (Host header, TLS server name) is FFmpeg's, untouched;
- RTSP and RTMP cannot go through a proxy: the address is checked and FFmpeg is handed the
  checked IP in place of the name (so a second resolution cannot differ); RTSP is read over
  its TCP connection only. A redirect answered by an RTSP or RTMP server is followed by
  FFmpeg itself, unchecked: operators who cannot accept that leave these schemes to their
  own named sources.

Refusals raise `SourceRefused` with the detail, meant for the operator's log, not the visitor.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from gradcam_client.errors import SourceError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

WEB = "http,https,tls,tcp,httpproxy,crypto"
"""What an HTTP(S) stream may open: the proxy, TLS through it, HLS segments (also AES-128
encrypted ones, whose keys and segments come over the same protocols)."""

PROTOCOLS = {
    "http": WEB,
    "https": WEB,
    "rtsp": "rtsp,tcp",
    "rtsps": "rtsp,rtsps,tls,tcp",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmp,rtmps,tls,tcp",
}
"""FFmpeg's protocol whitelist for each scheme a visitor may use."""


DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}

HEAD_LIMIT = 64 * 1024
"""Largest request head the proxy reads."""

PROXY_TIMEOUT_S = 30.0
"""The proxy's time-out for a request head and for connecting."""


class SourceRefused(SourceError):
    """A visitor's address is not allowed (the message says why: for the operator)."""


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "192.168.1.20"]`` as networks; ValueError naming a bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a network (CIDR, e.g. 10.1.0.0/16): {item!r}") from None
    return tuple(networks)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (raises OSError when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _special(address: Address) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _special(address.ipv4_mapped)
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Prepared:
    """How FFmpeg opens a checked address: the URL and options to hand it."""

    url: str
    options: dict[str, str]
    proxy: GuardProxy | None = None

    def close(self) -> None:
        """Stop the proxy (if any) once FFmpeg is done with the source."""
        if self.proxy is not None:
            self.proxy.close()


@dataclass(frozen=True)
class SourceGuard:
    """The rules for a visitor's address (see the module docstring).

    allowed: networks the operator lets visitors reach although they are not public.
    resolver: host and port to addresses (the system's, unless a test needs another).
    """

    allowed: tuple[Network, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    def check(self, host: str, port: int) -> list[Address]:
        """The host's addresses if every one may be reached; `SourceRefused` otherwise."""
        try:
            texts = self.resolver(host.strip("[]"), port)
        except (OSError, UnicodeError) as error:
            raise SourceRefused(f"cannot resolve {host} ({error})") from None
        if not texts:
            raise SourceRefused(f"{host} resolves to no address")
        addresses = [ipaddress.ip_address(text.split("%")[0]) for text in texts]
        for address in addresses:
            kind = _special(address)
            if kind is not None and not any(address in net for net in self.allowed):
                raise SourceRefused(
                    f"{host} resolves to {address}, a {kind} address no visitor may reach"
                )
        return addresses

    def prepare(self, address: str) -> Prepared:
        """Check `address` and say how FFmpeg must open it; `SourceRefused` if it may not."""
        parts = urlsplit(address.strip())
        scheme = parts.scheme.lower()
        if scheme not in PROTOCOLS or not parts.hostname:
            raise SourceRefused(f"not an address a visitor may open: {address}")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise SourceRefused(f"not a port number in {address}") from None
        checked = self.check(parts.hostname, port)
        options = {"protocol_whitelist": PROTOCOLS[scheme]}
        if scheme in ("http", "https"):
            if os.environ.get("no_proxy", "").strip():
                raise SourceRefused(
                    "FFmpeg would connect to the hosts in the no_proxy environment variable "
                    "directly, past the address check: unset it for the dashboard"
                )
            proxy = GuardProxy(self)
            options.update(http_proxy=proxy.url, http_persistent="0", multiple_requests="0")
            return Prepared(address, options, proxy)
        if scheme.startswith("rtsp"):
            options["rtsp_transport"] = "tcp"
        return Prepared(_with_host(parts, checked[0]), options)


def _with_host(parts, address: Address) -> str:
    """The URL with its host replaced by `address` (user, port, path and query kept)."""
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username is not None:
        user = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{user}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class GuardProxy:
    """An HTTP proxy on 127.0.0.1 that connects only to addresses its guard allows.

    FFmpeg speaks to it as to any proxy: ``CONNECT host:port`` for HTTPS, an absolute URL
    (``GET http://host/path``) for HTTP. Refused destinations get ``403`` and a log line.
    """

    def __init__(self, guard: SourceGuard) -> None:
        self.guard = guard
        self.refused: list[str] = []  # why destinations were refused, newest last
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, name="source-guard", daemon=True).start()

    def close(self) -> None:
        """Stop accepting and cut every connection still open."""
        self._closed.set()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._server.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            head, rest = _read_head(client)
            line, _, headers = head.partition(b"\r\n")
            method, target, version = line.decode("latin-1").split(" ", 2)
            if method.upper() == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = self._connect(host, int(port))
                client.sendall(f"{version} 200 Connection established\r\n\r\n".encode())
            else:
                parts = urlsplit(target)
                if parts.scheme.lower() != "http" or not parts.hostname:
                    raise SourceRefused(f"not a proxy request: {line[:200]!r}")
                upstream = self._connect(parts.hostname, parts.port or 80)
                path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
                request = f"{method} {path} {version}\r\n".encode("latin-1")
                upstream.sendall(request + headers + b"\r\n\r\n" + rest)
        except SourceRefused as refusal:
            self.refused.append(refusal.problem)
            log.warning("visitor's live source: refused %s", refusal.problem)
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            self._drop(client)
            return
        except (OSError, ValueError):
            self._drop(client)
            if upstream is not None:
                upstream.close()
            return
        self._track(upstream)
        answers = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        answers.start()
        _pipe(client, upstream)
        answers.join()
        with self._lock:
            self._sockets -= {client, upstream}
        client.close()
        upstream.close()

    def _connect(self, host: str, port: int) -> socket.socket:
        """A connection to an address of `host` the guard allows (it checks them all)."""
        last: OSError | None = None
        for address in self.guard.check(host, port):
            try:
                return socket.create_connection((str(address), port), timeout=PROXY_TIMEOUT_S)
            except OSError as error:
                last = error
        raise last or OSError(f"cannot connect to {host}")


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """The request head (without its blank line) and whatever came after it."""
    client.settimeout(PROXY_TIMEOUT_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) > HEAD_LIMIT:
            raise ValueError("no complete request head")
        data += chunk
    client.settimeout(None)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from `source` to `target` until either side closes."""
    source.settimeout(None)
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
