"""Private session folders: creation, stale removal, clearing, safe names; and the config."""

from __future__ import annotations

import gc
import os
import stat
import time
from pathlib import Path

import pytest

from gradcam_dashboard.config import DashboardConfig, metrics_url_for, split_host_port
from gradcam_dashboard.sessions import (
    MARKER,
    FolderJanitor,
    SessionFolders,
    clear,
    new_subfolder,
    safe_filename,
)


def test_each_session_gets_its_own_private_folder(tmp_path):
    folders = SessionFolders(tmp_path / "root")
    one, two = folders.create(), folders.create()
    assert one != two and one.parent == two.parent == tmp_path / "root"
    assert stat.S_IMODE(one.stat().st_mode) == 0o700
    assert (one / MARKER).exists()
    assert folders.sessions() == sorted([one, two])


def _age(folder: Path, hours: float) -> None:
    past = time.time() - hours * 3600
    os.utime(folder / MARKER, (past, past))


def test_stale_folders_are_removed_and_active_ones_kept(tmp_path):
    folders = SessionFolders(tmp_path, max_age_hours=2)
    old, recent, mine = folders.create(), folders.create(), folders.create()
    (old / "input").mkdir()
    (old / "input" / "clip.mp4").write_bytes(b"x")
    _age(old, 3)
    _age(recent, 1)
    _age(mine, 5)
    samples = folders.samples_dir()
    (tmp_path / "unrelated").mkdir()
    removed = folders.remove_stale(keep=mine)
    assert removed == [old]
    assert not old.exists() and recent.exists() and mine.exists()
    assert samples.exists() and (tmp_path / "unrelated").exists()


def test_touch_keeps_a_session_alive(tmp_path):
    folders = SessionFolders(tmp_path, max_age_hours=1)
    folder = folders.create()
    _age(folder, 2)
    folders.touch(folder)
    assert folders.remove_stale() == []


def test_remove_only_touches_session_folders(tmp_path):
    folders = SessionFolders(tmp_path)
    folder = folders.create()
    other = tmp_path / "keep-me"
    other.mkdir()
    folders.remove(other)
    folders.remove(folder)
    assert other.exists() and not folder.exists()


def test_clear_empties_a_session_but_keeps_its_marker(tmp_path):
    folders = SessionFolders(tmp_path)
    folder = folders.create()
    run = new_subfolder(folder, "run-")
    (run / "result.mp4").write_bytes(b"x")
    (folder / "input").mkdir()
    (folder / "input" / "a.mp4").write_bytes(b"x")
    clear(folder)
    assert [p.name for p in folder.iterdir()] == [MARKER]


def test_a_janitor_removes_its_folder_when_dropped_or_asked(tmp_path):
    folders = SessionFolders(tmp_path)
    dropped, asked = folders.create(), folders.create()
    janitor = FolderJanitor(dropped)
    (dropped / "result.mp4").write_bytes(b"x")
    del janitor
    gc.collect()
    assert not dropped.exists()
    other = FolderJanitor(asked)
    other.remove()
    assert not asked.exists() and not other.alive
    other.remove()  # once is enough


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\My Holiday (1).MP4", "My_Holiday_1.mp4"),
        ("Café crème.jpeg", "Cafe_creme.jpeg"),
        ("....mp4", "upload.mp4"),
        ("noext", "noext"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("localhost:8001", "localhost", 8001),
        ("grpc://triton.example:9001", "triton.example", 9001),
        ("[::1]:8001", "::1", 8001),
        ("triton", "triton", None),
    ],
)
def test_split_host_port(url, host, port):
    assert split_host_port(url) == (host, port)


def test_metrics_url_defaults_to_the_port_after_grpc_on_the_servers_host():
    assert metrics_url_for("triton:8001") == "http://triton:8002/metrics"
    assert metrics_url_for("[::1]:8001") == "http://[::1]:8002/metrics"
    assert metrics_url_for("one:8001, two:8001") == "http://one:8002/metrics"
    shared = DashboardConfig.from_env({"GRADCAM_URL": "one:8001, two:8001"})
    assert [server.url for server in shared.servers] == ["one:8001,two:8001"]


def test_config_from_env():
    config = DashboardConfig.from_env(
        {
            "GRADCAM_URL": "triton:8001",
            "GRADCAM_METRICS_URL": "http://metrics:9000/metrics",
            "GRADCAM_MAX_UPLOAD_MB": "0.5",
            "GRADCAM_DASHBOARD_DIR": "/srv/dash",
            "GRADCAM_SESSION_MAX_AGE_H": "2",
        }
    )
    assert config.url == "triton:8001"
    assert config.max_upload_bytes == 512 * 1024
    assert config.root == Path("/srv/dash") and config.max_age_hours == 2
    # the configured metrics URL belongs to the configured server only
    assert config.choice("triton:8001").metrics_url == "http://metrics:9000/metrics"
    assert config.choice("other:8001") is None
    defaults = DashboardConfig.from_env({})
    assert defaults.url == "localhost:8001" and defaults.max_upload_mb == 200
    assert defaults.choice(defaults.url).metrics_url == "http://localhost:8002/metrics"
    with pytest.raises(ValueError, match="GRADCAM_MAX_UPLOAD_MB"):
        DashboardConfig.from_env({"GRADCAM_MAX_UPLOAD_MB": "lots"})
