"""`gradcam-dashboard`: start the Streamlit page with sensible server flags."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gradcam_dashboard import config

APP = Path(__file__).with_name("app.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam-dashboard",
        description="Serve the Grad-CAM video dashboard (a Streamlit page).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8501, help="port of the page")
    parser.add_argument("--address", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--url",
        default=os.environ.get(config.ENV_URL, config.DEFAULT_URL),
        help=f"Triton gRPC address HOST:PORT (env {config.ENV_URL})",
    )
    parser.add_argument(
        "--metrics-url",
        default=os.environ.get(config.ENV_METRICS_URL),
        help=f"Triton metrics URL (env {config.ENV_METRICS_URL}; default port "
        f"{config.DEFAULT_METRICS_PORT} on the server's host)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=float(os.environ.get(config.ENV_MAX_UPLOAD_MB, config.DEFAULT_MAX_UPLOAD_MB)),
        help=f"largest upload in MB (env {config.ENV_MAX_UPLOAD_MB})",
    )
    parser.add_argument(
        "--session-dir",
        default=os.environ.get(config.ENV_DIR),
        help=f"folder for the sessions' files (env {config.ENV_DIR}; default a temp folder)",
    )
    parser.add_argument(
        "--session-max-age-hours",
        type=float,
        default=float(os.environ.get(config.ENV_MAX_AGE_H, config.DEFAULT_MAX_AGE_H)),
        help="remove the files of sessions idle for longer than this",
    )
    return parser


def build_command(args: argparse.Namespace, python: str = sys.executable) -> list[str]:
    """The `streamlit run` command line for the parsed options."""
    return [
        python,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless=true",
        f"--server.port={args.port}",
        f"--server.address={args.address}",
        f"--server.maxUploadSize={max(1, math.ceil(args.max_upload_mb))}",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=type",
    ]


def build_environment(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict:
    """The page's environment: the server address, upload limit and session folder."""
    env = dict(os.environ if base is None else base)
    env[config.ENV_URL] = args.url
    env[config.ENV_MAX_UPLOAD_MB] = f"{args.max_upload_mb:g}"
    env[config.ENV_MAX_AGE_H] = f"{args.session_max_age_hours:g}"
    if args.metrics_url:
        env[config.ENV_METRICS_URL] = args.metrics_url
    if args.session_dir:
        env[config.ENV_DIR] = str(args.session_dir)
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and replace this process with the Streamlit server."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0 or args.session_max_age_hours <= 0:
        parser.error("--max-upload-mb and --session-max-age-hours must be positive")
    command = build_command(args)
    os.execve(command[0], command, build_environment(args))


if __name__ == "__main__":
    main()
