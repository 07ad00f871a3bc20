"""The dashboard over (mutual) TLS to a real Triton started with its TLS flags.

The certificates (a CA, the server's for localhost, the dashboard's own) come from
`tls_certs`, the tests' private certificate authority.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from media import write_clip
from streamlit.testing.v1 import AppTest
from tls_certs import TlsFiles, triton_tls_args, write_tls_files
from triton_server import running_triton

import gradcam_dashboard
from gradcam_dashboard import jobs, servers
from gradcam_dashboard.config import DashboardConfig

pytestmark = pytest.mark.integration

APP = Path(gradcam_dashboard.__file__).with_name("app.py")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> TlsFiles:
    return write_tls_files(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def tls_triton(model_repository, certificates, tmp_path_factory):
    """A Triton (only `tiny`) whose gRPC endpoint wants TLS and a client certificate."""
    folder = tmp_path_factory.mktemp("tls-triton")
    shutil.copytree(model_repository / "tiny", folder / "repository" / "tiny")
    flags = triton_tls_args(certificates, mutual=True)
    with running_triton(folder / "repository", log_dir=folder, extra_args=flags) as server:
        yield server


def tls_env(certificates: TlsFiles, client: bool = True) -> dict[str, str]:
    env = {"GRADCAM_TLS_CA": str(certificates.ca)}
    if client:
        env["GRADCAM_TLS_KEY"] = str(certificates.client_key)
        env["GRADCAM_TLS_CERT"] = str(certificates.client_cert)
    return env


def test_the_page_talks_mutual_tls_to_a_tls_triton(
    tls_triton, certificates, page_env, monkeypatch, tmp_path
):
    url = tls_triton.urls.grpc
    config = DashboardConfig.from_env({"GRADCAM_URL": url, **tls_env(certificates)})
    status = servers.probe_server(url, config.connection())
    assert status.live and [m.name for m in status.usable_models] == ["tiny"], status.error
    # a run through the same connection
    clip = write_clip(tmp_path / "clip.mp4", n_frames=6, size=(64, 48))
    server = servers.job_server(url, "tiny", 5, config.connection())
    out = jobs.run(server, jobs.RunRequest(model="tiny"), clip, tmp_path / "run", False)
    assert out.frames == 6 and out.output.is_file()
    server.close()
    # the page itself, configured from the environment as the launcher sets it
    for name, value in {"GRADCAM_URL": url, **tls_env(certificates)}.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert "Live and ready: 1 Grad-CAM model(s)" in "\n".join(s.value for s in at.sidebar.success)


def test_without_the_right_tls_settings_the_server_is_down_with_a_reason(tls_triton, certificates):
    url = tls_triton.urls.grpc
    plain = servers.probe_server(url)
    assert not plain.live and plain.error
    no_client_cert = DashboardConfig.from_env(tls_env(certificates, client=False))
    refused = servers.probe_server(url, no_client_cert.connection())
    assert not refused.live and refused.error
