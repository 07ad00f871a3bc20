"""Where the camera's WebRTC media may flow: ICE servers and this machine's addresses.

The page and the dashboard find a path for the media with ICE. By default no STUN or TURN
server is used (nothing on the internet is contacted): the browser must reach one of the
addresses the dashboard offers (host candidates) on a UDP port the operating system picks.
Behind NAT, a TURN server relays the media (``GRADCAM_CAMERA_ICE_SERVERS``). aiortc offers
every address of the machine except loopback; `restrict_host_addresses` narrows that to the
operator's list (``127.0.0.1`` for a page opened on this machine only, a LAN address, ...).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

import aioice.ice

ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as WebRTC's ``RTCIceServer``."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """``[{"urls": "turn:host:3478", "username": "u", "credential": "p"}, ...]`` (JSON)."""
    if not text.strip():
        return ()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"not JSON ({error.msg}); give a list like "
            '[{"urls": "turn:turn.example.org:3478", "username": "u", '
            '"credential": "p"}]'
        ) from None
    if not isinstance(items, list):
        raise ValueError("give a JSON list of ICE servers")
    servers = []
    for item in items:
        if not isinstance(item, dict) or "urls" not in item:
            raise ValueError(f"an ICE server is an object with 'urls'; got {item!r}")
        urls = item["urls"]
        urls = (urls,) if isinstance(urls, str) else tuple(urls)
        bad = [url for url in urls if not isinstance(url, str) or not url.startswith(ICE_SCHEMES)]
        if bad or not urls:
            raise ValueError(f"ICE server URLs start with {', '.join(ICE_SCHEMES)}; got {bad}")
        if any(url.startswith(("turn:", "turns:")) for url in urls) and not (
            item.get("username") and item.get("credential")
        ):
            raise ValueError(f"a TURN server needs 'username' and 'credential': {urls[0]}")
        servers.append(IceServer(urls, item.get("username"), item.get("credential")))
    return tuple(servers)


def parse_addresses(text: str) -> tuple[str, ...]:
    """IP addresses separated by spaces, ``,`` or ``;``."""
    addresses = []
    for item in re.split(r"[\s,;]+", text.strip()):
        if not item:
            continue
        try:
            addresses.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    return tuple(addresses)


def rtc_configuration(servers: tuple[IceServer, ...]) -> dict[str, Any]:
    """The ``RTCConfiguration`` of both ends (an empty list: no STUN or TURN at all)."""
    return {"iceServers": [server.as_dict() for server in servers]}


def restrict_host_addresses(addresses: tuple[str, ...]) -> None:
    """Offer only `addresses` as aiortc's host candidates, in this process (empty: aiortc's
    own choice, every address but loopback)."""
    if not addresses:
        aioice.ice.get_host_addresses = _AIOICE_HOST_ADDRESSES
        return

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            address
            for address in addresses
            if (use_ipv4 and ":" not in address) or (use_ipv6 and ":" in address)
        ]

    aioice.ice.get_host_addresses = chosen


_AIOICE_HOST_ADDRESSES = aioice.ice.get_host_addresses
