"""The dashboard's page under Streamlit's AppTest, for the dashboard tests."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import gradcam_dashboard

APP = Path(gradcam_dashboard.__file__).with_name("app.py")


def page(timeout: float = 180) -> AppTest:
    """A fresh page (not run yet)."""
    return AppTest.from_file(str(APP), default_timeout=timeout)


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
