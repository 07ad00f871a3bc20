"""Entry point of the Grad-CAM Triton image: export the model repository if absent, run Triton.

Usage (inside the container; the image's ENTRYPOINT):

    triton_entrypoint.py [tritonserver] [TRITON FLAGS ...]   export if needed, then serve
    triton_entrypoint.py export                              export if needed, then exit

Settings come from `triton.env` next to this file, overridden by the environment (see that file).
Flags given on the command line (e.g. the `serverArgs` of NVIDIA's Helm chart, which start with
`tritonserver`) replace the defaults of the same name.

Runs on the container's own Python, the one Triton's python backend embeds, so the exporter and
the served model use the same TensorFlow and the same `gradcam_server`.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ENV_FILE = Path(__file__).with_name("triton.env")
EXPORT_CHOICES = ("auto", "vgg16", "efficientnet-lite0", "none")
OFFLINE_MODEL = "efficientnet-lite0"
# Where Keras downloads the VGG16 ImageNet weights from (keras.applications.vgg16.WEIGHTS_PATH).
VGG16_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
ADMIN_HEADER = "admin-key"


def log(message: str) -> None:
    print(f"[gradcam-entrypoint] {message}", file=sys.stderr, flush=True)


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines (no quoting, `#` comments), as docker-compose's env_file reads them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path = ENV_FILE
) -> dict[str, str]:
    """The defaults of `triton.env`, each overridden by a non-empty environment variable."""
    environ = os.environ if environ is None else environ
    settings = read_env_file(env_file)
    for key in list(settings):
        if environ.get(key):
            settings[key] = environ[key]
    for key in ("GRADCAM_ADMIN_KEY", "GRADCAM_VGG16_WEIGHTS"):
        settings[key] = environ.get(key, "")
    return settings


def models_in(repository: Path) -> list[str]:
    """The models of a repository, found as `gradcam-server serve` finds them."""
    from gradcam_server.launcher import find_models

    return find_models(repository) if repository.is_dir() else []


def can_download(url: str = VGG16_WEIGHTS_URL, timeout: float = 10.0) -> bool:
    """Whether `url` answers within `timeout` seconds (a blocked network must not hang us)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status < 400
    except (OSError, ValueError):
        return False


def export_plan(
    choice: str, vgg16_weights: str = "", online: Callable[[], bool] = can_download
) -> list[str]:
    """The models to try, in order, for GRADCAM_EXPORT_MODEL=`choice`."""
    if choice not in EXPORT_CHOICES:
        raise ValueError(
            f"GRADCAM_EXPORT_MODEL={choice!r}: choose one of {', '.join(EXPORT_CHOICES)}"
        )
    if choice == "none":
        return []
    if choice != "auto":
        return [choice]
    if vgg16_weights or online():
        return ["vgg16", OFFLINE_MODEL]
    log("the VGG16 weights cannot be downloaded from here: exporting the offline default")
    return [OFFLINE_MODEL]


def export_command(model: str, settings: Mapping[str, str]) -> list[str]:
    """`gradcam-server export` for one built-in model, on this Python."""
    command = [
        sys.executable,
        "-m",
        "gradcam_server.cli",
        "export",
        "--model",
        model,
        "--repository",
        settings["GRADCAM_MODEL_REPOSITORY"],
        *shlex.split(settings.get("GRADCAM_EXPORT_ARGS", "")),
    ]
    if model == "vgg16" and settings.get("GRADCAM_VGG16_WEIGHTS"):
        command += ["--weights", settings["GRADCAM_VGG16_WEIGHTS"]]
    return command


def ensure_repository(
    settings: Mapping[str, str],
    run: Callable[[list[str]], int] = lambda command: subprocess.call(command),
    online: Callable[[], bool] = can_download,
) -> str | None:
    """Export a model unless the repository already holds one; returns the exported name.

    Raises RuntimeError if every candidate failed or an empty repository must not be filled.
    """
    repository = Path(settings["GRADCAM_MODEL_REPOSITORY"])
    names = models_in(repository)
    if names:
        log(f"{repository} holds {', '.join(names)}: nothing to export")
        return None
    plan = export_plan(
        settings["GRADCAM_EXPORT_MODEL"], settings.get("GRADCAM_VGG16_WEIGHTS", ""), online
    )
    if not plan:
        raise RuntimeError(f"{repository} holds no model and GRADCAM_EXPORT_MODEL=none")
    for model in plan:
        log(f"exporting {model} into {repository} (first start) ...")
        if run(export_command(model, settings)) == 0:
            return model
        log(f"exporting {model} failed")
    raise RuntimeError(f"could not export any of {', '.join(plan)} into {repository}")


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def triton_command(
    settings: Mapping[str, str], user_args: Sequence[str] = (), admin_key: str | None = None
) -> list[str]:
    """The tritonserver command line: our defaults, then GRADCAM_TRITON_ARGS and `user_args`,
    a later flag replacing an earlier one of the same name."""
    key = admin_key or settings.get("GRADCAM_ADMIN_KEY") or secrets.token_urlsafe(24)
    defaults = [
        f"--model-repository={settings['GRADCAM_MODEL_REPOSITORY']}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--exit-timeout-secs=30",
        f"--http-port={settings['GRADCAM_HTTP_PORT']}",
        f"--grpc-port={settings['GRADCAM_GRPC_PORT']}",
        f"--metrics-port={settings['GRADCAM_METRICS_PORT']}",
    ]
    restricted = settings.get("GRADCAM_RESTRICTED_APIS", "").strip()
    if restricted:
        defaults += [
            f"--grpc-restricted-protocol={restricted}:{ADMIN_HEADER}={key}",
            f"--http-restricted-api={restricted}:{ADMIN_HEADER}={key}",
        ]
    extra = [*shlex.split(settings.get("GRADCAM_TRITON_ARGS", "")), *user_args]
    overridden = {_flag_name(arg) for arg in extra if arg.startswith("--")}
    kept = [arg for arg in defaults if _flag_name(arg) not in overridden]
    return ["tritonserver", *kept, *extra]


def describe(command: Sequence[str]) -> str:
    """The command line with restricted-API keys hidden."""
    shown = []
    for arg in command:
        if "-restricted-" in arg and f"{ADMIN_HEADER}=" in arg:
            arg = arg.split(f"{ADMIN_HEADER}=", 1)[0] + f"{ADMIN_HEADER}=***"
        shown.append(arg)
    return shlex.join(shown)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    export_only = bool(args) and args[0] == "export"
    if args and args[0] in ("export", "tritonserver"):
        args = args[1:]
    try:
        settings = load_settings()
        ensure_repository(settings)
    except (RuntimeError, ValueError, OSError) as error:
        log(f"error: {error}")
        return 1
    if export_only:
        return 0
    command = triton_command(settings, args)
    if not settings.get("GRADCAM_ADMIN_KEY") and settings.get("GRADCAM_RESTRICTED_APIS"):
        log(
            f"APIs {settings['GRADCAM_RESTRICTED_APIS']} are closed "
            "(set GRADCAM_ADMIN_KEY to reach them with the header admin-key)"
        )
    log(describe(command))
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
