"""Client cost: the client's own CPU per frame against a plain transcode of its own output.

The client (`process_media` with its defaults) turns a clip into a heat-map video against
a model served by Triton: EfficientNet-Lite0 (real maps, which change every frame) or a
zero-cost model (the same tensor contract, ready answers, nothing computed). The floor it is
held to is what any tool spends to decode and re-encode that very heat-map video: a plain
PyAV transcode of the client's own output (decode, libx264 with the client's preset, CRF
and threads). The ratio leaves out what heat-map frames cost the encoder and keeps what the
client adds: the model's thumbnail, requests, composing, its threads and Python.

Each job runs in its own process (pinned to ``--cores`` CPUs); the worker reports the CPU
seconds of its whole process (every thread) and the wall time of the job alone, without the
Python start-up. Rounds interleave the variants, the order rotating every round. Clips are
made from the scikit-image photos at 640x360, 1280x720, 1920x1080 and 3840x2160.

    .venv/bin/python bench/client_cost.py --rounds 5   # ~15 minutes on 2 cores
    .venv/bin/python bench/client_cost.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import log, median

NAME = "client_cost"
ZERO = "zero"
REAL = "efficientnet-lite0"
MODELS = (REAL, ZERO)
CPU_TARGET = 1.2  # client CPU per frame / CPU per frame of a transcode of its output, at most
SIZES = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))
FRAMES = {360: 300, 720: 150, 1080: 90, 2160: 30}  # about the same pixels per clip

ZERO_MODEL = '''\
"""A Grad-CAM model that computes nothing: every frame gets the same ready answer."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.ready = {}
        for output in config["output"]:
            dims = [int(d) for d in output["dims"]]
            if output["name"] == "PROBABILITIES":
                value = np.full(dims, 0.1 / (dims[0] - 1), np.float32)
                value[281] = 0.9
            elif output["name"] == "CLASS_INDEX":
                value = np.array([281], np.int32)
            else:  # a map: one warm blob, off centre
                y, x = np.mgrid[0 : dims[1], 0 : dims[2]]
                blob = np.exp(-((y - dims[1] * 0.4) ** 2 + (x - dims[2] * 0.6) ** 2) / 4.0)
                value = np.broadcast_to(blob.astype(np.float32), dims).copy()
            self.ready[output["name"]] = value

    def execute(self, requests):
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy().shape[0]
            tensors = [
                pb_utils.Tensor(name, np.repeat(value[None], n, axis=0))
                for name, value in self.ready.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3)")
    parser.add_argument("--sizes", help="heights to run, e.g. 360,1080 (all)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"served models ({','.join(MODELS)})"
    )
    parser.add_argument("--cores", default="2", help="CPU counts for the jobs, e.g. 2,1 (2)")
    parser.add_argument("--fps", type=int, default=15, help="frame rate of the clips")
    parser.add_argument("--no-levers", action="store_true", help="skip the stage-by-stage levers")
    parser.add_argument("--preset", help="libx264 preset of both sides (the client's default)")
    parser.add_argument("--crf", type=int, help="CRF of both sides (the client's default)")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--worker", choices=("client", "transcode", "request", "parts"), help=argparse.SUPPRESS
    )
    parser.add_argument("--malloc-defaults", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--own", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=ZERO, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    from gradcam_client.jobs.settings import JobSettings

    args.preset = args.preset or JobSettings.encoder_preset
    args.crf = JobSettings.crf if args.crf is None else args.crf
    return args


# --------------------------------------------------------------------------- the zero-cost model


def write_zero_model(repository: Path) -> Path:
    """The zero-cost model: EfficientNet-Lite0's contract, ready answers, no network."""
    from gradcam_client.remote.contract import LayerInfo, ModelInfo
    from gradcam_server.triton_config import ServingOptions, build_config, config_text

    info = ModelInfo(
        name=ZERO,
        input_height=224,
        input_width=224,
        class_names=tuple(f"class {i}" for i in range(1000)),
        layers=(LayerInfo("top_activation", 7, 7),),
        methods=("gradcam",),
        description="answers every frame with ready maps (client benchmark)",
    )
    folder = repository / ZERO
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config_text(build_config(info, ServingOptions())))
    (folder / "1" / "model.py").write_text(textwrap.dedent(ZERO_MODEL))
    return folder


# --------------------------------------------------------------------------- workers


def transcode(clip: Path, out: Path, preset: str, crf: int) -> int:
    """Decode `clip` and encode it again with libx264 (the client's preset and CRF)."""
    import av

    with av.open(str(clip)) as source, av.open(str(out), "w", format="mp4") as sink:
        video = source.streams.video[0]
        stream = sink.add_stream("libx264", rate=video.average_rate)
        stream.options = {"crf": str(crf), "preset": preset}
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.time_base = video.time_base
        count = 0
        for frame in source.decode(video):
            frame.pict_type = av.video.frame.PictureType.NONE
            sink.mux(stream.encode(frame))
            count += 1
        sink.mux(stream.encode(None))
    return count


def run_client(clip: Path, out: Path, url: str, model: str, preset: str, crf: int) -> int:
    """`gradcam-video` with its defaults, as a library call."""
    from gradcam_client.jobs.file_job import process_media
    from gradcam_client.jobs.settings import JobSettings
    from gradcam_client.remote.server import GradcamServer

    settings = JobSettings(encoder_preset=preset, crf=crf)
    return process_media(GradcamServer(url, model), clip, out, settings).frames


def requests(url: str, model: str, malloc_defaults: bool, count: int = 60) -> dict[str, float]:
    """CPU of `count` requests of 8 model-size frames (client side), glibc's malloc as it
    comes (`malloc_defaults`) or keeping freed blocks as the client has it."""
    import resource

    import numpy as np

    from gradcam_client.remote.server import GradcamServer
    from gradcam_client.runtime import keep_freed_memory

    if not malloc_defaults:
        keep_freed_memory()
    server = GradcamServer(url, model)
    info = server.model_info()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, info.input_height, info.input_width, 3), np.uint8)
    targets = np.full(8, -1, np.int32)
    server.infer(frames, targets)  # connected, warm
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu = time.process_time()
    for _ in range(count):
        server.infer(frames, targets)
    cpu = time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"frames": 8 * count, "cpu": cpu, "faults": faults}


def parts(clip: Path, own: Path, url: str, model: str, preset: str, crf: int) -> dict[str, Any]:
    """The client's per-frame work on one thread (libx264 on one thread too), part by part,
    beside a transcode of its own output on one thread: CPU seconds of each part."""
    import collections

    import av
    import numpy as np

    from gradcam_client.jobs.file_stream import heat_map_writer
    from gradcam_client.jobs.settings import JobSettings, select_panels
    from gradcam_client.media import open_media
    from gradcam_client.remote.server import GradcamServer
    from gradcam_client.render.renderer import MapRenderer, encode, explanation, frame_outputs

    clock = time.process_time
    server = GradcamServer(url, model)
    info = server.model_info()
    settings = JobSettings(encoder_preset=preset, crf=crf, encoder_threads=1)
    client: collections.Counter[str] = collections.Counter()
    reader = open_media(clip)
    renderer = MapRenderer(select_panels(info, settings), settings, info.class_names)
    writer = heat_map_writer(own.with_name("parts.mp4"), reader.info, settings, "libx264")
    writer.open()
    size = (info.input_width, info.input_height)
    batch: list[Any] = []
    decoded = 0

    def flush() -> None:
        started = clock()
        thumbnails = np.stack([frame.thumbnail for frame in batch])
        answers = frame_outputs(server.infer(thumbnails, np.full(len(batch), -1, np.int32)))
        client["request"] += clock() - started
        for frame, answer in zip(batch, answers, strict=True):
            started = clock()
            composed = renderer.compose(frame, *explanation(answer))
            client["compose"] += clock() - started
            started = clock()
            encode(writer, composed)
            client["encode"] += clock() - started
        batch.clear()

    frames = iter(reader.pictures(size, copy=False))
    started = clock()
    for frame in frames:
        client["read"] += clock() - started
        decoded += 1
        batch.append(frame)
        if len(batch) == 8:
            flush()
        started = clock()
    client["read"] += clock() - started
    if batch:
        flush()
    started = clock()
    writer.close()
    client["encode"] += clock() - started
    floor: collections.Counter[str] = collections.Counter()
    with av.open(str(own)) as source, av.open(str(own.with_name("parts_tc.mp4")), "w") as sink:
        video = source.streams.video[0]
        stream = sink.add_stream("libx264", rate=video.average_rate)
        stream.options = {"crf": str(crf), "preset": preset}
        stream.codec_context.thread_count = 1
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.time_base = video.time_base
        started = clock()
        for frame in source.decode(video):
            floor["decode"] += clock() - started
            frame.pict_type = av.video.frame.PictureType.NONE
            started = clock()
            sink.mux(stream.encode(frame))
            floor["encode"] += clock() - started
            started = clock()
        floor["decode"] += clock() - started
        started = clock()
        sink.mux(stream.encode(None))
        floor["encode"] += clock() - started
    return {"frames": decoded, "client": dict(client), "transcode": dict(floor)}


def worker(args: argparse.Namespace) -> None:
    """One job in this process; prints frames, CPU seconds and wall seconds as JSON."""
    if args.worker == "request":
        print(json.dumps(requests(args.url, args.model, args.malloc_defaults)))
        return
    if args.worker == "parts":
        print(json.dumps(parts(args.clip, args.own, args.url, args.model, args.preset, args.crf)))
        return
    if args.worker == "client":
        import gradcam_client.jobs.file_job  # noqa: F401  (imports are not the job)

        def job() -> int:
            return run_client(args.clip, args.out, args.url, args.model, args.preset, args.crf)
    else:
        import av  # noqa: F401

        def job() -> int:
            return transcode(args.clip, args.out, args.preset, args.crf)

    cpu, wall = time.process_time(), time.perf_counter()
    frames = job()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"frames": frames, "cpu": cpu, "wall": wall}))


def measure(
    variant: str,
    clip: Path,
    out: Path,
    url: str,
    model: str,
    cores: int,
    args: argparse.Namespace,
    keep: bool = False,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run one job in a fresh process pinned to `cores` CPUs (`keep`: keep its output)."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    command = [sys.executable, __file__, "--worker", variant, "--clip", str(clip)]
    command += ["--out", str(out), "--url", url, "--model", model]
    command += ["--preset", args.preset, "--crf", str(args.crf), *(extra or [])]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, allowed),
    )
    if done.returncode:
        raise RuntimeError(f"{variant} failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not keep:
        out.unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------- levers


def _per_frame(job: Any, frames: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame of `job()`, CPU of the whole process."""
    cpu, wall = time.process_time(), time.perf_counter()
    job()
    return (
        1000 * (time.process_time() - cpu) / frames,
        1000 * (time.perf_counter() - wall) / frames,
    )


def levers(
    clip: Path, work: Path, preset: str, crf: int, url: str, cores: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The client's stages alone on `clip`, the way it works now beside the way it worked
    before where that is a choice of call; CPU per frame of the whole process."""
    import av
    import cv2
    import numpy as np
    from av.video.reformatter import VideoReformatter

    from gradcam_client.media import VideoWriter, open_media
    from gradcam_client.media.reader import Scalers, copy_planes, decoded_planes
    from gradcam_client.media.writer import choose_encoder, usable_encoder
    from gradcam_client.render.compose_yuv import (
        PicturePool,
        _label_shading,
        _resize_matrices,
        draw_label_yuv,
        overlay_yuv,
        picture_size,
        planes,
    )
    from gradcam_client.runtime import prepare_for_frames

    prepare_for_frames()
    reader = open_media(clip)
    with av.open(str(clip)) as source:
        decoded = list(source.decode(source.streams.video[0]))
    pictures = [copy_planes(frame) for frame in decoded]
    rgb = [frame.to_ndarray(format="rgb24") for frame in decoded]
    pts = [frame.pts for frame in decoded]
    count = len(decoded)
    y, x = np.mgrid[0:7, 0:7]
    heat = np.exp(-((y - 2.8) ** 2 + (x - 4.2) ** 2) / 4.0).astype(np.float32)
    size = picture_size(pictures[0])
    rows, columns = _resize_matrices(heat.shape, (size[0] // 2, size[1] // 2), "cubic")
    upsampled = np.empty((size[0] // 2, size[1] // 2), np.float32)
    scalers = Scalers()
    pool = PicturePool()

    def decode() -> None:
        with av.open(str(clip)) as source:
            for _ in source.decode(source.streams.video[0]):
                pass

    def thumbnails_per_frame() -> None:  # as `frame.reformat` does for a new frame
        for frame in decoded:
            VideoReformatter().reformat(frame, 224, 224, "rgb24", interpolation="AREA")

    def gemm() -> None:  # OpenCV's bundled OpenBLAS
        for _ in decoded:
            cv2.gemm(cv2.gemm(rows, heat, 1.0, None, 0.0), columns, 1.0, None, 0.0, dst=upsampled)

    def matmul() -> None:
        for _ in decoded:
            np.matmul(rows @ heat, columns, out=upsampled)

    def overlay_in_place() -> None:
        for frame in decoded:
            picture = copy_planes(frame)
            overlay_yuv(picture, heat, out=picture)

    def overlay_from_planes() -> None:
        for frame in decoded:
            overlay_yuv(decoded_planes(frame), heat, out=pool.take(*size))

    def labels_numpy() -> None:
        for picture in pictures:
            for text, corner in (("Grad-CAM", "top-left"), ("tabby 0.90", "bottom-left")):
                (left, top, right, bottom), gains = _label_shading(text, corner, size)
                luma, u, v = planes(picture)
                regions = (
                    luma[top:bottom, left:right],
                    u[top // 2 : bottom // 2, left // 2 : right // 2],
                    v[top // 2 : bottom // 2, left // 2 : right // 2],
                )
                for plane, (gain, offset) in zip(regions, gains, strict=True):
                    values = plane * gain
                    values += offset
                    np.rint(values, out=values)
                    np.clip(values, 0, 255, out=values)
                    plane[:] = values

    def labels() -> None:
        for picture in pictures:
            draw_label_yuv(picture, "Grad-CAM", "top-left")
            draw_label_yuv(picture, "tabby 0.90", "bottom-left")

    def rgb_per_frame() -> None:
        for image in rgb:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")

    def encode(rgb_in: bool = False) -> Any:
        def job() -> None:
            with VideoWriter(work / "lever.mp4", reader.info, preset=preset, crf=crf) as sink:
                for i, stamp in enumerate(pts):
                    if rgb_in:
                        sink.write(rgb[i], stamp)
                    else:
                        sink.write_picture(pictures[i], stamp)

        return job

    rows_ = [
        ("decode", "FFmpeg's frames, nothing else", decode),
        ("yuv420p picture", "one copy (before)", lambda: [copy_planes(f) for f in decoded]),
        ("yuv420p picture", "the decoder's planes, no copy (now)",
         lambda: [decoded_planes(f) for f in decoded]),
        ("thumbnail", "a scaler set up for each frame (before)", thumbnails_per_frame),
        ("thumbnail", "one scaler for the read (now)",
         lambda: [scalers.thumbnail(f, (224, 224)) for f in decoded]),
        ("heat to chroma resolution", "cv2.gemm (before)", gemm),
        ("heat to chroma resolution", "numpy's BLAS on the calling thread (now)", matmul),
        ("overlay", "on a copy, in place (before)", overlay_in_place),
        ("overlay", "from the decoder's planes into a reused picture (now)", overlay_from_planes),
        ("labels", "two labels, numpy arithmetic (before)", labels_numpy),
        ("labels", "two labels, OpenCV arithmetic (now)", labels),
        ("RGB frame to yuv420p", "a scaler for each frame (before)", rgb_per_frame),
        ("encode", "composed yuv420p (the default path)", encode()),
        ("encode", "composed RGB, one scaler in the writer", encode(rgb_in=True)),
    ]  # fmt: skip
    results = []
    for lever, variant, job in rows_:
        cpu, wall = _per_frame(job, count)
        results.append({"lever": lever, "variant": variant, "cpu_ms": cpu, "wall_ms": wall})
        log(f"lever {lever}: {variant}: {cpu:.2f} ms CPU/frame, {wall:.2f} ms wall/frame")
    for defaults, variant in ((True, "malloc's defaults (before)"),
                              (False, "freed blocks kept (now)")):  # fmt: skip
        answer = measure("request", clip, work / "none.mp4", url, ZERO, cores, args,
                         extra=["--malloc-defaults"] if defaults else [])  # fmt: skip
        cpu = 1000 * answer["cpu"] / answer["frames"]
        results.append({"lever": "requests of 8 frames (client side)", "variant": variant,
                        "cpu_ms": cpu, "wall_ms": None,
                        "page_faults_per_frame": answer["faults"] / answer["frames"]})  # fmt: skip
        log(f"lever requests: {variant}: {cpu:.2f} ms CPU/frame")
    started = time.perf_counter()
    usable_encoder.cache_clear()
    chosen = choose_encoder("auto")
    results.append(
        {
            "lever": "hardware encoder",
            "variant": f"auto: NVENC {'opens' if chosen != 'libx264' else 'does not open'} "
            f"here, {chosen} used",
            "cpu_ms": None,
            "wall_ms": 1000 * (time.perf_counter() - started),
        }
    )
    return results


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from gradcam_client.media.samples import pan_zoom_frames, write_frames

    heights = [int(h) for h in args.sizes.split(",")] if args.sizes else [h for _, h in SIZES]
    sizes = [size for size in SIZES if size[1] in heights]
    models = [m for m in args.models.split(",") if m]
    cores = [int(c) for c in args.cores.split(",")]
    machine = benchlib.machine_info()
    with benchlib.work_dir(args.keep) as work:
        clips = {}
        for width, height in sizes:
            frames = max(6, FRAMES[height] // (5 if args.quick else 1))
            path = work / f"clip_{height}p.mp4"
            clips[height] = write_frames(
                path, pan_zoom_frames(frames, (width, height)), frames, (width, height), args.fps
            )
            log(f"clip {width}x{height}, {frames} frames")
        repository = work / "repository"
        write_zero_model(repository)
        if REAL in models:
            benchlib.export_model(benchlib.load_source(REAL), repository, REAL)
        variants = [(v, m, c) for c in cores for m in models for v in ("transcode", "client")]
        runs: dict[str, list[dict[str, float]]] = {}
        with benchlib.running_triton(repository, work) as server:
            url = server.urls.grpc
            own = {}  # the client's output of each clip and model: what the floor transcodes
            for height in heights:
                for model in models:
                    own[height, model] = work / f"own_{height}_{model}.mp4"
                    measure("client", clips[height], own[height, model], url, model,
                            max(cores), args, keep=True)  # fmt: skip
            for round_index in range(args.rounds):
                for height in heights:
                    for variant, model, ncores in benchlib.rotated(variants, round_index):
                        key = f"{height}p {model} {variant} {ncores}"
                        out = work / f"out_{height}_{model}_{variant}.mp4"
                        source = clips[height] if variant == "client" else own[height, model]
                        result = measure(variant, source, out, url, model, ncores, args)
                        runs.setdefault(key, []).append(result)
                        log(
                            f"round {round_index + 1} {key} cores: "
                            f"{1000 * result['cpu'] / result['frames']:.1f} ms CPU/frame, "
                            f"{result['frames'] / result['wall']:.1f} frames/s"
                        )
            lever_results, part_results = {}, {}
            if not args.no_levers:
                model = ZERO if ZERO in models else models[0]
                for height in heights:
                    lever_results[f"{height}p"] = levers(
                        clips[height], work, args.preset, args.crf, url, max(cores), args
                    )
                    part_results[f"{height}p"] = measure(
                        "parts", clips[height], work / "parts.mp4", url, model, max(cores), args,
                        extra=["--own", str(own[height, model])],
                    )  # fmt: skip
    report = summarise(runs, sizes, models, cores, machine, args)
    if lever_results:
        report["markdown"] += "\n\n" + lever_table(lever_results)
        report["markdown"] += "\n\n" + parts_table(part_results)
        report["data"]["levers"] = lever_results
        report["data"]["parts"] = part_results
    print(report["text"])
    from gradcam_client.jobs.settings import JobSettings

    name = NAME
    if (args.preset, args.crf) != (JobSettings.encoder_preset, JobSettings.crf):
        name += f"-{args.preset}-crf{args.crf}"
    if args.quick:
        name += "-quick"  # never overwrites the real figures
    benchlib.write_results(name, report["data"], report["markdown"], args.output_dir)
    return 0


def lever_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: each lever's variants, CPU ms per frame at every size."""
    heights = list(results)
    headers = ["lever", "variant", *[f"{h} ms CPU/frame" for h in heights]]
    first = results[heights[0]]
    rows = []
    for i, row in enumerate(first):
        cells = []
        for h in heights:
            entry = results[h][i]
            value = entry["cpu_ms"] if entry["cpu_ms"] is not None else entry["wall_ms"]
            cells.append(value)
        rows.append([row["lever"], row["variant"], *cells])
    _, md = benchlib.table(headers, rows)
    return "\n".join(
        [
            "## Levers, one by one",
            "",
            "Each stage alone on the same clip, in this process (CPU of every thread): the "
            "client's way now, and where it was a choice of call, the way before. The "
            "hardware-encoder row gives the milliseconds spent finding out whether NVENC opens "
            "(once per process).",
            "",
            md,
        ]
    )


def parts_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: the client's parts beside the transcode's, ms CPU per frame at every size."""
    heights = list(results)
    names = [
        ("client", "read (decode, thumbnail)", "read"),
        ("client", "requests (client side)", "request"),
        ("client", "compose (maps, overlay, labels)", "compose"),
        ("client", "encode", "encode"),
        ("transcode", "decode", "decode"),
        ("transcode", "encode", "encode"),
    ]
    rows = []
    for side, label, key in names:
        rows.append([side, label, *[1000 * results[h][side].get(key, 0.0) / results[h]["frames"]
                                    for h in heights]])  # fmt: skip
    for side in ("client", "transcode"):
        rows.append([side, "all parts", *[1000 * sum(results[h][side].values())
                                          / results[h]["frames"] for h in heights]])  # fmt: skip
    headers = ["side", "part", *[f"{h} ms CPU/frame" for h in heights]]
    _, md = benchlib.table(headers, rows)
    return "\n".join(
        [
            "## The parts, one thread",
            "",
            "What the client's work is made of (zero-cost model), each part timed on one thread "
            "with libx264 on one thread too, beside a transcode of its output on one thread "
            "(one run): what 1.2 leaves room for, and where it goes. The client decodes its "
            "input and encodes the composed frames; the transcode decodes and encodes the "
            "client's own output (the same pictures after one round of H.264).",
            "",
            md,
        ]
    )


def summarise(
    runs: dict[str, list[dict[str, float]]],
    sizes: list[tuple[int, int]],
    models: list[str],
    cores: list[int],
    machine: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Medians per size, model and variant, the CPU ratio, and the tables."""

    def cpu_ms(key: str) -> float:
        return median([1000 * r["cpu"] / r["frames"] for r in runs[key]])

    def fps(key: str) -> float:
        return median([r["frames"] / r["wall"] for r in runs[key]])

    rows, data_sizes = [], {}
    for width, height in sizes:
        for model in models:
            for c in cores:
                client, floor = (f"{height}p {model} {v} {c}" for v in ("client", "transcode"))
                # ratios within each round (the two jobs ran a minute apart at most), then
                # the median
                pairs = list(zip(runs[client], runs[floor], strict=True))
                ratios = [(a["cpu"] / a["frames"]) / (b["cpu"] / b["frames"]) for a, b in pairs]
                entry = {
                    "frames": runs[client][0]["frames"],
                    "client_cpu_ms_per_frame": cpu_ms(client),
                    "transcode_cpu_ms_per_frame": cpu_ms(floor),
                    "client_fps": fps(client),
                    "transcode_fps": fps(floor),
                    "cpu_ratio": median(ratios),
                    "cpu_ratio_range": benchlib.spread(ratios),
                    "cpu_ratios": ratios,
                }
                data_sizes[f"{width}x{height} {model} {c} cores"] = entry
                check = benchlib.check(entry["cpu_ratio"], CPU_TARGET, higher_is_better=False)
                rows.append(
                    [
                        f"{width}x{height}",
                        model,
                        c,
                        entry["frames"],
                        entry["transcode_cpu_ms_per_frame"],
                        entry["client_cpu_ms_per_frame"],
                        f"{entry['cpu_ratio']:.2f} ({check}; {entry['cpu_ratio_range']})",
                        entry["transcode_fps"],
                        entry["client_fps"],
                    ]
                )
    headers = [
        "clip",
        "model",
        "cores",
        "frames",
        "transcode of its output, ms CPU/frame",
        "client ms CPU/frame",
        f"CPU ratio (<= {CPU_TARGET})",
        "transcode frames/s",
        "client frames/s",
    ]
    text, md = benchlib.table(headers, rows)
    load = machine["load_average"]
    markdown = "\n".join(
        [
            "# Client cost against a plain transcode of its own output",
            "",
            f"`bench/client_cost.py{' --quick' if args.quick else ''} --rounds {args.rounds}`, "
            f"{args.rounds} interleaved rounds (medians), {machine['cpus']} CPUs, load average "
            f"at the start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, {machine['time']}.",
            "",
            "Client: `process_media` with its defaults against the model named, served by the "
            f"same Triton; libx264 preset {args.preset}, CRF {args.crf}, default threads. "
            "Floor: a plain PyAV transcode (decode + libx264, the same preset, CRF and "
            "threads) of the client's own output video of that clip and model, made before "
            "the rounds. Each job is a process pinned to the CPUs named (as `taskset` does); "
            "Triton keeps both. CPU is the whole process (every thread), wall the job alone; "
            "the ratio is the median of the ratios within each round, their range in "
            "brackets: where the ranges of two figures overlap, they are about equal.",
            "",
            md,
        ]
    )
    data = {"machine": machine, "sizes": data_sizes, "runs": runs, "rounds": args.rounds}
    return {"text": text, "markdown": markdown, "data": data}


if __name__ == "__main__":
    sys.exit(main())
