"""Send a panning clip's frames to a Grad-CAM model and time it: the client side of a slow link.

Run inside the slow link's namespace (`slow_link.SlowLink.run_inside`) by the slow-link test
and `bench/wire.py`; prints one JSON line: frames/s, the client's CPU ms per frame, the
predicted class of every frame.

    python tests/wire_client.py --url 127.0.0.1:PORT --model tiny224 --wire jpeg --frames 400
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def clip_frames(count: int, size: int = 224) -> np.ndarray:
    """`count` frames of a camera panning over scikit-image's cat, resized to size x size."""
    import cv2

    from gradcam_client.media.samples import pan_zoom_frames

    return np.stack(
        [
            cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
            for f in pan_zoom_frames(count, (640, 360))
        ]
    )


def send(
    url: str,
    model: str,
    wire: str,
    frames: int,
    batch: int = 8,
    in_flight: int = 4,
    compression: str | None = None,
) -> dict[str, object]:
    """Send `frames` frames in batches, `in_flight` requests at once, top-5 answers (the
    defaults are gradcam-video's).

    One batch goes first, untimed (the connection and the server's first call), and is not
    counted in frames/s; it crossed the link all the same (`sent_frames`).
    """
    from gradcam_client.remote.server import Connection, GradcamServer
    from gradcam_client.remote.wire import Wire

    clip = clip_frames(frames)
    server = GradcamServer(
        url,
        model,
        Connection(compression=compression),
        wire=Wire(wire),
        top_k=5,
        max_in_flight=in_flight,
    )
    server.model_info()
    targets = np.full(batch, -1, np.int32)
    batches = [clip[i : i + batch] for i in range(0, len(clip), batch)]
    server.infer(batches[0], targets[: len(batches[0])])
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        results = list(pool.map(lambda b: server.infer(b, targets[: len(b)]), batches))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    server.close()
    return {
        "fps": frames / seconds,
        "client_cpu_ms": 1000 * cpu / frames,
        "sent_frames": frames + len(batches[0]),
        "classes": [int(c) for r in results for c in r.class_index],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--wire", choices=("raw", "jpeg", "png"), default="raw")
    parser.add_argument("--compression", choices=("gzip", "deflate"))
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    result = send(
        args.url, args.model, args.wire, args.frames, args.batch, args.in_flight, args.compression
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
