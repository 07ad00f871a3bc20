"""The flags `gradcam-server serve` gives Triton: restricted admin APIs, the bind address."""

from __future__ import annotations

import pytest

from gradcam_server.launcher import RESTRICTED_APIS, TritonServer, admin_flags, hide_secrets


def test_admin_apis_are_closed_with_a_random_key_unless_one_is_given() -> None:
    first, second = admin_flags(None), admin_flags(None)
    assert first != second  # a fresh unknown key each time
    assert admin_flags("k") == [
        "--grpc-restricted-protocol=shared-memory,trace,logging:admin-key=k",
        "--http-restricted-api=shared-memory,trace,logging:admin-key=k",
    ]
    assert admin_flags("k", []) == []
    assert RESTRICTED_APIS == ("shared-memory", "trace", "logging")


def test_keys_never_reach_the_log() -> None:
    shown = hide_secrets(["tritonserver", *admin_flags("s3cret"), "--grpc-port=1"])
    assert "s3cret" not in shown and shown.count("admin-key=***") == 2
    assert "--grpc-port=1" in shown


def test_the_bind_address_reaches_every_endpoint(tmp_path) -> None:
    everywhere = TritonServer(tmp_path)
    assert not [a for a in everywhere.command(tmp_path) if "-address=" in a]
    assert everywhere.urls.grpc == "localhost:8001"
    local = TritonServer(tmp_path, address="127.0.0.1", grpc_port=9001)
    flags = [a for a in local.command(tmp_path) if "-address=" in a]
    assert flags == [
        "--grpc-address=127.0.0.1",
        "--http-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
    ]
    assert local.urls.grpc == "127.0.0.1:9001"
    assert TritonServer(tmp_path, address="::1").urls.http == "http://[::1]:8000"


def test_the_admin_key_help_says_where_the_key_is_visible(capsys) -> None:
    """Triton takes the key only as a flag: the help says who can read it and what to do."""
    from gradcam_server import cli

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    option = text[text.index("--admin-key ADMIN_KEY key") : text.rindex("--restricted-apis R")]
    assert "cannot see" not in option
    assert "every user with a shell on this machine can read it there (ps, " in option
    assert "/proc/PID/cmdline of tritonserver" in option
    assert "a container on a host you control, or a single-user host" in option
