"""deploy/: the replicas-behind-Envoy compose file, the Envoy config and the Kubernetes files
agree with the image (ports, health endpoint, settings)."""

from __future__ import annotations

from pathlib import Path

from deploy_support import ROOT, compose_config, parse_yaml

from gradcam_server.cli import build_parser
from gradcam_server.first_start import BUILTIN_MODELS

DEPLOY = ROOT / "deploy"
SERVE = build_parser().parse_args(["serve"])
PORTS = {"GRADCAM_GRPC_PORT": SERVE.grpc_port, "GRADCAM_HTTP_PORT": SERVE.http_port}


def env_file() -> dict[str, str]:
    lines = (ROOT / "docker" / "triton.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def yaml_documents(path: Path) -> list:
    return [parse_yaml(part) for part in path.read_text().split("\n---\n") if part.strip()]


def test_replicas_compose_is_accepted_and_points_at_envoy() -> None:
    settings = PORTS
    config = parse_yaml(compose_config(DEPLOY / "envoy" / "docker-compose.replicas.yml"))
    services = config["services"]
    replicas = [name for name in services if name.startswith("triton-")]
    assert replicas == ["triton-0", "triton-1"]
    gpus = [
        services[name]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        for name in replicas
    ]
    assert gpus == [["0"], ["1"]]
    for name in replicas:
        assert "ports" not in services[name]  # reached through Envoy only
        assert services[name]["build"]["target"] == "triton"
        assert [v.split(":")[1] for v in services[name]["volumes"]] == ["/models"]
    assert services["triton-1"]["environment"]["GRADCAM_EXPORT_MODELS"] == ""
    grpc = settings["GRADCAM_GRPC_PORT"]
    assert services["dashboard"]["environment"]["GRADCAM_URL"] == f"envoy:{grpc}"
    published = services["envoy"]["ports"][0]
    assert int(published["target"]) == int(published["published"]) == int(grpc)


def test_envoy_round_robins_grpc_requests_over_ready_replicas() -> None:
    settings = PORTS
    envoy = parse_yaml((DEPLOY / "envoy" / "envoy.yaml").read_text())
    listener = envoy["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == int(settings["GRADCAM_GRPC_PORT"])
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["timeout"] == "0s" and "unavailable" in route["retry_policy"]["retry_on"]
    (cluster,) = envoy["static_resources"]["clusters"]
    assert route["cluster"] == cluster["name"]
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    options = cluster["typed_extension_protocol_options"]
    http2 = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http2["explicit_http_config"]  # one request per stream
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    hosts = [e["endpoint"]["address"]["socket_address"] for e in endpoints]
    assert [h["address"] for h in hosts] == ["triton-0", "triton-1"]
    assert {h["port_value"] for h in hosts} == {int(settings["GRADCAM_GRPC_PORT"])}
    health_ports = {e["endpoint"]["health_check_config"]["port_value"] for e in endpoints}
    assert health_ports == {int(settings["GRADCAM_HTTP_PORT"])}
    assert cluster["health_checks"][0]["http_health_check"]["path"] == "/v2/health/ready"


def test_kubernetes_files_use_the_image_and_its_settings() -> None:
    settings = {**env_file(), **PORTS}
    config_map, secret = yaml_documents(DEPLOY / "k8s" / "gradcam-config.yaml")
    assert config_map["kind"] == "ConfigMap" and secret["kind"] == "Secret"
    assert set(config_map["data"]) <= {*settings, "GRADCAM_MODEL_REPOSITORY"}
    assert set(config_map["data"]["GRADCAM_EXPORT_MODELS"].split(",")) <= set(BUILTIN_MODELS)
    assert set(secret["stringData"]) == {"GRADCAM_ADMIN_KEY"}
    repository = config_map["data"]["GRADCAM_MODEL_REPOSITORY"]

    values = parse_yaml((DEPLOY / "k8s" / "helm-values.yaml").read_text())
    assert values["image"]["imageName"].endswith("/gradcam-triton:gpu")
    assert f"--model-repository={repository}" in values["serverArgs"]
    mounts = {m["name"]: m["mountPath"] for m in values["volumeMounts"]}
    assert mounts == {"models": repository, "dshm": "/dev/shm"}
    refs = [next(iter(ref.values()))["name"] for ref in values["envFrom"]]
    assert refs == [config_map["metadata"]["name"], secret["metadata"]["name"]]
    ports = values["traefik"]["ports"]
    assert ports["triton-grpc"]["exposedPort"] == int(settings["GRADCAM_GRPC_PORT"])
    assert ports["triton-grpc"]["expose"] and not ports["triton-http"]["expose"]

    service = parse_yaml((DEPLOY / "k8s" / "kserve-inferenceservice.yaml").read_text())
    (container,) = service["spec"]["predictor"]["containers"]
    assert container["image"] == values["image"]["imageName"]
    assert container["args"][0] == "tritonserver"
    assert container["ports"] == [
        {"name": "h2c", "containerPort": int(settings["GRADCAM_GRPC_PORT"]), "protocol": "TCP"}
    ]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {repository, "/dev/shm"}
