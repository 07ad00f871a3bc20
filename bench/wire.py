"""Frames over a slow link: frames/s and bytes per frame for raw, gzip, JPEG and PNG.

The server (Triton, this namespace) and the client (a network namespace made here, joined by a
veth pair: `slow_link.py`) talk over a 100 Mbit/s link, with a 20 ms round trip or none. The
model is a small CNN with EfficientNet-Lite0's shapes (224x224 in, 1,000 classes, a 7x7
map), cheap enough that the link, not the
server, is the limit; the frames are a camera panning over scikit-image's cat. Bytes per
frame are counted on the veth (both directions, TCP and gRPC included). Answers carry the
top-5 only (`--probabilities top`), as gradcam-video asks by default.

    sudo .venv/bin/python bench/wire.py            # needs root and iproute2

Also measured, without a network: the correlation of EfficientNet-Lite0's Grad-CAM maps from
JPEG q95 frames with those from raw frames, on the scikit-image photos and a panning clip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
import slow_link

WIRES = [("raw", None), ("raw", "gzip"), ("jpeg", None), ("png", None)]
RATE_MBIT = 100
RTT_MS = 20
MODEL = "tiny224"


def clip_frames(count: int) -> np.ndarray:
    import cv2

    from gradcam_client.samples import pan_zoom_frames

    return np.stack(
        [
            cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA)
            for f in pan_zoom_frames(count, (640, 360))
        ]
    )


def run_client(args: argparse.Namespace) -> None:
    """Inside the namespace: send the clip in batches with a window of requests in flight."""
    import resource

    from gradcam_client.triton import Connection, GradcamServer
    from gradcam_client.wire import Wire

    frames = clip_frames(args.frames)
    server = GradcamServer(
        args.client,
        MODEL,
        Connection(compression=args.compression),
        wire=Wire(args.wire, 95),
        top_k=5,
        max_in_flight=args.in_flight,
    )
    server.model_info()
    targets = np.full(args.batch, -1, np.int32)
    batches = [frames[i : i + args.batch] for i in range(0, len(frames), args.batch)]
    server.infer(batches[0], targets[: len(batches[0])])  # connection and first call
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.in_flight) as pool:
        for _ in pool.map(lambda b: server.infer(b, targets[: len(b)]), batches):
            pass
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    print(json.dumps({"fps": len(frames) / seconds, "client_cpu_ms": 1000 * used / len(frames)}))


def small_cnn():
    """224x224 in, 1,000 classes out, a 7x7 layer to explain: EfficientNet-Lite0's shapes
    (so requests and answers have their sizes) at a fraction of its cost."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1000, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=MODEL)


def export_small(repository: Path) -> None:
    from gradcam_server import model_sources
    from gradcam_server.exporter import export
    from gradcam_server.triton_config import ServingOptions

    path = repository.parent / f"{MODEL}.keras"
    small_cnn().save(path)
    export(
        model_sources.keras_file(path, "unit"),
        repository,
        name=MODEL,
        layers=["conv"],
        methods=["gradcam"],
        options=ServingOptions(max_batch_size=16),
    )


def measure(link: slow_link.SlowLink, url: str, wire: str, compression: str | None, args):
    command = [sys.executable, __file__, "--client", url, "--wire", wire]
    command += ["--frames", str(args.frames), "--batch", str(args.batch)]
    command += ["--in-flight", str(args.in_flight)]
    if compression:
        command += ["--compression", compression]
    before = link.host_bytes()
    out = subprocess.run(link.run_inside(command), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"client failed: {out.stderr.strip().splitlines()[-1:]}")
    after = link.host_bytes()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    sent_frames = args.frames + args.batch  # the warm-up batch crossed the link too
    result["up_bytes"] = (after[0] - before[0]) / sent_frames
    result["down_bytes"] = (after[1] - before[1]) / sent_frames
    return result


def correlations() -> dict[str, dict[str, float]]:
    """Grad-CAM map correlation, JPEG q95 frames against raw frames (same explained class)."""
    import cv2
    import tensorflow as tf

    from gradcam_client import contract
    from gradcam_client.quality import pearson
    from gradcam_client.samples import PHOTOS, photo
    from gradcam_client.wire import Wire
    from gradcam_server import model_sources
    from gradcam_server.explainer import GradCamModule

    source = model_sources.efficientnet_lite0()
    module = GradCamModule(
        source.model, source.preprocess, source.resolve_layers(None), ["gradcam"]
    )
    sets = {
        "photos": np.stack(
            [cv2.resize(photo(n), (224, 224), interpolation=cv2.INTER_AREA) for n in PHOTOS]
        ),
        "panning clip (16 frames)": clip_frames(16),
    }
    out = {}
    for name, frames in sets.items():
        raw = module.serve(tf.constant(frames), tf.fill([len(frames), 1], -1))
        files = Wire("jpeg", 95).encode(frames)
        jpeg = module.serve_encoded(tf.constant(files), raw[contract.CLASS_INDEX])
        layer = contract.cam_output_name(module.layers[0])
        a, b = raw[layer].numpy()[:, 0], jpeg[layer].numpy()[:, 0]
        values = [pearson(x, y) for x, y in zip(a, b, strict=True)]
        out[name] = {
            "mean": float(np.mean(values)),
            "worst": float(np.min(values)),
            "jpeg_bytes": float(np.mean([len(f[0]) for f in files])),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--wire", default="raw", help=argparse.SUPPRESS)
    parser.add_argument("--compression", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return
    problem = slow_link.available()
    if problem:
        raise SystemExit(f"bench/wire.py: {problem}")

    rows, results = [], {}
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        export_small(repository)
        with (
            benchlib.running_triton(repository, work) as server,
            slow_link.SlowLink() as link,
        ):
            link.shape(RATE_MBIT)
            target = f"{link.host_address}:{server.grpc_port}"
            for rtt in (0, RTT_MS):
                with link.delayed(target, rtt) as url:
                    for wire, compression in WIRES:
                        label = f"{wire}+{compression}" if compression else wire
                        result = measure(link, url, wire, compression, args)
                        results[f"{label} rtt{rtt}"] = result
                        benchlib.log(f"{label} at {rtt} ms: {result}")
        for wire, compression in WIRES:
            label = f"{wire}+{compression}" if compression else wire
            slow, fast = results[f"{label} rtt{RTT_MS}"], results[f"{label} rtt0"]
            rows.append(
                [
                    label,
                    f"{slow['up_bytes'] / 1000:.1f}",
                    f"{slow['down_bytes'] / 1000:.2f}",
                    f"{fast['fps']:.0f}",
                    f"{slow['fps']:.0f}",
                    f"{slow['fps'] / fast['fps']:.2f}",
                    f"{slow['fps'] / results[f'raw rtt{RTT_MS}']['fps']:.1f}",
                    f"{slow['client_cpu_ms']:.2f}",
                ]
            )
    correlation = correlations()
    headers = [
        "wire", "KB/frame up", "KB/frame down", "frames/s 0 ms", f"frames/s {RTT_MS} ms",
        f"{RTT_MS} ms / 0 ms", "vs raw", "client CPU ms/frame",
    ]  # fmt: skip
    _, text = benchlib.table(headers, rows)
    corr_rows = [
        [name, f"{c['mean']:.4f}", f"{c['worst']:.4f}", f"{c['jpeg_bytes'] / 1000:.1f}"]
        for name, c in correlation.items()
    ]
    _, corr_text = benchlib.table(
        ["frames", "mean correlation", "worst frame", "JPEG KB/frame"], corr_rows
    )
    markdown = (
        f"# Frames over a {RATE_MBIT} Mbit/s link\n\n"
        f"{args.frames} frames of 224x224, {args.batch} per request, {args.in_flight} "
        f"requests in flight, top-5 answers; model {MODEL} (Grad-CAM on a small CNN).\n\n"
        f"{text}\n\n## Grad-CAM maps from JPEG q95 frames against raw frames "
        f"(EfficientNet-Lite0)\n\n{corr_text}\n\n"
        f"Machine: {benchlib.machine_info()}\n"
    )
    print(markdown)
    benchlib.write_results(
        "wire", {"links": results, "correlation": correlation}, markdown, args.output_dir
    )


if __name__ == "__main__":
    main()
