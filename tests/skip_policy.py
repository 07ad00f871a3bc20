"""No silent skips: a pytest plugin (loaded by tests/conftest.py) that fails the run on skips.

Under CI (`CI` set, as CI systems do, or `GRADCAM_NO_SKIPS=1`, which `.ci/run` sets) every
skipped test fails the session unless its reason matches `ALLOWED_SKIPS`, where each entry says
why that skip is legitimate even on a CI machine that ran `scripts/system-deps.sh`. Tests in the
opt-in tiers of `NEVER_SKIP` (run only when asked for, e.g. `make crosscheck`) may never skip:
a missing library there is a failure, whether under CI or not.

The session's exit status becomes "tests failed" and the summary lists each test with its reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# Reason pattern (a regular expression searched in the skip reason) -> why it may skip in CI.
ALLOWED_SKIPS: dict[str, str] = {
    r"NVENC opens on this machine": (
        "a machine whose NVIDIA GPU opens the h264_nvenc hardware encoder: the test of the "
        "one-line refusal of an encoder that does not open has nothing to refuse there"
    ),
}

# Folders (from the root of the repository) whose tests never skip.
NEVER_SKIP = ("tests/crosscheck",)

_SECTION = "skips not allowed"
_NAME = "gradcam-skip-policy"


def skips_forbidden() -> bool:
    """Whether every skip outside ALLOWED_SKIPS fails the run (CI, or GRADCAM_NO_SKIPS=1)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
    return ci or os.environ.get("GRADCAM_NO_SKIPS") == "1"


def allowed(reason: str) -> bool:
    """Whether a skip with this reason is allowed under CI."""
    return any(re.search(pattern, reason) for pattern in ALLOWED_SKIPS)


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipPolicy:
    """Collects the skips that break the policy and fails the session on them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.everywhere = skips_forbidden()
        self.refused: list[tuple[str, str]] = []  # (test id, reason)

    def _in_never_skip_tier(self, nodeid: str) -> bool:
        path = (self.root / nodeid.split("::", 1)[0]).resolve()
        return any(path.is_relative_to(self.root / folder) for folder in NEVER_SKIP)

    def _check(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = _reason(report)
        if self._in_never_skip_tier(report.nodeid) or (self.everywhere and not allowed(reason)):
            self.refused.append((report.nodeid, reason))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._check(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._check(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.refused and session.exitstatus in passing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.refused:
            return
        terminalreporter.section(_SECTION, red=True)
        for nodeid, reason in self.refused:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.refused)} skip(s) fail this run: under CI or GRADCAM_NO_SKIPS=1 a skip "
            "must match ALLOWED_SKIPS in tests/skip_policy.py, and the tiers "
            f"{', '.join(NEVER_SKIP)} never skip (install what they need)"
        )


def pytest_configure(config: pytest.Config) -> None:
    """Register the policy (once, whether loaded by tests/conftest.py or with -p)."""
    if not config.pluginmanager.has_plugin(_NAME):
        config.pluginmanager.register(SkipPolicy(config.rootpath), _NAME)
