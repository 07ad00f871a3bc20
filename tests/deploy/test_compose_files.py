"""docker-compose accepts the compose files, and they, the Dockerfiles, the image's entry point
and the local launcher agree on ports, model names and the repository layout.

`docker/triton.env` is the one place for the container's settings: the entry point reads it,
docker-compose passes it (env_file), and these tests hold everything else to it.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_support import COMPOSE_FILES, ROOT, compose_config

from gradcam_server import cli as server_cli
from gradcam_server.launcher import TritonServer

TRITON_DOCKERFILE = ROOT / "docker" / "triton.Dockerfile"
DASHBOARD_DOCKERFILE = ROOT / "docker" / "dashboard.Dockerfile"


def env_file(entrypoint) -> dict[str, str]:
    return entrypoint.read_env_file(ROOT / "docker" / "triton.env")


def container_ports(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> host address it is published on ("" = every interface)."""
    ports: dict[int, str] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = entry.get("host_ip", "")
        else:
            parts = str(entry).split("/")[0].split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            ports[int(parts[-1])] = host_ip
    return ports


def published_as_is(service: dict[str, Any]) -> bool:
    """Every port is published on the same host port number."""
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if int(entry["published"]) != int(entry["target"]):
                return False
        else:
            parts = str(entry).split("/")[0].split(":")
            if parts[-2] != parts[-1]:
                return False
    return True


def dockerfile_args(path: Path) -> dict[str, str]:
    return {
        m.group(1): m.group(2).strip('"')
        for m in re.finditer(r"^ARG (\w+)=(\S+)", path.read_text(), re.MULTILINE)
    }


@pytest.mark.parametrize("variant", sorted(COMPOSE_FILES))
def test_docker_compose_accepts_the_file(variant: str) -> None:
    text = compose_config(COMPOSE_FILES[variant])
    assert "triton:" in text and "dashboard:" in text


def test_gpu_file_reserves_gpus_and_cpu_file_does_not(compose) -> None:
    gpu = compose["gpu"]["services"]["triton"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert "deploy" not in compose["cpu"]["services"]["triton"]
    assert "gpu" not in str(compose["cpu"]["services"]["triton"].get("deploy", ""))


def test_cpu_file_differs_only_where_it_must(compose) -> None:
    """docker-compose.cpu.yml is docker-compose.yml without the GPU: nothing else drifts."""
    gpu = copy.deepcopy(compose["gpu"])
    cpu = copy.deepcopy(compose["cpu"])
    del gpu["services"]["triton"]["deploy"]
    for config, wheel, tag in (
        (gpu, "tensorflow[and-cuda]", "gpu"),
        (cpu, "tensorflow-cpu", "cpu"),
    ):
        triton = config["services"]["triton"]
        assert triton["build"]["args"]["TENSORFLOW"].startswith(wheel + "==")
        assert triton["image"].endswith(f"-{tag}")
        triton["build"]["args"]["TENSORFLOW"] = triton["image"] = "-"
    assert gpu == cpu


def test_versions_match_the_dockerfile_and_constraints(compose) -> None:
    args = dockerfile_args(TRITON_DOCKERFILE)
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3" in TRITON_DOCKERFILE.read_text()
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    tensorflow = pins["tensorflow-cpu"]
    assert args["TENSORFLOW"] == f"tensorflow[and-cuda]=={tensorflow}"
    for variant in ("gpu", "cpu"):
        build = compose[variant]["services"]["triton"]["build"]
        assert build["args"]["TRITON_RELEASE"] == args["TRITON_RELEASE"]
        assert build["args"]["TENSORFLOW"].endswith(f"=={tensorflow}")
        assert compose[variant]["services"]["triton"]["image"].startswith(
            f"gradcam-triton:{args['TRITON_RELEASE']}-"
        )


@pytest.mark.parametrize("variant", sorted(COMPOSE_FILES))
def test_ports_agree(compose, entrypoint, variant: str) -> None:
    settings = env_file(entrypoint)
    http, grpc, metrics = (
        int(settings[f"GRADCAM_{name}_PORT"]) for name in ("HTTP", "GRPC", "METRICS")
    )
    # The local launcher, `gradcam-server serve`, the demo and the Makefile use the same ports.
    server = TritonServer(ROOT, log_path=ROOT / "unused.log")
    assert (server.http_port, server.grpc_port, server.metrics_port) == (http, grpc, metrics)
    serve = server_cli.build_parser().parse_args(["serve"])
    assert (serve.http_port, serve.grpc_port, serve.metrics_port) == (http, grpc, metrics)
    makefile = (ROOT / "Makefile").read_text()
    for name, port in (("HTTP", http), ("GRPC", grpc), ("METRICS", metrics)):
        assert re.search(rf"^{name}_PORT \?= {port}$", makefile, re.MULTILINE)
    exposed = re.search(r"^EXPOSE (.+)$", TRITON_DOCKERFILE.read_text(), re.MULTILINE)
    assert exposed and sorted(map(int, exposed.group(1).split())) == sorted([http, grpc, metrics])

    services = compose[variant]["services"]
    triton = services["triton"]
    # Clients need gRPC only; HTTP and metrics stay on the host.
    assert container_ports(triton) == {grpc: "", http: "127.0.0.1", metrics: "127.0.0.1"}
    assert published_as_is(triton)
    health = " ".join(triton["healthcheck"]["test"])
    assert f"http://localhost:{http}/v2/health/ready" in health

    dashboard = services["dashboard"]
    assert dashboard["environment"]["GRADCAM_URL"] == f"triton:{grpc}"
    assert dashboard["environment"]["GRADCAM_METRICS_URL"] == f"http://triton:{metrics}/metrics"
    cmd = re.search(r"^CMD (.+)$", DASHBOARD_DOCKERFILE.read_text(), re.MULTILINE)
    assert cmd and '"--port", "8501"' in cmd.group(1)
    assert container_ports(dashboard) == {8501: ""}
    assert f"localhost:{8501}/_stcore/health" in " ".join(dashboard["healthcheck"]["test"])


@pytest.mark.parametrize("variant", sorted(COMPOSE_FILES))
def test_services_and_settings(compose, entrypoint, variant: str) -> None:
    settings = env_file(entrypoint)
    config = compose[variant]
    triton = config["services"]["triton"]
    env = triton["environment"]
    # env_file passes docker/triton.env; the compose defaults do not contradict it.
    for key, value in settings.items():
        if key != "GRADCAM_EXPORT_MODEL":
            assert str(env[key]) == value, key
    assert env["GRADCAM_EXPORT_MODEL"] == settings["GRADCAM_EXPORT_MODEL"] == "auto"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert env["GRADCAM_ADMIN_KEY"] == ""

    # The repository is a named volume mounted where the entry point exports and Triton reads.
    mounts = [v for v in triton["volumes"] if isinstance(v, str) or v.get("type") == "volume"]
    targets = {
        (v.split(":")[0], v.split(":")[1]) if isinstance(v, str) else (v["source"], v["target"])
        for v in mounts
    }
    assert ("models", settings["GRADCAM_MODEL_REPOSITORY"]) in targets
    assert "models" in config["volumes"]

    size = str(triton["shm_size"]).lower()
    number = float(re.match(r"[\d.]+", size).group())
    assert number * {"g": 1024, "m": 1}[re.search(r"[gm]", size).group()] >= 1024, size

    depends = config["services"]["dashboard"]["depends_on"]
    assert depends["triton"]["condition"] == "service_healthy"


def test_model_names_agree(entrypoint) -> None:
    """The image exports the built-in models of `gradcam-server export`, and its offline choice
    is the default of the exporter, the client, the Makefile and the demo."""
    from gradcam_client import cli as client_cli

    assert set(entrypoint.EXPORT_CHOICES) == {"auto", "none", *server_cli.BUILTIN_MODELS}
    export_default = server_cli.build_parser().parse_args(["export"]).model
    assert entrypoint.OFFLINE_MODEL == export_default == "efficientnet-lite0"
    if "GRADCAM_MODEL" not in os.environ:
        assert client_cli.build_parser().parse_args(["x", "-o", "y"]).model == export_default
    assert re.search(
        rf"^MODEL \?= {export_default}$", (ROOT / "Makefile").read_text(), re.MULTILINE
    )


def test_vgg16_probe_url_is_the_one_keras_downloads() -> None:
    from keras.src.applications import vgg16

    from gradcam_server import model_sources  # noqa: F401  (the exporter's own import path)

    entrypoint_text = (ROOT / "docker" / "triton_entrypoint.py").read_text()
    url = vgg16.WEIGHTS_PATH
    assert url.split("/")[-1] in entrypoint_text and "keras-applications/vgg16/" in entrypoint_text


def test_images_install_what_they_need() -> None:
    triton = TRITON_DOCKERFILE.read_text()
    assert "./client ./server" in triton and "-c requirements/constraints.txt" in triton
    assert "COPY docker/triton.env docker/triton_entrypoint.py /opt/gradcam/" in triton
    assert "/opt/gradcam/triton_entrypoint.py" in triton.split("ENTRYPOINT", 1)[1]
    dashboard = DASHBOARD_DOCKERFILE.read_text()
    assert "./client ./dashboard" in dashboard
    installs = [line for line in dashboard.splitlines() if "pip install" in line]
    assert installs and not any("tensorflow" in line for line in installs)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "**/.venv" in ignored and "model_repository" in ignored
