"""`gradcam-video` with several live sources: which streams, where their outputs go, the run.

Sources come repeated on the command line (named ``s1``, ``s2``, ... in order) or from a
``--sources`` file of ``NAME ADDRESS`` lines (``#`` starts a comment). Each stream's outputs
are the given ones with ``-NAME`` before the suffix: ``-o out.mp4`` records stream ``door``
in ``out-door.mp4`` (``out-door-2.mp4`` after the source was reopened), ``--predictions
p.jsonl`` writes ``p-door.jsonl``. A re-stream address gets the stream's position added to
its port (``udp://127.0.0.1:5000``: the first stream on 5000, the second on 5001, ...) or,
for RTSP and RTMP, ``-NAME`` added to its path.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gradcam_client.errors import InputError
from gradcam_client.jobs.settings import JobSettings
from gradcam_client.live.data import LiveEvent, LiveSettings
from gradcam_client.live.source import is_live_address
from gradcam_client.live.streams import LiveStreams, check_name
from gradcam_client.remote.server import GradcamServer

PORT_SCHEMES = ("udp", "tcp", "srt")
"""Re-stream addresses whose port is shifted per stream (the others get a path per stream)."""


def read_sources(path: str) -> list[tuple[str, str]]:
    """(name, address) pairs of a sources file; `InputError` naming the line that is wrong."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise InputError(f"cannot read the sources file: {error.strerror}", path) from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"line {number}: write NAME ADDRESS, got {line.strip()!r}", path)
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise InputError("the sources file lists no source", path)
    return pairs


def streams_from(inputs: list[str], sources_file: str | None) -> list[tuple[str, str]]:
    """The (name, address) of every stream asked for; `InputError` for names or addresses
    that cannot be streams (files, duplicates, bad names)."""
    pairs = [(f"s{i}", address) for i, address in enumerate(inputs, 1)]
    if sources_file:
        pairs += read_sources(sources_file)
    seen: set[str] = set()
    for name, address in pairs:
        check_name(name)
        if name in seen:
            raise InputError(f"two streams are named {name!r}")
        seen.add(name)
        if not is_live_address(address):
            raise InputError(
                f"stream {name}: several sources are live sources only (stream addresses or "
                "cameras); run a file on its own",
                address,
            )
    return pairs


def per_stream(path: str | None, name: str) -> Path | None:
    """``out.mp4`` -> ``out-NAME.mp4`` (None stays None)."""
    if not path:
        return None
    original = Path(path)
    return original.with_name(f"{original.stem}-{name}{original.suffix}")


def restream_for(url: str | None, index: int, name: str) -> str | None:
    """The re-stream address of the `index`-th stream (0-based): the port shifted by `index`
    for UDP, TCP and SRT, ``-NAME`` after the path for the others."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() in PORT_SCHEMES and parts.port:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        return urlunsplit(parts._replace(netloc=f"{host}:{parts.port + index}"))
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}-{name}"))


STATUS_EVERY_S = 10.0
"""Seconds between the status lines of a run."""


_STDERR = threading.Lock()


def tell(text: str) -> None:
    """One whole line on stderr, also when several streams' threads speak at once."""
    with _STDERR:
        sys.stderr.write(f"gradcam-video: {text}\n")
        sys.stderr.flush()


def run_streams(
    streams: list[tuple[str, str]],
    server: GradcamServer,
    settings: JobSettings,
    live: LiveSettings,
    *,
    output: str | None,
    predictions: str | None,
    restream: str | None,
    max_in_flight: int,
    say: Callable[[str], None],
    quiet: bool,
) -> int:
    """Explain every stream until Ctrl-C, SIGTERM, the duration or their ends; the exit code
    (1 when a stream failed, after the others ended)."""

    def on_event(name: str, event: LiveEvent) -> None:
        if event.kind == "failed":  # said at once, whatever --quiet says; the others go on
            message = " ".join(event.message.split())
            tell(f"error: {name}: {message}")
        elif event.kind != "stopped":
            say(f"{name}: {event.message}")

    engine = LiveStreams(server, settings, live, max_in_flight=max_in_flight, on_event=on_event)

    def stop(signum: int, _frame: object) -> None:
        engine.stop(f"stopped by {signal.Signals(signum).name}")
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once

    handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index, (name, address) in enumerate(streams):
            engine.add(
                name,
                address,
                per_stream(output, name),
                predictions=per_stream(predictions, name),
                restream=restream_for(restream, index, name),
            )
        while engine.running():
            engine.wait(timeout=STATUS_EVERY_S)
            if engine.running():
                say(f"all streams: {engine.total().summary()}")
    finally:
        engine.stop()
        outcomes = engine.wait(60)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    failed = 0
    for name, _address in streams:
        outcome = outcomes.get(name)
        if outcome is None or outcome.error is not None:
            failed += 1
            if outcome is None:
                print(f"gradcam-video: error: {name}: did not end in time", file=sys.stderr)
            continue
        if not quiet:
            assert outcome.result is not None
            for path in outcome.result.recordings:
                print(f"wrote {path}")
            if outcome.result.predictions:
                print(f"wrote {outcome.result.predictions}")
            print(f"live {name}: {outcome.message}")
    if not quiet:
        print(f"live, all streams: {engine.total().summary()}")
    return 1 if failed else 0
