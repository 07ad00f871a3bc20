"""The operator's settings: which servers the page may contact, their metrics, TLS, limits."""

from __future__ import annotations

import pytest

from gradcam_client.remote.wire import Wire
from gradcam_dashboard import media, servers
from gradcam_dashboard.config import DashboardConfig, Limits, ServerChoice, metrics_url_for


def test_metrics_urls_follow_the_servers_address():
    assert metrics_url_for("triton:8001") == "http://triton:8002/metrics"
    assert metrics_url_for("10.1.2.3:18001") == "http://10.1.2.3:18002/metrics"
    assert metrics_url_for("[::1]:9001,[::1]:9101") == "http://[::1]:9002/metrics"
    assert metrics_url_for("gpu-host") == "http://gpu-host:8002/metrics"


def test_the_servers_come_from_the_environment_in_order():
    config = DashboardConfig.from_env(
        {
            "GRADCAM_URL": "a:8001  b:9001,c:9001; d:7001",
            "GRADCAM_METRICS_URL": "http://a-metrics:9102/metrics none",
        }
    )
    assert config.servers == (
        ServerChoice("a:8001", "http://a-metrics:9102/metrics"),
        ServerChoice("b:9001,c:9001", None),
        ServerChoice("d:7001", "http://d:7002/metrics"),
    )
    assert config.url == "a:8001" and not config.allow_any_url and config.tls is None
    # the compose file's single server and metrics URL
    compose = DashboardConfig.from_env(
        {"GRADCAM_URL": "triton:8001", "GRADCAM_METRICS_URL": "http://triton:8002/metrics"}
    )
    assert compose.servers == (ServerChoice("triton:8001", "http://triton:8002/metrics"),)
    assert DashboardConfig.from_env({}).servers == (
        ServerChoice("localhost:8001", "http://localhost:8002/metrics"),
    )
    with pytest.raises(ValueError, match="2 metrics URLs for 1 servers"):
        DashboardConfig.from_env({"GRADCAM_URL": "a:1", "GRADCAM_METRICS_URL": "x y"})


def test_only_the_operators_servers_are_allowed_unless_any_is():
    env = {"GRADCAM_URL": "a:8001 b:9001"}
    config = DashboardConfig.from_env(env)
    assert config.choice("b:9001") == ServerChoice("b:9001", "http://b:9002/metrics")
    assert config.choice(" a:8001 ") == config.servers[0]
    for forged in ("evil:22", "127.0.0.1:6379", "a:8002", "", None, "a:8001,evil:1"):
        assert config.choice(forged) is None
    free = DashboardConfig.from_env({**env, "GRADCAM_ALLOW_ANY_URL": "1"})
    assert free.choice("other:7001") == ServerChoice("other:7001", "http://other:7002/metrics")
    assert free.choice("  ") is None


def test_frames_travel_as_the_operator_chose_and_auto_follows_where_the_server_is():
    assert DashboardConfig.from_env({}).wire == "auto"
    assert DashboardConfig.from_env({"GRADCAM_WIRE": " JPEG "}).wire == "jpeg"
    with pytest.raises(ValueError, match=r"GRADCAM_WIRE must be one of auto, raw, jpeg, png"):
        DashboardConfig.from_env({"GRADCAM_WIRE": "webp"})
    # as gradcam-video's --wire: raw to this machine, JPEG to another, or what was chosen
    assert servers.job_server("localhost:8001", "m").wire == Wire("raw", automatic=True)
    assert servers.job_server("127.0.0.1:1,[::1]:2", "m").wire == Wire("raw", automatic=True)
    assert servers.job_server("gpu-host:8001", "m").wire == Wire("jpeg", automatic=True)
    assert servers.job_server("localhost:1,gpu:2", "m").wire == Wire("jpeg", automatic=True)
    assert servers.job_server("gpu-host:8001", "m", wire="png").wire == Wire("png")
    assert servers.job_server("localhost:8001", "m", wire="jpeg").wire == Wire("jpeg")


def test_tls_settings(tmp_path):
    ca, key, cert = (tmp_path / name for name in ("ca.pem", "key.pem", "cert.pem"))
    for path in (ca, key, cert):
        path.write_text(f"-----{path.stem}-----\n")
    config = DashboardConfig.from_env(
        {"GRADCAM_TLS_CA": str(ca), "GRADCAM_TLS_KEY": str(key), "GRADCAM_TLS_CERT": str(cert)}
    )
    connection = config.connection()
    assert connection is not None and connection.ssl
    # tritonclient takes the files' paths and reads them itself
    assert connection.root_certificates == str(ca.resolve())
    assert connection.private_key == str(key.resolve())
    assert connection.certificate_chain == str(cert.resolve())
    system = DashboardConfig.from_env({"GRADCAM_TLS": "1"}).connection()
    assert system is not None and system.ssl and system.root_certificates is None
    assert DashboardConfig.from_env({}).connection() is None
    with pytest.raises(ValueError, match="needs both"):
        DashboardConfig.from_env({"GRADCAM_TLS_CERT": str(cert)})


def test_limits_come_from_the_environment():
    config = DashboardConfig.from_env(
        {
            "GRADCAM_MAX_SECONDS": "60",
            "GRADCAM_MAX_FRAMES": "900",
            "GRADCAM_MAX_RESOLUTION": "640x480",
        }
    )
    assert config.limits == Limits(60.0, 900, (640, 480))
    assert DashboardConfig.from_env({}).limits == Limits(300.0, 9000, (1920, 1080))
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        DashboardConfig.from_env({"GRADCAM_MAX_RESOLUTION": "big"})


def _summary(width=640, height=480, frames=100, duration=4.0, is_image=False):
    return media.MediaSummary(is_image, width, height, 25.0, frames, duration, False, "h264")


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        (_summary(width=2000), "is 2000x480; this page runs frames up to 1280x720"),
        (_summary(width=600, height=1300), "is 600x1300; this page runs frames up to 1280x720"),
        (_summary(duration=61.0), "lasts 61 s; this page runs videos up to 60 s"),
        (_summary(frames=1201), "has 1201 frames; this page runs videos up to 1200 frames"),
        (_summary(width=1300, is_image=True), "is 1300x480"),
    ],
)
def test_inputs_over_a_limit_are_refused_with_a_clear_message(summary, message):
    limits = Limits(60.0, 1200, (1280, 720))
    with pytest.raises(media.UploadRejected, match=message):
        media.check_limits("clip.avi", summary, limits)


def test_inputs_within_the_limits_pass():
    limits = Limits(60.0, 1200, (1280, 720))
    media.check_limits("clip.mp4", _summary(width=720, height=1280, frames=1200), limits)
    media.check_limits("photo.png", _summary(frames=None, duration=None, is_image=True), limits)
