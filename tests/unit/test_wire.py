"""Frames on the wire: encoding, the default by where the server is, the CLI options."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gradcam_client import cli
from gradcam_client.media.samples import photo
from gradcam_client.remote.wire import Wire, default_format, is_local


def test_png_is_lossless_and_jpeg_is_small_and_close():
    frames = np.stack(
        [
            cv2.resize(photo(n), (224, 224), interpolation=cv2.INTER_AREA)
            for n in ("chelsea", "coffee")
        ]
    )
    png = Wire("png").encode(frames)
    jpeg = Wire("jpeg", 95).encode(frames)
    assert png.shape == jpeg.shape == (2, 1) and png.dtype == object
    for i, frame in enumerate(frames):
        decoded = cv2.imdecode(np.frombuffer(png[i, 0], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(decoded, frame)
        lossy = cv2.imdecode(np.frombuffer(jpeg[i, 0], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert np.abs(lossy.astype(int) - frame).mean() < 3
        assert len(jpeg[i, 0]) < frame.nbytes / 4, len(jpeg[i, 0])


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("localhost:8001", True),
        ("127.0.0.1:8001", True),
        ("[::1]:8001", True),
        ("gpu-host:8001", False),
        ("192.0.2.7:8001", False),
        ("[2001:db8::1]:8001", False),
    ],
)
def test_a_server_elsewhere_gets_jpeg_by_default(url, local):
    assert is_local(url) is local
    assert default_format([url]) == ("raw" if local else "jpeg")
    assert default_format(["localhost:8001", url]) == ("raw" if local else "jpeg")


def test_bad_wire_settings_are_refused():
    with pytest.raises(ValueError, match="JPEG quality"):
        Wire("jpeg", 0)
    with pytest.raises(ValueError, match="unknown wire format"):
        Wire("webp")


def test_cli_wire_and_probability_options():
    parse = cli.build_parser().parse_args
    args = parse(["in.mp4", "-o", "out.mp4", "--url", "gpu-host:8001"])
    assert cli.wire_from(args, ["gpu-host:8001"]) == Wire("jpeg", 95, automatic=True)
    assert not cli.wire_from(parse(["i", "-o", "o", "--wire", "jpeg"]), ["h:1"]).automatic
    args = parse(["in.mp4", "-o", "o.mp4", "--wire", "png"])
    assert cli.wire_from(args, ["gpu-host:8001"]).format == "png"
    settings = cli.settings_from(args)
    assert cli.top_k_from(args, settings) == settings.top_k
    for target in ("video", "Siamese cat"):
        args = parse(["in.mp4", "-o", "o.mp4", "--target", target])
        assert cli.top_k_from(args, settings) is None  # needs classes beyond the top-k
    args = parse(["in.mp4", "-o", "o.mp4", "--probabilities", "all"])
    assert cli.top_k_from(args, settings) is None
