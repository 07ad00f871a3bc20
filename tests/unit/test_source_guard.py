"""Addresses strangers type: only public hosts (or the operator's networks), only network
protocols, every connection checked - the first, redirects, playlists and segments (real
FFmpeg, real HTTP(S) servers on 127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from tls_certs import write_tls_files
from triton_server import free_port

from gradcam_client.errors import SourceError
from gradcam_client.live.source import LiveSource, open_source
from gradcam_client.live.source_guard import (
    PROTOCOLS,
    SourceGuard,
    SourceRefused,
    parse_networks,
)
from gradcam_client.media.samples import pan_zoom_frames, write_frames

FRAMES = 20


def resolving(table: dict[str, list[str]]):
    """A resolver answering from `table` (names here never reach real DNS)."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.20", "private"),
        ("fd00::5", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services live here
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # an IPv4 address in IPv6 clothing
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(address, kind):
    guard = SourceGuard(resolver=resolving({"cam.example": [address]}))
    with pytest.raises(SourceRefused, match=f"resolves to .*, a {kind} address"):
        guard.prepare("rtsp://cam.example/stream")


def test_one_non_public_address_among_public_ones_is_enough_to_refuse():
    guard = SourceGuard(resolver=resolving({"cam.example": ["93.184.216.34", "10.0.0.7"]}))
    with pytest.raises(SourceRefused, match=re.escape("10.0.0.7, a private address")):
        guard.prepare("http://cam.example/live.m3u8")


def test_an_unknown_host_and_other_schemes_are_refused():
    guard = SourceGuard(resolver=resolving({}))
    with pytest.raises(SourceRefused, match=re.escape("cannot resolve nowhere.example")):
        guard.prepare("https://nowhere.example/live.m3u8")
    for address in ("file:///etc/passwd", "udp://8.8.8.8:5000", "concat:a.ts|b.ts", "/dev/video0"):
        with pytest.raises(SourceRefused, match="not an address a visitor may open"):
            guard.prepare(address)


def test_the_operators_networks_are_allowed():
    guard = SourceGuard(parse_networks(["10.20.0.0/16"]), resolving({"cam.lan": ["10.20.3.4"]}))
    prepared = guard.prepare("rtsp://user:pw@cam.lan:8554/stream?x=1")
    # FFmpeg gets the address that was checked, never the name to resolve again
    assert prepared.url == "rtsp://user:pw@10.20.3.4:8554/stream?x=1"
    assert prepared.options["rtsp_transport"] == "tcp"
    with pytest.raises(SourceRefused):
        SourceGuard(parse_networks(["10.20.0.0/16"]), resolving({"x": ["10.21.0.1"]})).prepare(
            "rtsp://x/stream"
        )
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])


def test_no_scheme_reaches_files_or_inline_data():
    for scheme, whitelist in PROTOCOLS.items():
        allowed = set(whitelist.split(","))
        assert not allowed & {"file", "concat", "concatf", "subfile", "data", "pipe", "fd"}
        assert scheme in allowed


# -------------------------------------------------------------- real FFmpeg through the guard


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A clip as MP4 and as one MPEG-TS segment, and HLS playlists around it."""
    folder = tmp_path_factory.mktemp("site")
    write_frames(folder / "clip.mp4", pan_zoom_frames(FRAMES, (96, 64)), FRAMES, (96, 64), 25)
    with (
        av.open(str(folder / "clip.mp4")) as source,
        av.open(str(folder / "seg.ts"), "w", format="mpegts") as segment,
    ):
        stream = segment.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                segment.mux(packet)
    return folder


def playlist(segment: str) -> bytes:
    return (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n"
    ).encode()


class Site(http.server.SimpleHTTPRequestHandler):
    """Serves the folder, plus a redirect and playlists pointing elsewhere."""

    elsewhere = ""  # base URL of the other server
    hosts: list[str]  # Host headers received

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"{self.elsewhere}/clip.mp4")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        pages = {
            "/far.m3u8": playlist(f"{self.elsewhere}/seg.ts"),
            "/near.m3u8": playlist("seg.ts"),
            "/local.m3u8": playlist(f"file://{self.directory}/seg.ts"),
        }
        if self.path in pages:
            body = pages[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@contextlib.contextmanager
def serving(folder: Path, host: str, elsewhere: str = "", tls=None) -> Iterator[tuple]:
    """An HTTP(S) server of `folder` on `host`: its base URL, Host headers, TLS names."""
    hosts: list[str] = []
    handler = type("Handler", (Site,), {"elsewhere": elsewhere, "hosts": hosts})
    server = http.server.ThreadingHTTPServer(
        (host, 0), functools.partial(handler, directory=str(folder))
    )
    names: list[str] = []
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        context.sni_callback = lambda sock, name, ctx: names.append(name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}", hosts, names
    finally:
        server.shutdown()
        server.server_close()


def frames_of(address: str, guard: SourceGuard) -> int:
    opened = open_source(address, 10, 5, guard)
    try:
        return sum(1 for _ in opened.container.decode(opened.stream))
    finally:
        opened.close()


HERE = SourceGuard(parse_networks(["127.0.0.1/32"]))
"""A guard allowing 127.0.0.1 (standing for a public host) but not 127.0.0.2."""


def test_a_public_http_address_plays_through_the_guard(site):
    with serving(site, "127.0.0.1") as (base, hosts, _):
        assert frames_of(f"{base}/clip.mp4", HERE) == FRAMES
        assert frames_of(f"{base}/near.m3u8", HERE) == FRAMES  # HLS: playlist and segment
    assert hosts[0] == base.removeprefix("http://")


def test_the_name_is_resolved_by_the_guard_and_sent_as_it_was_typed(site):
    """FFmpeg never resolves the name: the guard does, and connects where it checked."""
    with serving(site, "127.0.0.1") as (base, hosts, _):
        port = base.rsplit(":", 1)[1]
        named = SourceGuard(HERE.allowed, resolving({"camera.test": ["127.0.0.1"]}))
        assert frames_of(f"http://camera.test:{port}/clip.mp4", named) == FRAMES
    assert hosts == [f"camera.test:{port}"]


def test_https_keeps_its_host_and_server_name(site, tmp_path):
    tls = write_tls_files(tmp_path / "tls")
    named = SourceGuard(HERE.allowed, resolving({"localhost": ["127.0.0.1"]}))
    with serving(site, "127.0.0.1", tls=tls) as (base, hosts, names):
        port = base.rsplit(":", 1)[1]
        assert frames_of(f"https://localhost:{port}/clip.mp4", named) == FRAMES
    assert names == ["localhost"] and hosts == [f"localhost:{port}"]


def test_a_redirect_to_a_non_public_host_is_refused(site):
    with (
        serving(site, "127.0.0.2") as (inside, inside_hosts, _),
        serving(site, "127.0.0.1", elsewhere=inside) as (base, _, _),
    ):
        with pytest.raises(SourceError, match=r"403 Forbidden.*refused: 127\.0\.0\.2 resolves to"):
            frames_of(f"{base}/redirect", HERE)
        with pytest.raises(SourceError, match=re.escape("refused: 127.0.0.2")):
            frames_of(f"{base}/far.m3u8", HERE)  # a playlist whose segments are inside
    assert inside_hosts == []  # nothing reached the inside host


def test_a_playlist_of_local_files_reads_none(site):
    with serving(site, "127.0.0.1") as (base, _, _), pytest.raises(SourceError):
        frames_of(f"{base}/local.m3u8", HERE)


def test_a_host_that_resolves_elsewhere_the_second_time_is_refused_then(site):
    """DNS rebinding: checked as 127.0.0.1, then resolving to 127.0.0.2 when connecting."""
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    rebinding = SourceGuard(HERE.allowed, lambda host, port: next(answers))
    with (
        serving(site, "127.0.0.2") as (inside, inside_hosts, _),
        pytest.raises(SourceError, match=re.escape("refused: rebind.test resolves to 127.0.0.2")),
    ):
        frames_of(f"http://rebind.test:{inside.rsplit(':', 1)[1]}/clip.mp4", rebinding)
    assert inside_hosts == []


def test_a_refused_source_is_refused_before_any_connection(site):
    with serving(site, "127.0.0.1") as (base, hosts, _):
        source = LiveSource(f"{base}/clip.mp4", guard=SourceGuard())
        with pytest.raises(SourceRefused, match=re.escape("127.0.0.1, a loopback address")):
            source.open()
    assert hosts == []


@pytest.mark.parametrize("scheme", ["rtsp", "rtsps", "rtmp", "rtmps"])
def test_each_schemes_whitelist_lets_ffmpeg_reach_its_server(scheme):
    """Nothing listens there: FFmpeg got as far as connecting (not stopped by the whitelist)."""
    port = free_port()
    with pytest.raises(SourceError, match="connection refused"):
        open_source(f"{scheme}://127.0.0.1:{port}/live", 10, 5, HERE)
