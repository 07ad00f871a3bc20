"""The README's quick start on a fresh clone in a fresh virtualenv (scripts/check_quickstart.sh).

It installs everything again, so it runs only with GRADCAM_CHECK_QUICKSTART=1 (CI sets it).
"""

from __future__ import annotations

import os
import subprocess

import pytest
from deploy_support import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("GRADCAM_CHECK_QUICKSTART") != "1",
        reason="installs everything into a fresh clone; set GRADCAM_CHECK_QUICKSTART=1",
    ),
]


@pytest.mark.timeout(3600)
def test_quickstart_on_a_fresh_clone() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_quickstart.sh")],
        capture_output=True,
        text=True,
        timeout=3500,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "quick start OK" in result.stdout
    assert "frames;" in result.stdout and "lines;" in result.stdout
