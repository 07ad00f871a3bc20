"""The admin-API flags of `gradcam-server serve` (and so of the container), run on the real Triton
of the nvidia-pytriton wheel (2.51): serving works, admin APIs need the key, models cannot be
(un)loaded."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import tritonclient.grpc as grpcclient
from triton_server import running_triton, write_add_one_model
from tritonclient.utils import InferenceServerException

from gradcam_server.launcher import admin_flags

pytestmark = pytest.mark.integration

KEY = "test-admin-key"
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(server, path: str, body: bytes | None = None, key: str | None = None) -> int:
    headers = {"admin-key": key} if key else {}
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}", data=body, headers=headers, method=method
    )
    try:
        with _LOCAL.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    repository = tmp_path_factory.mktemp("repo")
    write_add_one_model(repository)
    flags = admin_flags(KEY)
    with running_triton(
        repository, extra_args=flags, log_dir=tmp_path_factory.mktemp("logs")
    ) as server:
        yield server


def test_serving_and_client_apis_stay_open(triton) -> None:
    assert http(triton, "/v2/health/ready") == 200
    assert http(triton, "/v2/repository/index", b"{}") == 200
    assert http(triton, "/v2/models/add_one/config") == 200
    assert http(triton, "/v2/models/add_one/stats") == 200
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    names = [m["name"] for m in client.get_model_repository_index(as_json=True)["models"]]
    assert names == ["add_one"]
    assert client.get_inference_statistics("add_one", as_json=True)["model_stats"]


@pytest.mark.parametrize(
    "path", ["/v2/logging", "/v2/trace/setting", "/v2/systemsharedmemory/status"]
)
def test_admin_apis_need_the_key(triton, path: str) -> None:
    assert http(triton, path) == 403
    assert http(triton, path, key="wrong") == 403
    assert http(triton, path, key=KEY) == 200


def test_grpc_admin_apis_need_the_key(triton) -> None:
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_log_settings()
    # Triton reads the key of a restricted gRPC protocol from this metadata entry.
    settings = client.get_log_settings(
        headers={"triton-grpc-protocol-admin-key": KEY}, as_json=True
    )
    assert "log_verbose_level" in json.dumps(settings)


def test_models_cannot_be_loaded_or_unloaded(triton) -> None:
    assert http(triton, "/v2/repository/models/add_one/unload", b"{}") != 200
    assert http(triton, "/v2/repository/models/add_one/load", b"{}") != 200
    client = grpcclient.InferenceServerClient(triton.urls.grpc)
    with pytest.raises(InferenceServerException):
        client.unload_model("add_one")
    assert client.is_model_ready("add_one")
