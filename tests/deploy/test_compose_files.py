"""docker-compose accepts the stacks, and they, the Dockerfile, `docker/triton.env` and the
local launcher agree on ports, settings, model names and the repository.

Plain `docker compose up` is the CPU stack (docker-compose.yml); the GPU stack adds
docker-compose.gpu.yml, which may only change the TensorFlow wheel and the image tag and add the
GPU reservation, on the same Debian base. The images themselves are
built and run by tests/containers/.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from deploy_support import ROOT, STACKS, compose_config, parse_yaml
from readme_blocks import readme_commands

from gradcam_server import cli as server_cli
from gradcam_server.first_start import BUILTIN_MODELS
from gradcam_server.launcher import RESTRICTED_APIS, TritonServer

DOCKERFILE = ROOT / "docker" / "Dockerfile"
CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def env_file() -> dict[str, str]:
    """docker/triton.env as docker-compose reads it (KEY=VALUE, # comments)."""
    values = {}
    for line in (ROOT / "docker" / "triton.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def ports_of(service: dict[str, Any]) -> dict[int, str]:
    """Container port -> host address it is published on (long or short syntax)."""
    ports = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = entry.get("host_ip", "")
        else:
            host_ip, _, target = str(entry).split("/")[0].rsplit(":", 2)
            ports[int(target)] = host_ip
    return ports


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume (long or short syntax)."""
    return [
        (v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
        for v in service.get("volumes", [])
    ]


def stage(name: str) -> str:
    """The text of one stage of the Dockerfile."""
    text = DOCKERFILE.read_text()
    return text.split(f" AS {name}\n", 1)[1].split("\nFROM ", 1)[0]


def pins() -> dict[str, str]:
    lines = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line)


@pytest.mark.parametrize("variant", sorted(STACKS))
def test_docker_compose_accepts_the_stack(variant: str) -> None:
    text = compose_config(STACKS[variant])
    assert "triton:" in text and "dashboard:" in text


def test_plain_compose_up_is_the_cpu_stack(compose) -> None:
    """`docker compose up` with no flags reads docker-compose.yml: no GPU, no NVIDIA image."""
    plain = parse_yaml(compose_config([], cwd=ROOT))
    assert plain == compose["cpu"]
    triton = plain["services"]["triton"]
    assert "deploy" not in triton and "NVIDIA" not in str(plain)
    assert triton["build"]["args"]["TENSORFLOW"] == f"tensorflow-cpu=={pins()['tensorflow-cpu']}"
    assert triton["image"] == "gradcam-triton:cpu"
    assert not (ROOT / "docker-compose.override.yml").exists()  # Compose would read it too


def test_the_gpu_stack_differs_only_in_the_wheel_and_the_gpus(compose) -> None:
    gpu = copy.deepcopy(compose["gpu"])
    cpu = copy.deepcopy(compose["cpu"])
    devices = gpu["services"]["triton"].pop("deploy")["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    tensorflow = pins()["tensorflow-cpu"]
    for config, wheel, tag in (
        (gpu, f"tensorflow[and-cuda]=={tensorflow}", "gpu"),
        (cpu, f"tensorflow-cpu=={tensorflow}", "cpu"),
    ):
        triton = config["services"]["triton"]
        assert triton["build"]["args"].pop("TENSORFLOW") == wheel
        assert triton["image"] == f"gradcam-triton:{tag}"
        triton["image"] = "-"
        triton["ports"] = sorted(triton["ports"], key=str)  # merging may reorder them
    assert gpu == cpu  # the base image included: the slim Debian one


def test_the_readme_starts_these_stacks() -> None:
    """The README's Compose commands: plain `up` (the CPU stack) and the GPU files, in order."""
    _, plain, (gpu,) = readme_commands("Run it in containers")
    assert plain[0] == "docker compose up -d --build"
    files = gpu.split(" up ")[0].split()[3::2]
    assert [ROOT / name for name in files] == STACKS["gpu"]


def test_the_gpu_override_keeps_the_slim_base_or_says_why() -> None:
    """The override adds only what a GPU needs; a base image of its own needs a reason beside it."""
    path = ROOT / "docker-compose.gpu.yml"
    override = parse_yaml(path.read_text())
    assert set(override) == {"services"} and set(override["services"]) == {"triton"}
    triton = override["services"]["triton"]
    assert set(triton) == {"build", "image", "deploy"}
    assert set(triton["build"]) == {"args"}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("BASE_IMAGE:"):
            assert lines[number - 1].strip().startswith("#"), "a GPU base image needs a reason"
    assert set(triton["build"]["args"]) <= {"TENSORFLOW", "BASE_IMAGE"}


def test_dockerfile_defaults_are_the_cpu_image(compose) -> None:
    text = DOCKERFILE.read_text()
    args = compose["cpu"]["services"]["triton"]["build"]["args"]
    assert f"ARG BASE_IMAGE={args['BASE_IMAGE']}" in text
    assert f"ARG TENSORFLOW={args['TENSORFLOW']}" in text
    for variant in STACKS:
        for service in ("triton", "dashboard"):
            build = compose[variant]["services"][service]["build"]
            assert build["target"] == service and build["dockerfile"] == "docker/Dockerfile"
            # scripts/compose.sh sets none when wheelhouse/ holds every package
            assert build["network"] == "default"


@pytest.mark.parametrize("variant", sorted(STACKS))
def test_ports_agree(compose, variant: str) -> None:
    services = compose[variant]["services"]
    # The local launcher and `gradcam-server serve` use the container's ports ...
    server = TritonServer(ROOT, log_path=ROOT / "unused.log")
    serve = server_cli.build_parser().parse_args(["serve"])
    for name, port in CONTAINER_PORTS.items():
        assert getattr(server, f"{name}_port") == getattr(serve, f"{name}_port") == port
        assert re.search(
            rf"^{name.upper()}_PORT \?= {port}$", (ROOT / "Makefile").read_text(), re.M
        )
    exposed = re.search(r"^EXPOSE (.+)$", stage("triton"), re.MULTILINE)
    assert exposed and sorted(map(int, exposed.group(1).split())) == sorted(
        CONTAINER_PORTS.values()
    )
    assert "8000/v2/health/ready" in stage("triton")
    # ... and only gRPC is published beyond this host (unless GRADCAM_BIND says otherwise).
    grpc, http, metrics = (CONTAINER_PORTS[n] for n in ("grpc", "http", "metrics"))
    assert ports_of(services["triton"]) == {
        grpc: "0.0.0.0",
        http: "127.0.0.1",
        metrics: "127.0.0.1",
    }
    dashboard = services["dashboard"]
    assert dashboard["environment"]["GRADCAM_URL"] == f"triton:{grpc}"
    assert dashboard["environment"]["GRADCAM_METRICS_URL"] == f"http://triton:{metrics}/metrics"
    assert ports_of(dashboard) == {8501: "0.0.0.0"}
    assert '"--port", "8501"' in stage("dashboard") and "8501/_stcore/health" in stage("dashboard")


@pytest.mark.parametrize("variant", sorted(STACKS))
def test_services_and_settings(compose, variant: str) -> None:
    config = compose[variant]
    triton = config["services"]["triton"]
    settings = env_file()
    for key, value in settings.items():
        assert str(triton["environment"][key]) == value, key
    assert triton["environment"]["GRADCAM_ADMIN_KEY"] == ""
    # Every setting of triton.env is an option default of `gradcam-server serve` or TensorFlow's.
    serve_source = (ROOT / "server" / "src" / "gradcam_server" / "cli.py").read_text()
    for key in settings:
        assert key.startswith("TF_") or f'"{key}"' in serve_source, key
    assert set(settings["GRADCAM_EXPORT_MODELS"].split(",")) <= set(BUILTIN_MODELS)
    assert settings["GRADCAM_RESTRICTED_APIS"] == ",".join(RESTRICTED_APIS)
    # The repository is ./model_repository, mounted where the image's command serves it.
    assert mounts_of(triton) == [(str(ROOT / "model_repository"), "/models")]
    assert '"--repository", "/models"' in stage("triton")
    assert config.get("volumes") in (None, {})
    size = str(triton["shm_size"]).lower()
    assert float(re.match(r"[\d.]+", size).group()) * {"g": 1024, "m": 1}[size[-2]] >= 512
    assert triton["restart"] == config["services"]["dashboard"]["restart"] == "unless-stopped"
    assert config["services"]["dashboard"]["depends_on"]["triton"]["condition"] == (
        "service_healthy"
    )


def test_images_install_what_they_need() -> None:
    build = stage("build")
    assert 'requirements_of.py triton "${TENSORFLOW}"' in build
    assert "requirements_of.py dashboard >" in build
    assert "--root /opt/own/triton ./client ./server" in build
    assert "--root /opt/own/dashboard ./client ./dashboard" in build
    assert build.count("-c requirements/constraints.txt") == 2
    assert "--no-index --find-links /wheelhouse" in build
    for name in ("triton", "dashboard"):
        final = stage(name)
        assert f"COPY --from=build /opt/own/{name}/ /" in final and "wheelhouse" not in final
    assert "USER gradcam" in stage("dashboard")
    assert 'gradcam-server", "serve"' in stage("triton")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "**/.venv" in ignored and "model_repository" in ignored


def test_model_names_agree() -> None:
    """The image exports the exporter's default model, which is also the client's, the
    Makefile's and the demo's."""
    from gradcam_client import cli as client_cli

    export_default = server_cli.build_parser().parse_args(["export"]).model
    assert env_file()["GRADCAM_EXPORT_MODELS"] == export_default == "efficientnet-lite0"
    assert export_default == client_cli.DEFAULT_MODEL
    assert re.search(rf"^MODEL \?= {export_default}$", (ROOT / "Makefile").read_text(), re.M)
