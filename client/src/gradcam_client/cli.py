"""`gradcam-video`: a video (or image) in, the same with Grad-CAM heat maps out."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from gradcam_client.compare.job import compare_media
from gradcam_client.errors import GradcamError, InputError
from gradcam_client.jobs.file_job import process_media
from gradcam_client.jobs.settings import ENCODER_PRESETS, JobSettings
from gradcam_client.jobs.targets import PREDICTED
from gradcam_client.live.cli import run_streams, streams_from, tell
from gradcam_client.live.job import LiveFrame, LiveJob, LiveSettings
from gradcam_client.live.source import is_live_address
from gradcam_client.live.streams import DEFAULT_IN_FLIGHT
from gradcam_client.media.writer import ENCODERS
from gradcam_client.remote.model_ref import ModelRef
from gradcam_client.remote.server import Connection, GradcamServer, RetryNotice, RetryPolicy
from gradcam_client.remote.wire import DEFAULT_JPEG_QUALITY, WIRE_CHOICES, Wire, choose_wire
from gradcam_client.render.compose import COLORMAPS, CompositionSettings, Layout
from gradcam_client.render.normalize import DEFAULT_SMOOTHING, Scope

DEFAULT_URL = os.environ.get("GRADCAM_URL", "localhost:8001")
DEFAULT_MODEL = os.environ.get("GRADCAM_MODEL", "efficientnet-lite0")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _layout_name(text: str) -> str:
    """Accept "side-by-side" as well as "side_by_side"."""
    return text.strip().lower().replace("-", "_")


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradcam-video",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "input",
        nargs="*",
        help="video file (anything FFmpeg reads), image, or live source: a stream address "
        "(rtsp://, rtmp://, http(s)://, udp://, tcp://) or a camera "
        "(/dev/video0); several live sources run side by side (streams s1, s2, ...)",
    )
    parser.add_argument(
        "-o",
        "--output",
        help="output .mp4 (or an image for an image input); for a live source, a recording "
        "that plays however the run ends (optional)",
    )
    server = parser.add_argument_group("server")
    server.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="Triton gRPC address HOST:PORT; several, comma-separated, share the frames "
        "(env GRADCAM_URL)",
    )
    server.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model NAME (its newest version) or NAME:VERSION (env GRADCAM_MODEL)",
    )
    server.add_argument(
        "--compare",
        metavar="MODEL",
        help="also run MODEL (NAME, NAME:VERSION, or :VERSION for another version of --model) "
        "and write A | B side by side, with per-frame agreement and a summary",
    )
    server.add_argument("--list-models", action="store_true", help="list the models and exit")
    server.add_argument("--ssl", action="store_true", help="use TLS")
    server.add_argument(
        "--root-certificates",
        help="with --ssl: PEM file of the CA to trust (default: the system's)",
    )
    server.add_argument("--private-key", help="with --ssl: PEM file of the client key (mutual TLS)")
    server.add_argument(
        "--certificate-chain", help="with --ssl: PEM file of the client certificate (mutual TLS)"
    )
    server.add_argument(
        "--wire",
        default="auto",
        choices=WIRE_CHOICES,
        help="frames on the wire: raw pixels (150 KB at 224x224), JPEG (15-25 KB) or PNG "
        "(lossless); auto: raw for a server on this machine, JPEG for a remote one",
    )
    server.add_argument(
        "--jpeg-quality",
        type=int,
        default=DEFAULT_JPEG_QUALITY,
        help="with --wire jpeg: 1-100 (95 keeps the maps within 0.99 correlation of raw)",
    )
    server.add_argument(
        "--probabilities",
        default="auto",
        choices=["auto", "all", "top"],
        help="answers with all class probabilities or only the top 5 (4 KB less per frame); "
        "auto: top unless --target needs a class outside them",
    )
    server.add_argument("--compression", choices=["gzip", "deflate"], help="compress requests")
    server.add_argument(
        "--retry-deadline",
        type=float,
        default=120.0,
        help="seconds to keep retrying an unavailable server before giving up",
    )
    server.add_argument("--priority", type=int, default=0, help="request priority (1 = highest)")
    server.add_argument(
        "--batch-size", type=int, help="frames per request (default 8; live sources 1, the newest)"
    )
    server.add_argument(
        "--max-in-flight",
        type=int,
        help="requests in flight at most, fewer while the server's queue is full "
        "(default 4; a live source 2; several live sources: 8 over all of them, 2 each)",
    )

    what = parser.add_argument_group("what to explain")
    what.add_argument(
        "--target",
        help="'predicted' (each frame's top class, default), 'video' (one class for the whole "
        "video), or a class index or name such as 'Siamese cat'",
    )
    what.add_argument("--layers", type=_csv, default=(), help="comma-separated layers")
    what.add_argument("--methods", type=_csv, default=(), help="comma-separated methods")

    look = parser.add_argument_group("how it looks")
    look.add_argument(
        "--layout",
        default="overlay",
        type=_layout_name,
        choices=[layout.value for layout in Layout],
        help="overlay, side_by_side (original | overlay) or grid (a panel per layer/method)",
    )
    look.add_argument("--colormap", default="jet", choices=sorted(COLORMAPS))
    look.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity 0..1")
    look.add_argument(
        "--scope",
        default="running",
        choices=[s.value for s in Scope if s is not Scope.FIXED],
        help="normalise each map by its frame's maximum, the clip's, or a running maximum",
    )
    look.add_argument(
        "--smoothing",
        type=float,
        default=DEFAULT_SMOOTHING,
        help="temporal EMA strength on the raw maps, 0..1 (0 = off)",
    )
    look.add_argument("--no-label", action="store_true", help="no class label on frames")

    out = parser.add_argument_group("outputs")
    out.add_argument("--predictions", help="write per-frame predictions as JSON lines")
    out.add_argument(
        "--maps",
        help="write the raw maps as a compressed .npz (with --compare: OUT.npz gives "
        "OUT-a.npz and OUT-b.npz, each side's maps)",
    )
    out.add_argument(
        "--summary",
        help="with --compare: where the summary JSON goes (default: OUTPUT stem + .compare.json; "
        "the per-frame lines go to --predictions, default OUTPUT stem + .compare.jsonl)",
    )
    out.add_argument(
        "--stop-on-corrupt", action="store_true", help="stop at a corrupt frame (default: skip)"
    )
    out.add_argument(
        "--preset",
        choices=ENCODER_PRESETS,
        help="libx264 speed: slower presets make smaller files at the same quality "
        f"(default: {JobSettings.encoder_preset}; a live recording {LiveSettings.encoder_preset})",
    )
    out.add_argument(
        "--encoder",
        default="auto",
        choices=ENCODERS,
        help="H.264 encoder: auto uses NVENC when an NVIDIA GPU opens it, else libx264",
    )
    out.add_argument(
        "--crf",
        type=int,
        default=JobSettings.crf,
        help="H.264 quality, 0 (lossless) to 51; lower is better",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar or status")

    live = parser.add_argument_group("live sources")
    live.add_argument(
        "--realtime",
        default="auto",
        choices=["auto", "on", "off"],
        help="skip frames (keeping the newest) rather than fall behind the source; auto: on "
        "for streams and cameras, off for an http(s) address of a file",
    )
    live.add_argument(
        "--sources",
        metavar="FILE",
        help="live sources to run side by side, a 'NAME ADDRESS' line each; outputs get "
        "-NAME before their suffix (-o out.mp4: out-NAME.mp4)",
    )
    live.add_argument(
        "--queue-timeout",
        type=float,
        default=0.25,
        help="seconds a live frame's request may wait in the server's queue; later it is "
        "dropped and counted as skipped (0: no limit, retried as for files)",
    )
    live.add_argument("--duration", type=float, help="stop after this many seconds")
    live.add_argument(
        "--restream",
        metavar="URL",
        help="also send the composed frames to a player: udp://HOST:PORT (MPEG-TS, watch "
        "with ffplay or VLC), tcp://, rtsp:// or rtmp:// (push to a server)",
    )
    live.add_argument(
        "--open-timeout", type=float, default=10.0, help="seconds for a source to start"
    )
    live.add_argument(
        "--read-timeout",
        type=float,
        default=5.0,
        help="seconds without data after which a source counts as stopped",
    )
    live.add_argument(
        "--reconnect-deadline",
        type=float,
        default=30.0,
        help="seconds to keep reopening a source that stopped (0: end the run)",
    )
    out.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    return parser


TLS_FILES = ("root_certificates", "private_key", "certificate_chain")


def tls_argument_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the TLS options, if anything (they are never silently ignored)."""
    given = [f"--{name.replace('_', '-')}" for name in TLS_FILES if getattr(args, name)]
    if given and not args.ssl:
        return f"{' and '.join(given)} {'need' if len(given) > 1 else 'needs'} --ssl"
    if bool(args.private_key) != bool(args.certificate_chain):
        return "mutual TLS needs both --private-key and --certificate-chain"
    return None


def readable(path: str | None) -> str | None:
    """`path` if it names a readable file (gRPC reads it when connecting), else a clear error."""
    if path is None:
        return None
    try:
        with Path(path).open("rb"):
            return path
    except OSError as error:
        raise GradcamError(f"cannot read certificate file {path}: {error.strerror}") from None


def wire_from(args: argparse.Namespace, urls: list[str]) -> Wire:
    """The wire format asked for (auto: by where the server is)."""
    return choose_wire(args.wire, urls, args.jpeg_quality)


def top_k_from(args: argparse.Namespace, settings: JobSettings | None) -> int | None:
    """How many probabilities answers carry (None: all of them).

    A fixed target or `--target video` reads classes beyond the top-k, so auto keeps them all.
    """
    if settings is None or args.probabilities == "all":
        return None
    predicted = args.target is None or args.target.strip().lower() in ("", PREDICTED)
    if args.probabilities == "auto" and not predicted:
        return None
    return settings.top_k


SAY_WAITS_LONGER_THAN_S = 5.0
"""A server that does not answer is announced at once when the retries may last longer than
this; a shorter wait ends in the error line itself."""


def announce_waits(notice: RetryNotice) -> None:
    """Say on stderr, once per outage of each server, that the client waits for it and how long.

    A full queue is not announced: the server answers, and the client sends less at once.
    """
    left = notice.give_up_at - time.monotonic()
    if not notice.first or notice.queue_full or left <= SAY_WAITS_LONGER_THAN_S:
        return
    what = (
        f"no server answers at {notice.url} ({notice.unreachable})"
        if notice.unreachable
        else f"{notice.action} failed ({notice.problem})"
    )
    print(
        f"gradcam-video: {what}; retrying for up to {left:.0f} s (--retry-deadline)",
        file=sys.stderr,
        flush=True,
    )


def connect(
    args: argparse.Namespace, settings: JobSettings | None = None, model: str | None = None
) -> GradcamServer:
    urls = list(_csv(args.url))
    connection = Connection(
        ssl=args.ssl,
        root_certificates=readable(args.root_certificates),
        private_key=readable(args.private_key),
        certificate_chain=readable(args.certificate_chain),
        compression=args.compression,
    )
    return GradcamServer(
        urls,
        model or args.model,
        connection,
        RetryPolicy(deadline_s=args.retry_deadline),
        priority=args.priority,
        max_in_flight=4 if args.max_in_flight is None else args.max_in_flight,
        wire=wire_from(args, urls),
        top_k=top_k_from(args, settings),
        on_retry=announce_waits,
    )


def settings_from(args: argparse.Namespace) -> JobSettings:
    composition = CompositionSettings(
        colormap=args.colormap,
        alpha=args.alpha,
        layout=args.layout,
        show_label=not args.no_label,
    )
    return JobSettings(
        target=args.target,
        layers=args.layers,
        methods=args.methods,
        scope=args.scope,
        smoothing=args.smoothing,
        composition=composition,
        batch_size=8 if args.batch_size is None else args.batch_size,
        max_in_flight=4 if args.max_in_flight is None else args.max_in_flight,
        on_corrupt="raise" if args.stop_on_corrupt else "skip",
        encoder_preset=args.preset or JobSettings.encoder_preset,
        crf=args.crf,
        encoder=args.encoder,
    )


def retry_summary(server: GradcamServer) -> str:
    """One line on the requests the server refused for a while and that were retried."""
    counts = server.retried
    parts = []
    if counts.queue_full:
        parts.append(f"{counts.queue_full} refused with a full queue")
    if counts.unavailable:
        parts.append(f"{counts.unavailable} while the server was unavailable")
    return f"retried requests: {', '.join(parts)}" if parts else ""


def several_sources(args: argparse.Namespace) -> bool:
    """Whether the run explains several live sources side by side."""
    return bool(args.sources) or len(args.input) > 1


def run(args: argparse.Namespace) -> int:
    if several_sources(args) and args.max_in_flight is None:
        args.max_in_flight = DEFAULT_IN_FLIGHT  # over all the streams
    settings = None if args.list_models else settings_from(args)  # checked before connecting
    server = connect(args, settings)
    if settings is None:
        for name, versions in sorted(server.list_versions().items()):
            print(name)  # its newest version; each version too when several are loaded
            for version in versions if len(versions) > 1 else ():
                print(f"{name}:{version}")
        return 0
    if several_sources(args):
        if args.compare:
            raise InputError("--compare is for one file; several sources run one model")
        return run_several(args, server, settings)
    if is_live_address(args.input[0]):
        if args.compare:
            raise InputError("--compare is for files; a live source runs one model")
        return run_live(args, server, settings)
    if args.compare:
        return run_compare(args, server, connect(args, settings, compared_model(args)), settings)
    from tqdm import tqdm

    quiet = args.quiet or not sys.stderr.isatty()  # no bar in logs
    with tqdm(unit="frame", disable=quiet, dynamic_ncols=True) as bar:

        def progress(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = process_media(
            server,
            args.input[0],
            args.output,
            settings,
            predictions=args.predictions,
            maps=args.maps,
            progress=progress,
        )
        bar.total = result.frames  # the estimate may have counted corrupt frames
        bar.refresh()
    if result.skipped:
        print(f"gradcam-video: warning: {result.skipped}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {result.output} ({result.frames} frames, {result.fps:.1f} frames/s)")
        print(f"explained: {result.target}")
        for extra in (result.predictions, result.maps):
            if extra:
                print(f"wrote {extra}")
        if retry_summary(server):
            print(retry_summary(server))
    return 0


def compared_model(args: argparse.Namespace) -> str:
    """--compare's model; ":VERSION" is another version of --model."""
    if args.compare.strip().startswith(":"):
        return ModelRef.parse(args.model).name + args.compare.strip()
    return args.compare


def side_maps_paths(maps: str) -> tuple[Path, Path]:
    """--maps OUT.npz with --compare: OUT-a.npz and OUT-b.npz, each side's raw maps."""
    path = Path(maps)
    suffix = path.suffix or ".npz"
    return (path.with_name(f"{path.stem}-a{suffix}"), path.with_name(f"{path.stem}-b{suffix}"))


def run_compare(
    args: argparse.Namespace, a: GradcamServer, b: GradcamServer, settings: JobSettings
) -> int:
    """Compare two models on a file: the A | B video, the per-frame lines, the summary."""
    from tqdm import tqdm

    quiet = args.quiet or not sys.stderr.isatty()
    with tqdm(unit="frame", disable=quiet, dynamic_ncols=True) as bar:

        def progress(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = compare_media(
            a,
            b,
            args.input[0],
            args.output,
            settings,
            predictions=args.predictions,
            summary=args.summary,
            maps=side_maps_paths(args.maps) if args.maps else None,
            progress=progress,
        )
    if result.skipped:
        print(f"gradcam-video: warning: {result.skipped}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {result.output} ({result.frames} frames, {result.fps:.1f} frames/s)")
        for line in result.summary.lines():
            print(line)
        print(f"wrote {result.predictions}")
        print(f"wrote {result.summary_path}")
        for path in result.maps or ():
            print(f"wrote {path}")
        for server in (a, b):
            if retry_summary(server):
                print(f"{server.ref}: {retry_summary(server)}")
    return 0


def live_settings_from(args: argparse.Namespace) -> LiveSettings:
    return LiveSettings(
        realtime={"auto": None, "on": True, "off": False}[args.realtime],
        open_timeout=args.open_timeout,
        read_timeout=args.read_timeout,
        reconnect_deadline=args.reconnect_deadline,
        duration=args.duration,
        restream=args.restream,
        batch_size=args.batch_size,
        max_in_flight=args.max_in_flight,
        queue_timeout=args.queue_timeout or None,
        encoder_preset=args.preset or LiveSettings.encoder_preset,
    )


def check_live_outputs(args: argparse.Namespace) -> None:
    """`InputError` for live outputs that cannot be: none at all, or raw maps."""
    if not (args.output or args.predictions or args.restream):
        raise InputError("a live run needs somewhere to go: -o, --predictions or --restream")
    if args.maps:
        raise InputError("--maps is for files; a live run writes its predictions as it goes")


def run_several(args: argparse.Namespace, server: GradcamServer, settings: JobSettings) -> int:
    """Several live sources side by side, sharing the server (see `live_cli`)."""
    streams = streams_from(args.input, args.sources)
    check_live_outputs(args)
    server.model_info()  # an absent server or model: one line, before any stream starts
    live = live_settings_from(args)
    live = dataclasses.replace(live, max_in_flight=None)  # --max-in-flight is the total here

    def say(text: str) -> None:
        if not args.quiet:
            tell(text)

    return run_streams(
        streams,
        server,
        settings,
        live,
        output=args.output,
        predictions=args.predictions,
        restream=args.restream,
        max_in_flight=args.max_in_flight,
        say=say,
        quiet=args.quiet,
    )


STATUS_EVERY_S = 10.0
"""Seconds between the status lines of a live run."""


def run_live(args: argparse.Namespace, server: GradcamServer, settings: JobSettings) -> int:
    """Explain a live source until Ctrl-C, SIGTERM, --duration or the source's end."""
    check_live_outputs(args)

    def say(text: str) -> None:
        if not args.quiet:
            tell(text)

    last_status = [time.monotonic()]

    def status(frame: LiveFrame) -> None:
        if time.monotonic() - last_status[0] >= STATUS_EVERY_S:
            last_status[0] = time.monotonic()
            say(frame.stats.summary())

    job = LiveJob(
        server,
        args.input[0],
        args.output,
        settings,
        live_settings_from(args),
        predictions=args.predictions,
        on_frame=status,
        on_event=lambda event: event.kind == "stopped" or say(event.message),
    )

    def stop(signum: int, _frame: object) -> None:
        job.stop(f"stopped by {signal.Signals(signum).name}")
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once

    handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = job.run()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if not args.quiet:
        for path in result.recordings:
            print(f"wrote {path}")
        if result.predictions:
            print(f"wrote {result.predictions}")
        print(f"live: {result.ended}; {result.stats.summary()}")
        if retry_summary(server):
            print(retry_summary(server))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    several = several_sources(args)
    live = several or (bool(args.input) and is_live_address(args.input[0]))
    if not args.list_models and not several and (not args.input or not (args.output or live)):
        parser.error("give an INPUT and -o OUTPUT (or --list-models)")
    problem = tls_argument_error(args)
    if problem:
        parser.error(problem)
    try:
        return run(args)
    except GradcamError as error:
        if args.debug:
            raise
        notes = "; ".join(getattr(error, "__notes__", []))
        _error(f"{error}" + (f" ({notes})" if notes else ""))
        return 1
    except ValueError as error:  # a setting out of range
        if args.debug:
            raise
        _error(str(error))
        return 2
    except KeyboardInterrupt:
        kept = "what was recorded so far is kept" if live else "no output was written"
        print(f"gradcam-video: interrupted; {kept}", file=sys.stderr)
        return 130
    except Exception as error:  # a failure nobody anticipated: still one line
        if args.debug:
            raise
        _error(f"unexpected {type(error).__name__}: {error} (run with --debug for details)")
        return 3


def _error(message: str) -> None:
    """Print one error line, whatever line breaks the message holds."""
    print(f"gradcam-video: error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
