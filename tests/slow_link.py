"""A slow network link on this machine: a network namespace joined to this one by a veth pair.

Used by the tests through the `network_link` fixture (`tests/conftest.py`) and by
`bench/wire.py`:

    with SlowLink() as link:             # needs root, iproute2 (`ip`, `tc`)
        link.shape(rate_mbit=100)
        with link.delayed(f"{link.host_address}:{port}", rtt_ms=20) as url:
            subprocess.run(link.run_inside([python, "client.py", url]))

Traffic crosses only the veth pair between the namespace made here and this one, on link-local
addresses (a /30 of 169.254.0.0/16 no other interface uses), and the namespace's own loopback;
the namespace and the pair are deleted when the block ends. Each end's egress goes through a
token bucket (`tc ... tbf`), so both directions have the bandwidth. The round trip comes from a
delay line in the namespace (a TCP relay that holds every chunk for half the round trip in each
direction): this kernel has no `netem`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_LINK_LOCAL = "169.254"  # never routed beyond the pair
RATE_MBIT = 100  # a remote client's link: 100 Mbit/s ...
RTT_MS = 20  # ... and a 20 ms round trip


def available() -> str | None:
    """Why no slow link can be made here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"needs iproute2 ({', '.join(missing)} not found)"
    probe = f"gcwprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace (ip netns add: {made.stderr.strip()})"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> str:
    """A 169.254.N prefix no interface of this namespace uses (several links may coexist)."""
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    start = os.getpid() % 200
    for step in range(200):
        prefix = f"{_LINK_LOCAL}.{20 + (start + step) % 200}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 169.254.N.0/30 subnet for the slow link")


class SlowLink:
    """A namespace `gcw<pid>` with a veth pair to this namespace, shaped with tbf."""

    def __init__(self) -> None:
        tag = f"gcw{os.getpid() % 100000}"
        self.namespace = tag
        self.host_side, self.inner_side = f"{tag}h", f"{tag}n"
        self.host_address = self.inner_address = ""

    def __enter__(self) -> SlowLink:
        prefix = _free_subnet()
        self.host_address, self.inner_address = f"{prefix}.1", f"{prefix}.2"
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", self.host_side, "type", "veth", "peer", "name", self.inner_side)
            _ip("link", "set", self.inner_side, "netns", self.namespace)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_side)
            _ip("link", "set", self.host_side, "up")
            inside = ("netns", "exec", self.namespace, "ip")
            _ip(*inside, "addr", "add", f"{self.inner_address}/30", "dev", self.inner_side)
            _ip(*inside, "link", "set", self.inner_side, "up")
            _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the pair (deleting one end deletes both) and the namespace."""
        subprocess.run(["ip", "link", "del", self.host_side], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)

    def shape(self, rate_mbit: float) -> None:
        """Both directions at `rate_mbit` (a token bucket on each end's egress)."""
        tbf = ["root", "tbf", "rate", f"{rate_mbit}mbit", "burst", "64kb", "latency", "200ms"]
        for device, prefix in ((self.host_side, []), (self.inner_side, self.run_inside([]))):
            subprocess.run(
                [*prefix, "tc", "qdisc", "replace", "dev", device, *tbf],
                check=True, capture_output=True,
            )  # fmt: skip

    @contextlib.contextmanager
    def delayed(self, target: str, rtt_ms: float, public: bool = False) -> Iterator[str]:
        """A delay line inside the namespace to `target` (HOST:PORT); yields its address: a
        free port on the namespace's loopback, or with `public` on its end of the pair (this
        namespace reaches it there: a server that is not on this machine's loopback)."""
        host = self.inner_address if public else "127.0.0.1"
        relay = subprocess.Popen(
            self.run_inside(
                [sys.executable, __file__, "--listen", f"{host}:0", "--to", target,
                 "--delay-ms", str(rtt_ms / 2)]
            ),
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            line = relay.stdout.readline().split() if relay.stdout is not None else []
            if len(line) != 2 or line[0] != "ready":
                raise RuntimeError("the delay line did not start")
            yield f"{host}:{line[1]}"
        finally:
            relay.terminate()
            relay.wait(10)

    def run_inside(self, command: list[str]) -> list[str]:
        """`command` prefixed to run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def host_bytes(self) -> tuple[int, int]:
        """Bytes (received, sent) by this namespace's end of the pair so far."""
        stats = Path("/sys/class/net") / self.host_side / "statistics"
        return int((stats / "rx_bytes").read_text()), int((stats / "tx_bytes").read_text())


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk leaving `delay` seconds after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while chunk := await reader.read(1 << 16):
            queue.put_nowait((time.monotonic() + delay, chunk))
        queue.put_nowait((0.0, b""))

    receiving = asyncio.create_task(receive())
    while True:
        due, chunk = await queue.get()
        if not chunk:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        writer.write(chunk)
        await writer.drain()
    await receiving
    with contextlib.suppress(OSError):
        writer.close()


async def _relay(listen: str, target: str, delay: float) -> None:
    host, port = target.rsplit(":", 1)

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(
            _pump(client_r, server_w, delay), _pump(server_r, client_w, delay),
            return_exceptions=True,
        )  # fmt: skip

    listen_host, listen_port = listen.rsplit(":", 1)
    server = await asyncio.start_server(connection, listen_host, int(listen_port))
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """The delay line: `slow_link.py --listen HOST:PORT --to HOST:PORT --delay-ms MS`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_relay(args.listen, args.to, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
