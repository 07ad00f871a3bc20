"""The dashboard over (mutual) TLS to a real Triton started with its TLS flags.

The certificates (a CA, the server's for localhost, the dashboard's own) are made here with
the ``openssl`` command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from triton_server import running_triton

import gradcam_dashboard
from gradcam_dashboard import jobs, servers
from gradcam_dashboard.config import DashboardConfig

pytestmark = pytest.mark.integration

APP = Path(gradcam_dashboard.__file__).with_name("app.py")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    """`name`.key and `name`.pem, signed by the CA in `folder`."""
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=folder)
    _openssl(
        "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=folder
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out",
        f"{name}.pem", cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("certificates")
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-sha256",
        "-subj", "/CN=Grad-CAM test CA", "-out", "ca.pem", cwd=folder,
    )  # fmt: skip
    _signed(
        folder,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    _signed(folder, "client", "/CN=dashboard", "extendedKeyUsage=clientAuth\n")
    return folder


@pytest.fixture(scope="module")
def tls_triton(model_repository, certificates, tmp_path_factory):
    """A Triton (only `tiny`) whose gRPC endpoint wants TLS and a client certificate."""
    folder = tmp_path_factory.mktemp("tls-triton")
    shutil.copytree(model_repository / "tiny", folder / "repository" / "tiny")
    flags = [
        "--grpc-use-ssl=true",
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={certificates / 'server.pem'}",
        f"--grpc-server-key={certificates / 'server.key'}",
        f"--grpc-root-cert={certificates / 'ca.pem'}",
    ]
    with running_triton(folder / "repository", log_dir=folder, extra_args=flags) as server:
        yield server


def tls_env(certificates: Path, client: bool = True) -> dict[str, str]:
    env = {"GRADCAM_TLS_CA": str(certificates / "ca.pem")}
    if client:
        env["GRADCAM_TLS_KEY"] = str(certificates / "client.key")
        env["GRADCAM_TLS_CERT"] = str(certificates / "client.pem")
    return env


def test_the_page_talks_mutual_tls_to_a_tls_triton(
    tls_triton, certificates, page_env, monkeypatch, tmp_path
):
    url = tls_triton.urls.grpc
    config = DashboardConfig.from_env({"GRADCAM_URL": url, **tls_env(certificates)})
    status = servers.probe_server(url, config.connection())
    assert status.live and [m.name for m in status.usable_models] == ["tiny"], status.error
    # a run through the same connection
    from media import write_clip

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
