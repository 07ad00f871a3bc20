"""The skip policy (tests/skip_policy.py) on small pytest runs of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

SKIPS = """
import pytest

def test_without_a_browser():
    pytest.skip("Chromium is not on PATH")

def test_that_runs():
    assert True

@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    assert False
"""
ALLOWED = """
import pytest

def test_nvenc():
    pytest.skip("NVENC opens on this machine")
"""
MISSING_LIBRARY = """
import pytest

torch = pytest.importorskip("no_such_library_here")

def test_maps():
    assert torch
"""


def run_pytest(folder: Path, files: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    """pytest with the policy on `files` written into `folder` (its root), under `env` only."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "GRADCAM_NO_SKIPS")}
    clean["PYTHONPATH"] = os.pathsep.join([str(TESTS), clean.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "skip_policy", "-p", "no:cacheprovider", "-q"],
        cwd=folder,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("env", [{"GRADCAM_NO_SKIPS": "1"}, {"CI": "true"}])
def test_under_ci_a_skip_fails_the_run_and_is_listed(tmp_path, env) -> None:
    run = run_pytest(tmp_path, {"test_a.py": SKIPS}, **env)
    assert run.returncode == 1, run.stdout
    assert "skips not allowed" in run.stdout
    assert "test_a.py::test_without_a_browser: Chromium is not on PATH" in run.stdout
    assert "test_expected_to_fail" not in run.stdout.split("skips not allowed")[1]
    assert "1 passed, 1 skipped, 1 xfailed" in run.stdout


@pytest.mark.parametrize("env", [{}, {"CI": "false"}, {"GRADCAM_NO_SKIPS": "0"}])
def test_outside_ci_a_skip_is_a_skip(tmp_path, env) -> None:
    run = run_pytest(tmp_path, {"test_a.py": SKIPS}, **env)
    assert run.returncode == 0, run.stdout
    assert "skips not allowed" not in run.stdout


def test_an_allowed_skip_passes_under_ci(tmp_path) -> None:
    run = run_pytest(tmp_path, {"test_b.py": ALLOWED}, GRADCAM_NO_SKIPS="1")
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout


def test_the_crosscheck_tier_never_skips_on_a_missing_library(tmp_path) -> None:
    """`make crosscheck` without PyTorch fails, under CI or not."""
    files = {"tests/crosscheck/test_new.py": MISSING_LIBRARY, "tests/unit/test_b.py": ALLOWED}
    run = run_pytest(tmp_path, files)
    assert run.returncode == 1, run.stdout
    listed = run.stdout.split("skips not allowed")[1]
    assert "tests/crosscheck/test_new.py: could not import 'no_such_library_here'" in listed
    assert "test_b.py" not in listed  # an ordinary skip elsewhere stays a skip


def test_make_test_runs_every_tier_but_the_crosscheck(pytestconfig) -> None:
    """The default test paths: every folder of tests/ holding tests, except tests/crosscheck."""
    testpaths = pytestconfig.getini("testpaths")
    tiers = sorted(
        str(folder.relative_to(ROOT))
        for folder in TESTS.iterdir()
        if folder.is_dir() and list(folder.glob("test_*.py"))
    )
    assert "tests/crosscheck" in tiers
    assert sorted(testpaths) == [tier for tier in tiers if tier != "tests/crosscheck"]
