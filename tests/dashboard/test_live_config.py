"""The operator's live sources: parsing, what visitors may open, and the launcher's flags."""

from __future__ import annotations

import pytest

from gradcam_client.live.source_guard import SourceGuard, parse_networks
from gradcam_dashboard import launch
from gradcam_dashboard.config import (
    DashboardConfig,
    LiveSourceChoice,
    parse_live_source,
    visitor_source_problem,
)
from gradcam_dashboard.live_view import live_settings


def test_live_sources_are_named_addresses_in_order():
    config = DashboardConfig.from_env(
        {
            "GRADCAM_LIVE_SOURCES": "door=rtsp://user:pw@cam1/live?a=b;  lab=/dev/video0 "
            "udp://127.0.0.1:5000?fifo_size=100"
        }
    )
    assert config.live_sources == (
        LiveSourceChoice("door", "rtsp://user:pw@cam1/live?a=b"),
        LiveSourceChoice("lab", "/dev/video0"),
        # a bare address (which may hold "=") is named by itself
        LiveSourceChoice(
            "udp://127.0.0.1:5000?fifo_size=100", "udp://127.0.0.1:5000?fifo_size=100"
        ),
    )
    assert config.live_enabled and not config.allow_any_source and config.max_live_jobs == 2
    assert DashboardConfig.from_env({}).live_sources == ()
    assert not DashboardConfig.from_env({}).live_enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("door=", "a live source is NAME=URL"),
        ("=rtsp://cam/1", "a live source is NAME=URL"),
        ("door=clip.mp4", "'clip.mp4' is not a stream address or a camera"),
        ("door=file:///etc/passwd", "is not a stream address"),
    ],
)
def test_a_bad_live_source_is_one_clear_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_live_source(text)


def test_two_sources_cannot_share_a_name():
    with pytest.raises(ValueError, match="two live sources are named 'cam'"):
        DashboardConfig.from_env({"GRADCAM_LIVE_SOURCES": "cam=rtsp://a/1 cam=rtsp://b/1"})
    with pytest.raises(ValueError, match="GRADCAM_MAX_LIVE_JOBS must be positive"):
        DashboardConfig.from_env({"GRADCAM_MAX_LIVE_JOBS": "0"})


def test_visitors_open_the_operators_sources_by_name_only():
    config = DashboardConfig.from_env({"GRADCAM_LIVE_SOURCES": "door=rtsp://user:pw@cam1/live"})
    assert config.live_choice("door") == config.live_sources[0]
    for forged in ("rtsp://user:pw@cam1/live", "rtsp://evil/x", "/dev/video0", "", None):
        assert config.live_choice(forged) is None
    # messages show the name, never the address (it may hold a password)
    message = "rtsp://user:pw@cam1/live: cannot open the source: connection refused"
    assert (
        config.live_sources[0].redact(message) == "door: cannot open the source: connection refused"
    )


def test_any_address_only_for_pulled_streams_when_the_operator_allows_it():
    config = DashboardConfig.from_env({"GRADCAM_ALLOW_ANY_SOURCE": "1"})
    assert config.live_enabled and config.live_sources == ()
    assert config.live_choice("rtsp://other/stream") == LiveSourceChoice(
        "rtsp://other/stream", "rtsp://other/stream", visitor=True
    )
    for refused in ("/dev/video0", "file:///etc/passwd", "udp://0.0.0.0:5000", "clip.mp4"):
        assert config.live_choice(refused) is None
        assert "give a stream address starting with one of rtsp://" in visitor_source_problem(
            refused
        )
    assert visitor_source_problem("https://host/live.m3u8") is None


def test_the_launcher_passes_live_sources_to_the_page():
    sources = ["--live-source", "door=rtsp://cam1/live", "--live-source", "lab=/dev/video0"]
    args = launch.build_parser().parse_args([*sources, "--max-live-jobs", "3"])
    env = launch.build_environment(args, base={})
    assert env["GRADCAM_LIVE_SOURCES"] == "door=rtsp://cam1/live lab=/dev/video0"
    assert env["GRADCAM_ALLOW_ANY_SOURCE"] == "0" and env["GRADCAM_MAX_LIVE_JOBS"] == "3"
    config = DashboardConfig.from_env(env)
    assert [source.name for source in config.live_sources] == ["door", "lab"]
    assert config.max_live_jobs == 3 and config.live_streams_per_session == 1
    free = launch.build_parser().parse_args(["--allow-any-source"])
    assert launch.build_environment(free, base={})["GRADCAM_ALLOW_ANY_SOURCE"] == "1"


def test_the_operator_allows_several_streams_per_session(monkeypatch):
    args = launch.build_parser().parse_args(["--live-streams-per-session", "3"])
    env = launch.build_environment(args, base={})
    assert env["GRADCAM_LIVE_STREAMS_PER_SESSION"] == "3"
    assert DashboardConfig.from_env(env).live_streams_per_session == 3
    assert launch.build_parser().parse_args([]).live_streams_per_session == 1
    monkeypatch.setenv("GRADCAM_LIVE_STREAMS_PER_SESSION", "2")
    assert launch.build_parser().parse_args([]).live_streams_per_session == 2
    with pytest.raises(ValueError, match="GRADCAM_LIVE_STREAMS_PER_SESSION must be positive"):
        DashboardConfig.from_env({"GRADCAM_LIVE_STREAMS_PER_SESSION": "0"})


def test_the_launcher_refuses_a_bad_live_source(capsys):
    with pytest.raises(SystemExit):
        launch.main(["--live-source", "door=clip.mp4"])
    assert "'clip.mp4' is not a stream address or a camera" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["--max-live-jobs", "0"])
    assert "must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launch.main(["--live-streams-per-session", "0"])
    assert "--live-streams-per-session" in capsys.readouterr().err


def test_a_page_run_keeps_to_the_upload_limits_and_a_recording_budget():
    config = DashboardConfig.from_env(
        {
            "GRADCAM_LIVE_SOURCES": "door=rtsp://cam1/live",
            "GRADCAM_ALLOW_ANY_SOURCE": "1",
            "GRADCAM_ALLOW_SOURCE_NETWORKS": "10.1.0.0/16, 192.168.5.7;fd00::/8",
            "GRADCAM_MAX_SECONDS": "120",
            "GRADCAM_MAX_RESOLUTION": "720x1280",
            "GRADCAM_MAX_FPS": "30",
            "GRADCAM_LIVE_RECORDING_MB": "50",
        }
    )
    settings = live_settings(config)
    assert settings.duration == 120 and settings.max_size == (1280, 720)
    assert settings.max_fps == 30 and settings.max_bytes == 50 * 2**20
    assert settings.guard is None  # the operator's own sources are trusted; visitors' addresses
    assert config.source_guard() == SourceGuard(  # are guarded stream by stream (LiveSession)
        parse_networks(["10.1.0.0/16", "192.168.5.7/32", "fd00::/8"])
    )
    defaults = DashboardConfig.from_env({})
    assert (defaults.limits.max_fps, defaults.live_recording_mb) == (60, 200)
    assert defaults.source_guard() == SourceGuard()


def test_the_launcher_passes_networks_and_live_limits_to_the_page(capsys):
    args = launch.build_parser().parse_args(
        ["--allow-source-network", "10.1.0.0/16", "--allow-source-network", "192.168.5.0/24",
         "--max-fps", "25", "--live-recording-mb", "20"]
    )  # fmt: skip
    config = DashboardConfig.from_env(launch.build_environment(args, base={}))
    assert config.allowed_source_networks == parse_networks(["10.1.0.0/16", "192.168.5.0/24"])
    assert config.limits.max_fps == 25 and config.live_recording_mb == 20
    with pytest.raises(SystemExit):
        launch.main(["--allow-source-network", "10.1.0.0/99"])
    assert "GRADCAM_ALLOW_SOURCE_NETWORKS: not a network" in capsys.readouterr().err


def test_an_operators_camera_may_be_named_before_it_is_plugged_in():
    assert parse_live_source("lab=/dev/video3").url == "/dev/video3"
    with pytest.raises(ValueError, match="is not a stream address or a camera"):
        parse_live_source("shm=/dev/shm/clip.avi")
