"""`gradcam-dashboard`: start the Streamlit page with sensible server flags."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gradcam_client.remote.wire import WIRE_CHOICES
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
    env = os.environ
    servers = parser.add_argument_group(
        "servers", "the page contacts only these (the first is the default choice)"
    )
    servers.add_argument(
        "--url",
        action="append",
        default=None,
        help=f"a Triton gRPC address HOST:PORT the page offers; repeat for several choices; "
        f"HOST:PORT,HOST:PORT is one choice whose servers share the work (env {config.ENV_URL},"
        f" space-separated; default {config.DEFAULT_URL})",
    )
    servers.add_argument(
        "--metrics-url",
        action="append",
        default=None,
        help="the metrics URL of each --url in the same order, or 'none' (env "
        f"{config.ENV_METRICS_URL}; default http://HOST:GRPC_PORT+1/metrics, Triton's layout)",
    )
    servers.add_argument(
        "--allow-any-url",
        action="store_true",
        default=config.env_flag(env, config.ENV_ALLOW_ANY_URL),
        help=f"let visitors type any server address (env {config.ENV_ALLOW_ANY_URL}=1)",
    )
    servers.add_argument(
        "--wire",
        choices=WIRE_CHOICES,
        default=env.get(config.ENV_WIRE, "").strip().lower() or config.DEFAULT_WIRE,
        help="frames on the wire, as gradcam-video's --wire: auto is raw for a server on this "
        f"machine, JPEG for a remote one (env {config.ENV_WIRE})",
    )
    tls = parser.add_argument_group("TLS", "gRPC over TLS to the servers")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=config.env_flag(env, config.ENV_TLS),
        help=f"use TLS with the system's CAs (env {config.ENV_TLS}=1)",
    )
    tls.add_argument(
        "--tls-ca",
        default=env.get(config.ENV_TLS_CA),
        help=f"PEM file of the CA that signed the servers' certificates (env {config.ENV_TLS_CA})",
    )
    tls.add_argument(
        "--tls-key",
        default=env.get(config.ENV_TLS_KEY),
        help=f"the page's private key for mutual TLS (env {config.ENV_TLS_KEY})",
    )
    tls.add_argument(
        "--tls-cert",
        default=env.get(config.ENV_TLS_CERT),
        help=f"the page's certificate chain for mutual TLS (env {config.ENV_TLS_CERT})",
    )
    live = parser.add_argument_group(
        "live sources", "the streams and cameras the page's Live mode may open"
    )
    live.add_argument(
        "--live-source",
        action="append",
        default=None,
        metavar="NAME=URL",
        help="a stream or camera visitors may pick by NAME (they never see the URL); repeat "
        f"for several (env {config.ENV_LIVE_SOURCES}, space-separated)",
    )
    live.add_argument(
        "--allow-any-source",
        action="store_true",
        default=config.env_flag(env, config.ENV_ALLOW_ANY_SOURCE),
        help="let visitors type any stream address: "
        f"{', '.join(s + '://' for s in config.ANY_SOURCE_SCHEMES)}, on public hosts only "
        f"(env {config.ENV_ALLOW_ANY_SOURCE}=1)",
    )
    live.add_argument(
        "--allow-source-network",
        action="append",
        default=None,
        metavar="CIDR",
        help="a private network visitors' addresses may reach (e.g. 10.1.0.0/16); repeat for "
        f"several (env {config.ENV_ALLOW_SOURCE_NETWORKS}, space-separated)",
    )
    live.add_argument(
        "--max-fps",
        type=float,
        default=float(env.get(config.ENV_MAX_FPS) or config.DEFAULT_MAX_FPS),
        help=f"highest frame rate of a live source (env {config.ENV_MAX_FPS})",
    )
    live.add_argument(
        "--live-recording-mb",
        type=float,
        default=float(env.get(config.ENV_LIVE_RECORDING_MB) or config.DEFAULT_LIVE_RECORDING_MB),
        help="a live run stops when its recording and predictions reach this many MB (env "
        f"{config.ENV_LIVE_RECORDING_MB})",
    )
    live.add_argument(
        "--max-live-jobs",
        type=int,
        default=int(env.get(config.ENV_MAX_LIVE_JOBS) or config.DEFAULT_MAX_LIVE_JOBS),
        help=f"live streams going at once, over all visitors (env {config.ENV_MAX_LIVE_JOBS})",
    )
    live.add_argument(
        "--live-streams-per-session",
        type=int,
        default=int(
            env.get(config.ENV_LIVE_STREAMS_PER_SESSION) or config.DEFAULT_LIVE_STREAMS_PER_SESSION
        ),
        help="streams one visitor may run side by side over one server connection (env "
        f"{config.ENV_LIVE_STREAMS_PER_SESSION})",
    )
    camera = parser.add_argument_group(
        "camera", "the page's Camera mode: each visitor's own camera over WebRTC"
    )
    camera.add_argument(
        "--no-camera",
        dest="camera",
        action="store_false",
        default=config.env_flag(env, config.ENV_CAMERA, default=True),
        help=f"turn the Camera mode off (env {config.ENV_CAMERA}=0)",
    )
    camera.add_argument(
        "--max-cameras",
        type=int,
        default=int(env.get(config.ENV_MAX_CAMERAS) or config.DEFAULT_MAX_CAMERAS),
        help=f"cameras explained at once, over all visitors (env {config.ENV_MAX_CAMERAS})",
    )
    camera.add_argument(
        "--camera-ice-servers",
        default=env.get(config.ENV_CAMERA_ICE_SERVERS, ""),
        metavar="JSON",
        help="STUN/TURN servers for browsers behind NAT, as WebRTC's iceServers list, e.g. "
        '\'[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]\' '
        f"(env {config.ENV_CAMERA_ICE_SERVERS}; default none)",
    )
    camera.add_argument(
        "--camera-address",
        action="append",
        default=None,
        metavar="IP",
        help="an address of this machine offered to browsers for the camera's media; repeat "
        f"for several (env {config.ENV_CAMERA_ADDRESSES}; default all but loopback)",
    )
    limits = parser.add_argument_group("limits", "what a run accepts")
    limits.add_argument(
        "--max-seconds",
        type=float,
        default=float(env.get(config.ENV_MAX_SECONDS) or config.DEFAULT_MAX_SECONDS),
        help=f"longest video in seconds (env {config.ENV_MAX_SECONDS})",
    )
    limits.add_argument(
        "--max-frames",
        type=int,
        default=int(env.get(config.ENV_MAX_FRAMES) or config.DEFAULT_MAX_FRAMES),
        help=f"most frames in a video (env {config.ENV_MAX_FRAMES})",
    )
    limits.add_argument(
        "--max-resolution",
        type=config.parse_resolution,
        default=env.get(config.ENV_MAX_RESOLUTION)
        or "x".join(map(str, config.DEFAULT_MAX_RESOLUTION)),
        help=f"largest frame WIDTHxHEIGHT, either orientation (env {config.ENV_MAX_RESOLUTION})",
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
    """The page's environment: servers, wire, TLS, limits and session folder."""
    env = dict(os.environ if base is None else base)
    if args.url:
        env[config.ENV_URL] = " ".join(args.url)
        env.pop(config.ENV_METRICS_URL, None)  # those belonged to the environment's servers
    if args.metrics_url:
        env[config.ENV_METRICS_URL] = " ".join(args.metrics_url)
    env[config.ENV_ALLOW_ANY_URL] = "1" if args.allow_any_url else "0"
    env[config.ENV_TLS] = "1" if args.tls else "0"
    env[config.ENV_WIRE] = args.wire
    for name, value in (
        (config.ENV_TLS_CA, args.tls_ca),
        (config.ENV_TLS_KEY, args.tls_key),
        (config.ENV_TLS_CERT, args.tls_cert),
    ):
        if value:
            env[name] = str(Path(value).resolve())
    if args.live_source:
        env[config.ENV_LIVE_SOURCES] = " ".join(args.live_source)
    env[config.ENV_ALLOW_ANY_SOURCE] = "1" if args.allow_any_source else "0"
    if args.allow_source_network:
        env[config.ENV_ALLOW_SOURCE_NETWORKS] = " ".join(args.allow_source_network)
    env[config.ENV_MAX_LIVE_JOBS] = str(args.max_live_jobs)
    env[config.ENV_LIVE_STREAMS_PER_SESSION] = str(args.live_streams_per_session)
    env[config.ENV_MAX_FPS] = f"{args.max_fps:g}"
    env[config.ENV_LIVE_RECORDING_MB] = f"{args.live_recording_mb:g}"
    env[config.ENV_CAMERA] = "1" if args.camera else "0"
    env[config.ENV_MAX_CAMERAS] = str(args.max_cameras)
    env[config.ENV_CAMERA_ICE_SERVERS] = args.camera_ice_servers
    if args.camera_address:
        env[config.ENV_CAMERA_ADDRESSES] = " ".join(args.camera_address)
    width, height = args.max_resolution
    env[config.ENV_MAX_SECONDS] = f"{args.max_seconds:g}"
    env[config.ENV_MAX_FRAMES] = str(args.max_frames)
    env[config.ENV_MAX_RESOLUTION] = f"{width}x{height}"
    env[config.ENV_MAX_UPLOAD_MB] = f"{args.max_upload_mb:g}"
    env[config.ENV_MAX_AGE_H] = f"{args.session_max_age_hours:g}"
    if args.session_dir:
        env[config.ENV_DIR] = str(args.session_dir)
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and replace this process with the Streamlit server."""
    parser = build_parser()
    args = parser.parse_args(argv)
    positive = (args.max_upload_mb, args.session_max_age_hours, args.max_seconds, args.max_fps)
    counts = (args.max_frames, args.max_live_jobs, args.live_streams_per_session, args.max_cameras)
    if min(*positive, *counts, args.live_recording_mb) <= 0:
        parser.error(
            "--max-upload-mb, --session-max-age-hours, --max-seconds, --max-frames, "
            "--max-fps, --max-live-jobs, --live-streams-per-session, --max-cameras and "
            "--live-recording-mb must be positive"
        )
    environment = build_environment(args)
    try:  # the page would fail for every visitor: say so now (TLS files, live sources, networks)
        config.DashboardConfig.from_env(environment).connection()
    except ValueError as error:
        parser.error(str(error))
    command = build_command(args)
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main()
