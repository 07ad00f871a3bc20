#!/usr/bin/env python3
"""One-command local run: serve the exported model, start the dashboard, explain a sample clip.

`make demo` runs this after `make export`. It

1. starts Triton (the server of the nvidia-pytriton wheel) on the model repository,
2. starts the dashboard (`gradcam-dashboard`) if it is installed,
3. writes the sample clip out/chelsea_pan.mp4 (a pan over scikit-image's cat photo),
4. turns it into out/chelsea_pan_gradcam.mp4 and out/chelsea_pan_predictions.jsonl with the
   same code as `gradcam-video`,
5. prints where to look, then stops everything, or keeps serving until Ctrl-C with
   --keep-running.

Triton and the dashboard run under supervisors (`gradcam_server.supervisor`): whatever ends
this script (Ctrl-C, SIGTERM, a closed terminal's SIGHUP, SIGKILL), they and their children end
with it.

Ports default to the environment variables GRPC_PORT, HTTP_PORT, METRICS_PORT and
DASHBOARD_PORT (which `make demo GRPC_PORT=...` sets), else 8001, 8000, 8002 and 8501.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from gradcam_server.launcher import TritonServer
    from gradcam_server.supervisor import Supervised

CLIP_NAME = "chelsea_pan"
# Set by SIGHUP: the terminal closed, nobody waits for a clean stop, so the servers stop quickly.
HUNG_UP = threading.Event()
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoError(Exception):
    """A problem reported in one line, without a traceback."""


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise DemoError(f"{name}={value!r} is not a port number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--repository", default="model_repository", help="model repository")
    parser.add_argument("--model", default="efficientnet-lite0", help="model to run")
    parser.add_argument("--out", default="out", help="folder for the clip and the results")
    parser.add_argument("--grpc-port", type=int, default=_env_port("GRPC_PORT", 8001))
    parser.add_argument("--http-port", type=int, default=_env_port("HTTP_PORT", 8000))
    parser.add_argument("--metrics-port", type=int, default=_env_port("METRICS_PORT", 8002))
    parser.add_argument("--dashboard-port", type=int, default=_env_port("DASHBOARD_PORT", 8501))
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    parser.add_argument(
        "--keep-running", action="store_true", help="keep serving after the clip until Ctrl-C"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=300.0, help="seconds to wait for the server"
    )
    return parser


# -- the dashboard -----------------------------------------------------------------------------


def find_dashboard() -> str | None:
    """The `gradcam-dashboard` command of this environment, else the one on PATH."""
    local = Path(sys.prefix) / "bin" / "gradcam-dashboard"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("gradcam-dashboard")


@dataclass
class Dashboard:
    """The dashboard process, under a supervisor that leads its process group."""

    process: Supervised
    url: str
    log_path: Path

    def healthy(self) -> bool:
        try:
            with _LOCAL_HTTP.open(f"{self.url}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> bool:
        """True once Streamlit answers; False if it exited or did not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.has_exited():
                return False
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the dashboard, SIGKILL its whole process group after `timeout`."""
        self.process.terminate()
        deadline = time.monotonic() + timeout
        while not self.process.has_exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process.kill()  # also children that outlived their parent
        self.process.wait()


def start_dashboard(
    command: Sequence[str], port: int, grpc_url: str, metrics_url: str, log_path: Path
) -> Dashboard:
    """Start `gradcam-dashboard` on `port`, talking to the given Triton endpoints."""
    from gradcam_server.supervisor import spawn

    argv = [*command, "--port", str(port), "--url", grpc_url, "--metrics-url", metrics_url]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = spawn(argv, log=log)
    return Dashboard(process, f"http://localhost:{port}", log_path)


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    clip: Path
    video: Path
    predictions: Path

    @classmethod
    def in_folder(cls, out: Path) -> Outputs:
        return cls(
            clip=out / f"{CLIP_NAME}.mp4",
            video=out / f"{CLIP_NAME}_gradcam.mp4",
            predictions=out / f"{CLIP_NAME}_predictions.jsonl",
        )


def check_inputs(args: argparse.Namespace, with_dashboard: bool) -> None:
    """Fail early, in one line, on a missing model or a port in use."""
    from gradcam_server.launcher import check_ports_free, find_models

    repository = Path(args.repository)
    models = find_models(repository) if repository.is_dir() else []
    if args.model not in models:
        hosted = ", ".join(models) or "no model"
        raise DemoError(
            f"{repository} has no model {args.model!r} ({hosted}); export it first: "
            f"make export, or gradcam-server export --model {args.model} --repository {repository}"
        )
    ports = {
        "grpc-port": args.grpc_port,
        "http-port": args.http_port,
        "metrics-port": args.metrics_port,
    }
    if with_dashboard:
        ports["dashboard-port"] = args.dashboard_port
    check_ports_free(ports)


def explain_clip(grpc_url: str, model: str, outputs: Outputs) -> None:
    """Write the sample clip and run it through `gradcam-video`'s code."""
    from gradcam_client import cli
    from gradcam_client.media.samples import write_sample_clip

    outputs.clip.parent.mkdir(parents=True, exist_ok=True)
    write_sample_clip(outputs.clip)
    print(f"wrote the sample clip {outputs.clip}", flush=True)
    argv = [
        str(outputs.clip),
        "-o",
        str(outputs.video),
        "--url",
        grpc_url,
        "--model",
        model,
        "--predictions",
        str(outputs.predictions),
    ]
    print(f"$ gradcam-video {shlex.join(argv)}", flush=True)
    code = cli.main(argv)
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise DemoError(f"gradcam-video failed with exit code {code}")


def print_summary(
    out: IO[str],
    outputs: Outputs,
    server: TritonServer,
    dashboard: Dashboard | None,
    note: str,
    model: str,
    keep_running: bool,
) -> None:
    """Where the results are and how to reach the servers."""
    urls = server.urls
    lines = [
        "",
        "Done. Look at:",
        f"  {outputs.video}  the clip with its Grad-CAM heat map (H.264, plays in a browser)",
        f"  {outputs.predictions}  one JSON line per frame: top-5 classes, explained class",
        f"  {outputs.clip}  the input clip",
        f"Triton ({model}): gRPC {urls.grpc}, HTTP {urls.http}, metrics {urls.metrics}",
        f"  server log: {server.log_path}",
        f"Dashboard: {dashboard.url}" if dashboard else f"Dashboard: {note}",
    ]
    if keep_running:
        lines += [
            "Try another look while it runs:",
            f"  gradcam-video {outputs.clip} -o {outputs.clip.parent / 'side_by_side.mp4'} "
            f"--url {urls.grpc} --model {model} --layout side-by-side",
        ]
    else:
        lines.append("Everything stops now; --keep-running keeps serving until Ctrl-C.")
    print("\n".join(lines), file=out, flush=True)


def run(args: argparse.Namespace, out: IO[str]) -> int:
    from gradcam_server.launcher import TritonServer
    from gradcam_server.serve_command import HANGUP_STOP_SECONDS

    command = None if args.no_dashboard else find_dashboard()
    if args.no_dashboard:
        note = "not started (--no-dashboard)"
    elif command is None:
        note = "not started: gradcam-dashboard is not installed (pip install -e dashboard)"
    else:
        note = ""
    check_inputs(args, command is not None)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs.in_folder(out_dir)
    server = TritonServer(
        args.repository,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_path=out_dir / "tritonserver.log",
    )
    dashboard: Dashboard | None = None
    try:
        print(f"Starting Triton on {server.repository} (log: {server.log_path}) ...", flush=True)
        server.start()
        server.wait_ready(args.ready_timeout)
        print(f"Triton is ready: gRPC {server.urls.grpc}", flush=True)
        if command is not None:
            dashboard = start_dashboard(
                [command],
                args.dashboard_port,
                server.urls.grpc,
                server.urls.metrics,
                out_dir / "dashboard.log",
            )
        explain_clip(server.urls.grpc, args.model, outputs)
        if dashboard is not None and not dashboard.wait_healthy(60):
            note = f"did not start (see {dashboard.log_path})"
            dashboard.stop()
            dashboard = None
        print_summary(out, outputs, server, dashboard, note, args.model, args.keep_running)
        if args.keep_running:
            print("Serving until Ctrl-C ...", file=out, flush=True)
            while server.is_running():
                time.sleep(0.5)
            raise DemoError(f"Triton stopped on its own (see {server.log_path})")
        return 0
    except KeyboardInterrupt:
        if args.keep_running and outputs.predictions.exists():
            return 0  # the normal way to end --keep-running
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        print("Stopping ...", file=out, flush=True)
        patience = HANGUP_STOP_SECONDS if HUNG_UP.is_set() else 30.0  # seconds to stop cleanly
        if dashboard is not None:
            dashboard.process.terminate()  # both stop at once
        server.stop(patience)
        if dashboard is not None:
            dashboard.stop(patience)
        print("Stopped.", file=out, flush=True)


def _interrupt(signum: int, _frame: object) -> None:
    if signum == signal.SIGHUP:
        HUNG_UP.set()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = build_parser().parse_args(argv)
    except DemoError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        # SIGINT too: it may start ignored; SIGHUP: a closed terminal stops the demo cleanly.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)
    try:
        return run(args, sys.stdout)
    except DemoError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        from gradcam_server.launcher import LauncherError

        if isinstance(error, LauncherError):
            print(f"demo: error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
