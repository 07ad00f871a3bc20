"""How frames travel to the server: raw pixels, or JPEG or PNG files the model decodes.

A raw 224x224 frame is 150,528 bytes; the same frame as JPEG at quality 95 (colour at full
resolution, 4:4:4) is 25-28 KB on photos and gives maps whose correlation with the raw frame's
is 0.99 on average (`bench/wire.py`); PNG is lossless and 70-100 KB. Raw costs the client no
CPU and is the default for a server on this machine; JPEG is the default for a remote one,
where the network is the limit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import cv2
import numpy as np

WIRE_FORMATS = ("raw", "jpeg", "png")
WIRE_CHOICES = ("auto", *WIRE_FORMATS)
DEFAULT_JPEG_QUALITY = 95
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class Wire:
    """The form of the frames on the wire: "raw", "jpeg" (with its quality) or "png".

    `automatic`: chosen by where the server is, not by the user; a model that takes raw
    frames only then gets raw frames instead of an error.
    """

    format: str = "raw"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    automatic: bool = False

    def __post_init__(self) -> None:
        if self.format not in WIRE_FORMATS:
            raise ValueError(f"unknown wire format {self.format!r}; choose from {WIRE_FORMATS}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be 1 to 100, got {self.jpeg_quality}")

    @property
    def encoded(self) -> bool:
        return self.format != "raw"

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """RGB frames [n, H, W, 3] uint8 as files [n, 1] (bytes objects), for ENCODED_FRAMES."""
        if self.format == "jpeg":
            # 4:4:4: halving the colour resolution (libjpeg's default) costs 0.02 of the maps'
            # worst-frame correlation for 25 % fewer bytes.
            extension, params = (
                ".jpg",
                [
                    cv2.IMWRITE_JPEG_QUALITY,
                    self.jpeg_quality,
                    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
                ],
            )
        else:
            extension, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]
        files = np.empty((len(frames), 1), dtype=object)
        for i, frame in enumerate(frames):
            ok, data = cv2.imencode(extension, np.ascontiguousarray(frame[..., ::-1]), params)
            if not ok:
                raise ValueError(f"cannot encode a frame of shape {frame.shape} as {self.format}")
            files[i, 0] = data.tobytes()
        return files

    def describe(self) -> str:
        return f"jpeg (quality {self.jpeg_quality})" if self.format == "jpeg" else self.format


def is_local(url: str) -> bool:
    """Whether HOST:PORT names this machine (a loopback address or localhost)."""
    host = url.rsplit(":", 1)[0] if url.count(":") == 1 or "]" in url else url
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_format(urls: list[str]) -> str:
    """Raw for servers on this machine (nothing to save, no CPU to spend), else JPEG."""
    return "raw" if all(is_local(url) for url in urls) else "jpeg"


def choose_wire(choice: str, urls: list[str], jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Wire:
    """The wire for a user's choice ("auto" or a format): auto is raw for servers on this
    machine and JPEG for remote ones, and raw again for a model that takes raw frames only."""
    if choice == "auto":
        return Wire(default_format(urls), jpeg_quality, automatic=True)
    return Wire(choice, jpeg_quality)
