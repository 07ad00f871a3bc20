"""Which model a client talks to: ``NAME`` (its newest version that is loaded) or
``NAME:VERSION`` (one version, Triton's ``model_version``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gradcam_client.errors import InputError

_VERSIONED = re.compile(r"^(?P<name>.*):(?P<version>[^:]*)$")


@dataclass(frozen=True)
class ModelRef:
    """A model name and, optionally, one of its versions (None: the newest loaded)."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``"efficientnet-lite0"`` or ``"efficientnet-lite0:2"``; InputError otherwise."""
        text = text.strip()
        match = _VERSIONED.match(text)
        name, version = (match["name"], match["version"]) if match else (text, None)
        if not name:
            raise InputError(f"no model name in {text!r}; give NAME or NAME:VERSION")
        if version is None:
            return cls(name)
        if not re.fullmatch(r"[0-9]+", version) or int(version) < 1:
            raise InputError(
                f"model version {version!r} in {text!r} is not a positive whole number; "
                "give NAME or NAME:VERSION, e.g. efficientnet-lite0:2"
            )
        return cls(name, int(version))

    @property
    def triton_version(self) -> str:
        """The ``model_version`` of Triton's requests ("" for the newest)."""
        return "" if self.version is None else str(self.version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
