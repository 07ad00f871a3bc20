"""An L7 balancer really spreads one client's gRPC requests over replicas: NGINX, configured by
deploy/nginx/grpc-balancer.conf, in front of two real Triton servers; gradcam-video talks to
the balancer only. Needs Debian's nginx (`apt-get install nginx-light`); skipped without it."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient
from deploy_support import DEPLOY_MODEL, ROOT
from triton_server import free_port, running_triton, write_add_one_model

from gradcam_client import cli

pytestmark = pytest.mark.integration

CONFIG = ROOT / "deploy" / "nginx" / "grpc-balancer.conf"


def nginx_config(upstreams: list[str], port: int) -> str:
    """The deploy config with these replicas and this listening port."""
    text = CONFIG.read_text()
    servers = iter(upstreams)
    text = re.sub(
        r"server triton-\d+:8001", lambda _: f"server {next(servers)}", text, count=len(upstreams)
    )
    assert next(servers, None) is None, "the config lists fewer replicas than the test"
    return text.replace("listen 8001 http2;", f"listen 127.0.0.1:{port} http2;")


@pytest.fixture
def balancer(tmp_path) -> Iterator:
    """A function starting NGINX in front of the given replicas; returns its gRPC address."""
    binary = shutil.which("nginx")
    if binary is None:
        pytest.skip("nginx is not on PATH (scripts/system-deps.sh installs nginx-light)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(upstreams: list[str]) -> str:
        port = free_port()
        prefix = tmp_path / "nginx"
        (prefix / "logs").mkdir(parents=True)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(upstreams, port))
        command = [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(conf),
            "-g",
            f"daemon off; pid {prefix / 'nginx.pid'}; error_log {prefix / 'logs' / 'error.log'};",
        ]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        processes.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return f"127.0.0.1:{port}"
            assert processes[-1].poll() is None, (prefix / "logs" / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.1)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def success_count(url: str, model: str) -> int:
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        return int(stats["inference_stats"]["success"].get("count", 0))
    finally:
        client.close()


def test_deploy_config_is_accepted_by_nginx(balancer, tmp_path) -> None:
    """The config file parses (nginx -t) with the test's replicas; nothing is contacted."""
    address = balancer(["127.0.0.1:1", "127.0.0.1:2"])
    assert address.startswith("127.0.0.1:")


def test_one_connection_is_spread_over_both_replicas(balancer, tmp_path) -> None:
    import numpy as np

    repository = tmp_path / "repo"
    write_add_one_model(repository)
    logs = tmp_path / "logs"
    with (
        running_triton(repository, log_dir=logs) as first,
        running_triton(repository, log_dir=logs) as second,
    ):
        replicas = [first.urls.grpc, second.urls.grpc]
        address = balancer(replicas)
        client = grpcclient.InferenceServerClient(address)  # one channel, one connection
        for i in range(20):
            data = np.full((1, 4), i, np.float32)
            request = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
            request.set_data_from_numpy(data)
            result = client.infer("add_one", [request]).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(result, data + 1)
        client.close()
        counts = [success_count(url, "add_one") for url in replicas]
    assert sum(counts) == 20
    assert min(counts) >= 8, counts  # round robin per request, not per connection


@pytest.mark.slow
def test_gradcam_video_through_the_balancer(balancer, deploy_repository, tmp_path) -> None:
    from gradcam_client.media.samples import write_sample_clip

    clip = write_sample_clip(tmp_path / "clip.mp4", seconds=1.0, fps=16, size=(224, 160))
    logs = tmp_path / "logs"
    with (
        running_triton(deploy_repository, log_dir=logs) as first,
        running_triton(deploy_repository, log_dir=logs) as second,
    ):
        replicas = [first.urls.grpc, second.urls.grpc]
        before = [success_count(url, DEPLOY_MODEL) for url in replicas]
        address = balancer(replicas)
        predictions = tmp_path / "out.jsonl"
        argv = [str(clip), "-o", str(tmp_path / "out.mp4"), "--url", address]
        argv += ["--model", DEPLOY_MODEL, "--predictions", str(predictions)]
        assert cli.main([*argv, "--batch-size", "2", "--max-in-flight", "2", "-q"]) == 0
        served = [
            success_count(url, DEPLOY_MODEL) - b for url, b in zip(replicas, before, strict=True)
        ]
    assert len(predictions.read_text().splitlines()) == 16
    assert all(count > 0 for count in served), served
