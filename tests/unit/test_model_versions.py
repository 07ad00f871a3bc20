"""Several versions of one model: the exporter adds them, the config names which are loaded."""

from __future__ import annotations

import pytest
from served_models import make_tiny_classifier

from gradcam_client.remote.contract import LayerInfo, ModelInfo
from gradcam_server import model_sources
from gradcam_server.cli import main as server_main
from gradcam_server.exporter import ExportError, export
from gradcam_server.triton_config import (
    ServingOptions,
    VersionPolicy,
    build_config,
    config_text,
    parse_config_text,
)

INFO = ModelInfo("m", 32, 32, ("a", "b"), (LayerInfo("conv", 7, 7),), ("gradcam",))


@pytest.mark.parametrize(
    ("text", "loads"),
    [("all", [1, 2, 3]), ("latest:2", [2, 3]), ("latest", [3]), ("specific:3,1", [1, 3])],
)
def test_version_policies(text, loads):
    policy = VersionPolicy.parse(text)
    assert policy.loads([3, 1, 2]) == loads
    config = build_config(INFO, ServingOptions(version_policy=policy))
    assert VersionPolicy.from_config(parse_config_text(config_text(config))) == policy


@pytest.mark.parametrize("text", ["some", "latest:0", "specific:", "all:2", "latest:x"])
def test_bad_version_policies(text):
    with pytest.raises(ValueError, match="unknown version policy"):
        VersionPolicy.parse(text)


def test_the_default_policy_stays_implicit():
    text = config_text(build_config(INFO, ServingOptions()))
    assert "version_policy" not in text
    assert VersionPolicy.from_config(parse_config_text(text)) == VersionPolicy("latest", 1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras")
    found = {}
    for key, kwargs in {"v1": {}, "v2": {"seed": 1}, "bigger": {"size": 48}}.items():
        path = folder / f"{key}.keras"
        make_tiny_classifier(**kwargs).save(path)
        found[key] = model_sources.keras_file(path, "caffe")
    return found


def exported_versions(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.isdigit())


def test_adding_versions(sources, tmp_path):
    repo = tmp_path / "repo"
    all_ = ServingOptions(version_policy=VersionPolicy.parse("all"))
    folder = export(sources["v1"], repo, name="m", layers=["conv2"], options=all_)
    assert exported_versions(folder) == ["1"]
    export(sources["v2"], repo, name="m", layers=["conv2"], version="next")
    assert exported_versions(folder) == ["1", "2"]
    config = parse_config_text((folder / "config.pbtxt").read_text())
    assert VersionPolicy.from_config(config).kind == "all"  # kept from the model's config
    export(sources["v2"], repo, name="m", layers=["conv2"], version=5)
    assert exported_versions(folder) == ["1", "2", "5"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging left

    with pytest.raises(ExportError, match="version 2 of model 'm' exists already"):
        export(sources["v1"], repo, name="m", layers=["conv2"], version=2)
    with pytest.raises(ExportError, match="--version next to add a version"):
        export(sources["v1"], repo, name="m", layers=["conv2"])
    with pytest.raises(ExportError, match=r"input size 48x48 instead of 32x32.*another --name"):
        export(sources["bigger"], repo, name="m", layers=["conv2"], version="next")
    with pytest.raises(ExportError, match="layers conv1 "):
        export(sources["v2"], repo, name="m", layers=["conv1"], version="next")
    assert exported_versions(folder) == ["1", "2", "5"]

    latest = ServingOptions(version_policy=VersionPolicy.parse("latest:2"))
    export(
        sources["v1"], repo, name="m", layers=["conv2"], version=2, overwrite=True, options=latest
    )
    config = parse_config_text((folder / "config.pbtxt").read_text())
    assert VersionPolicy.from_config(config) == VersionPolicy("latest", 2)


def test_export_command_versions(tiny_keras_file, tmp_path, capsys):
    repo = tmp_path / "repo"
    common = ["export", "--model", str(tiny_keras_file), "--repository", str(repo), "--name", "t"]
    assert server_main([*common, "--layers", "conv2"]) == 0
    assert (
        server_main([*common, "--layers", "conv2", "--version", "next", "--version-policy", "all"])
        == 0
    )
    assert exported_versions(repo / "t") == ["1", "2"]
    assert "all {" in (repo / "t" / "config.pbtxt").read_text()
    capsys.readouterr()
    assert server_main([*common, "--version-policy", "newest", "--version", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown version policy 'newest'" in err
    with pytest.raises(SystemExit) as exit_info:
        server_main([*common, "--version", "0"])
    assert exit_info.value.code == 2
    assert "not a version" in capsys.readouterr().err
