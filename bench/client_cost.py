"""Client cost: the client's own CPU per frame and its pace, against a plain PyAV transcode.

A zero-cost model stands in for the network: the same tensor contract as EfficientNet-Lite0
(224x224 frames in, 1,000 probabilities and 7x7 maps out), served by the same Triton (python
backend), answering every frame with ready maps and computing nothing. What is left is the
client: decode, resize, requests, compose, encode. Beside it, in the same run and on the same
clip, a plain PyAV transcode (decode, libx264 with the client's preset and CRF, the same
threads): the least any tool that re-encodes a video must spend.

Each job runs in its own process (pinned to ``--cores`` CPUs); the worker reports the CPU
seconds of its whole process (every thread) and the wall time of the job alone, without the
Python start-up. Rounds interleave the variants, the order rotating every round. Clips are
made from the scikit-image photos at 640x360, 1280x720, 1920x1080 and 3840x2160.

    .venv/bin/python bench/client_cost.py             # ~10 minutes on 2 cores
    .venv/bin/python bench/client_cost.py --quick     # smoke run
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
MODEL = "zero"
CPU_TARGET = 1.3  # client CPU per frame / transcode CPU per frame, at most
FPS_TARGET = 0.8  # client frames/s against the zero-cost model / transcode frames/s, at least
SIZES = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))
FRAMES = {360: 150, 720: 75, 1080: 45, 2160: 15}  # about the same pixels per clip

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
    parser.add_argument("--rounds", type=int, help="interleaved rounds (2)")
    parser.add_argument("--sizes", help="heights to run, e.g. 360,1080 (all)")
    parser.add_argument("--cores", default="2,1", help="CPU counts for the client runs (2,1)")
    parser.add_argument("--fps", type=int, default=15, help="frame rate of the clips")
    parser.add_argument("--no-levers", action="store_true", help="skip the stage-by-stage levers")
    parser.add_argument("--preset", help="libx264 preset of both sides (the client's default)")
    parser.add_argument("--crf", type=int, help="CRF of both sides (the client's default)")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--worker", choices=("client", "transcode"), help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    from gradcam_client.pipeline import JobSettings

    args.preset = args.preset or JobSettings.encoder_preset
    args.crf = JobSettings.crf if args.crf is None else args.crf
    return args


# --------------------------------------------------------------------------- the zero-cost model


def write_zero_model(repository: Path) -> Path:
    """The zero-cost model: EfficientNet-Lite0's contract, ready answers, no network."""
    from gradcam_client.contract import LayerInfo, ModelInfo
    from gradcam_server.triton_config import ServingOptions, build_config, config_text

    info = ModelInfo(
        name=MODEL,
        input_height=224,
        input_width=224,
        class_names=tuple(f"class {i}" for i in range(1000)),
        layers=(LayerInfo("top_activation", 7, 7),),
        methods=("gradcam",),
        description="answers every frame with ready maps (client benchmark)",
    )
    folder = repository / MODEL
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


def run_client(clip: Path, out: Path, url: str, preset: str, crf: int) -> int:
    """`gradcam-video` with its defaults, as a library call."""
    from gradcam_client.pipeline import JobSettings, process_media
    from gradcam_client.triton import GradcamServer

    settings = JobSettings(encoder_preset=preset, crf=crf)
    return process_media(GradcamServer(url, MODEL), clip, out, settings).frames


def worker(args: argparse.Namespace) -> None:
    """One job in this process; prints frames, CPU seconds and wall seconds as JSON."""
    if args.worker == "client":
        import gradcam_client.pipeline  # noqa: F401  (imports are not the job)

        def job() -> int:
            return run_client(args.clip, args.out, args.url, args.preset, args.crf)
    else:
        import av  # noqa: F401

        def job() -> int:
            return transcode(args.clip, args.out, args.preset, args.crf)

    cpu, wall = time.process_time(), time.perf_counter()
    frames = job()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"frames": frames, "cpu": cpu, "wall": wall}))


def measure(
    variant: str, clip: Path, out: Path, url: str, cores: int, args: argparse.Namespace
) -> dict[str, float]:
    """Run one job in a fresh process pinned to `cores` CPUs."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    command = [sys.executable, __file__, "--worker", variant, "--clip", str(clip)]
    command += ["--out", str(out), "--url", url, "--preset", args.preset, "--crf", str(args.crf)]
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


def levers(clip: Path, work: Path, preset: str, crf: int) -> list[dict[str, Any]]:
    """Each lever of the client alone on `clip`: today's way and the new one, CPU per frame."""
    import numpy as np

    from gradcam_client.compose import draw_label, overlay
    from gradcam_client.compose_yuv import draw_label_yuv, overlay_yuv
    from gradcam_client.media_writer import choose_encoder, usable_encoder
    from gradcam_client.pipeline import resize_for_model
    from gradcam_client.video_io import VideoWriter, open_media

    reader = open_media(clip)
    rgb = list(reader)
    pictures = list(reader.pictures())
    count = len(rgb)
    y, x = np.mgrid[0:7, 0:7]
    heat = np.exp(-((y - 2.8) ** 2 + (x - 4.2) ** 2) / 4.0).astype(np.float32)

    class Info:  # the model's input size, as `resize_for_model` reads it
        input_width = input_height = 224

    def decoded(yuv: bool = False, thumbnail: tuple[int, int] | None = None) -> Any:
        def job() -> None:
            source = open_media(clip)
            list(source.pictures(thumbnail) if yuv else source)

        return job

    def label_rgb() -> None:
        for frame in rgb:
            draw_label(draw_label(frame.image, "Grad-CAM", "top-left"), "tabby 0.90", "bottom-left")

    def label_yuv() -> None:
        for picture in pictures:
            out = picture.image.copy()
            draw_label_yuv(out, "Grad-CAM", "top-left")
            draw_label_yuv(out, "tabby 0.90", "bottom-left")

    def copy_pictures() -> None:  # what label_yuv spends on copies, not labels
        for picture in pictures:
            picture.image.copy()

    composed_rgb = [
        draw_label(draw_label(overlay(f.image, heat), "Grad-CAM", "top-left"), "tabby 0.90",
                   "bottom-left")
        for f in rgb
    ]  # fmt: skip
    composed_yuv = []
    for picture in pictures:
        out = overlay_yuv(picture.image, heat)
        draw_label_yuv(out, "Grad-CAM", "top-left")
        draw_label_yuv(out, "tabby 0.90", "bottom-left")
        composed_yuv.append(out)
    plain_yuv = [picture.image for picture in pictures]

    def encode(images: list[Any], method: str = "write_picture", **kwargs: Any) -> Any:
        def job() -> None:
            with VideoWriter(
                work / "lever.mp4", reader.info, preset=preset, crf=crf, **kwargs
            ) as w:
                for frame, image in zip(rgb, images, strict=True):
                    getattr(w, method)(image, frame.pts)

        return job

    rows = [
        ("decode", "to RGB (before)", decoded()),
        ("decode", "to yuv420p, the encoder's format", decoded(yuv=True)),
        ("resize for the model", "OpenCV on the RGB frame (before)",
         lambda: [resize_for_model(f.image, Info) for f in rgb]),
        ("resize for the model", "decoder's scaler, from yuv420p",
         decoded(yuv=True, thumbnail=(224, 224))),
        ("resize for the model", "  (decode to yuv420p alone, to subtract)", decoded(yuv=True)),
        ("overlay", "RGB: cubic upsample, colour map, blend (before)",
         lambda: [overlay(f.image, heat) for f in rgb]),
        ("overlay", "yuv420p, full-resolution upsample + lookup",
         lambda: [overlay_yuv(p.image, heat, heat_scale=1) for p in pictures]),
        ("overlay", "yuv420p, lookup on a half-resolution upsample",
         lambda: [overlay_yuv(p.image, heat) for p in pictures]),
        ("labels", "RGB, whole-frame copies (before)", label_rgb),
        ("labels", "yuv420p, their region only", label_yuv),
        ("labels", "  (frame copies alone, to subtract)", copy_pictures),
        ("encode", "composed RGB in, converted to yuv420p (before)",
         encode(composed_rgb, "write")),
        ("encode", "composed yuv420p in", encode(composed_yuv)),
        ("encode", "  (the input's own frames, as the transcode encodes them)", encode(plain_yuv)),
        ("x264 threads", "auto (default)", encode(composed_yuv, threads=0)),
        ("x264 threads", "1", encode(composed_yuv, threads=1)),
        ("x264 threads", "2", encode(composed_yuv, threads=2)),
        ("x264 threads", "4", encode(composed_yuv, threads=4)),
    ]  # fmt: skip
    results = []
    for lever, variant, job in rows:
        cpu, wall = _per_frame(job, count)
        results.append({"lever": lever, "variant": variant, "cpu_ms": cpu, "wall_ms": wall})
        log(f"lever {lever}: {variant}: {cpu:.2f} ms CPU/frame, {wall:.2f} ms wall/frame")
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
    from gradcam_client.samples import pan_zoom_frames, write_frames

    heights = [int(h) for h in args.sizes.split(",")] if args.sizes else [h for _, h in SIZES]
    sizes = [size for size in SIZES if size[1] in heights]
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
        variants = [(variant, c) for c in cores for variant in ("transcode", "client")]
        runs: dict[str, list[dict[str, float]]] = {}
        with benchlib.running_triton(repository, work) as server:
            url = server.urls.grpc
            for round_index in range(args.rounds):
                for height in heights:
                    for variant, ncores in benchlib.rotated(variants, round_index):
                        key = f"{height}p {variant} {ncores}"
                        out = work / f"out_{height}_{variant}.mp4"
                        result = measure(variant, clips[height], out, url, ncores, args)
                        runs.setdefault(key, []).append(result)
                        log(
                            f"round {round_index + 1} {key} cores: "
                            f"{1000 * result['cpu'] / result['frames']:.1f} ms CPU/frame, "
                            f"{result['frames'] / result['wall']:.1f} frames/s"
                        )
        lever_results = {}
        if not args.no_levers:
            for height in heights:
                lever_results[f"{height}p"] = levers(clips[height], work, args.preset, args.crf)
    report = summarise(runs, sizes, cores, machine, args)
    if lever_results:
        lever_md = lever_table(lever_results)
        report["markdown"] += "\n\n" + lever_md
        report["data"]["levers"] = lever_results
    print(report["text"])
    from gradcam_client.pipeline import JobSettings

    name = NAME
    if (args.preset, args.crf) != (JobSettings.encoder_preset, JobSettings.crf):
        name += f"-{args.preset}-crf{args.crf}"
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
            "Each stage alone on the same clip, in this process (CPU of every thread), today's "
            "way marked (before). The hardware-encoder row gives the milliseconds spent finding "
            "out whether NVENC opens (once per process).",
            "",
            md,
        ]
    )


def summarise(
    runs: dict[str, list[dict[str, float]]],
    sizes: list[tuple[int, int]],
    cores: list[int],
    machine: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Medians per size and variant, the two ratios, and the tables."""

    def cpu_ms(key: str) -> float:
        return median([1000 * r["cpu"] / r["frames"] for r in runs[key]])

    def fps(key: str) -> float:
        return median([r["frames"] / r["wall"] for r in runs[key]])

    rows, data_sizes = [], {}
    for width, height in sizes:
        base = f"{height}p transcode {max(cores)}"
        entry: dict[str, Any] = {
            "frames": runs[base][0]["frames"],
            "transcode_cpu_ms_per_frame": cpu_ms(base),
            "transcode_fps": fps(base),
        }
        for c in cores:
            for variant in ("client", "transcode"):
                key = f"{height}p {variant} {c}"
                entry[f"{variant}_{c}_cores_cpu_ms_per_frame"] = cpu_ms(key)
                entry[f"{variant}_{c}_cores_fps"] = fps(key)
        two = f"{height}p client {max(cores)}"
        # ratios within each round (the two jobs ran minutes apart at most), then the median
        pairs = list(zip(runs[two], runs[base], strict=True))
        cpu_ratios = [(c["cpu"] / c["frames"]) / (t["cpu"] / t["frames"]) for c, t in pairs]
        fps_ratios = [(c["frames"] / c["wall"]) / (t["frames"] / t["wall"]) for c, t in pairs]
        entry["cpu_ratio"], entry["fps_ratio"] = median(cpu_ratios), median(fps_ratios)
        entry["cpu_ratio_range"] = benchlib.spread(cpu_ratios)
        entry["fps_ratio_range"] = benchlib.spread(fps_ratios)
        data_sizes[f"{width}x{height}"] = entry
        cpu_check = benchlib.check(entry["cpu_ratio"], CPU_TARGET, higher_is_better=False)
        rows.append(
            [
                f"{width}x{height}",
                entry["frames"],
                cpu_ms(base),
                cpu_ms(two),
                f"{entry['cpu_ratio']:.2f} ({cpu_check}; {entry['cpu_ratio_range']})",
                *[fps(f"{height}p {v} {c}") for c in cores for v in ("transcode", "client")],
                f"{entry['fps_ratio']:.2f} ({benchlib.check(entry['fps_ratio'], FPS_TARGET)}; "
                f"{entry['fps_ratio_range']})",
            ]
        )
    headers = [
        "clip",
        "frames",
        "transcode ms CPU/frame",
        "client ms CPU/frame",
        f"CPU ratio (<= {CPU_TARGET})",
        *[
            f"{v} frames/s, {c} core{'s' if c > 1 else ''}"
            for c in cores
            for v in ("transcode", "client")
        ],
        f"frames/s ratio (>= {FPS_TARGET})",
    ]
    text, md = benchlib.table(headers, rows)
    load = machine["load_average"]
    markdown = "\n".join(
        [
            "# Client cost against a plain transcode",
            "",
            f"`bench/client_cost.py{' --quick' if args.quick else ''}`, {args.rounds} "
            f"interleaved rounds (medians), {machine['cpus']} CPUs, load average at the start "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, {machine['time']}.",
            "",
            "Client: `process_media` with its defaults against the zero-cost model (same "
            "contract as EfficientNet-Lite0, ready answers, same Triton); both sides encode with "
            f"libx264 preset {args.preset}, CRF {args.crf}. Transcode: PyAV decode + libx264, "
            "default threads. Each job is a process pinned to the CPUs named (as `taskset` "
            "does); Triton keeps both. CPU is the whole process (every thread), wall the job "
            "alone; the ratios are medians of the ratios within each round (their range in "
            "brackets) and compare the "
            f"{max(cores)}-core runs.",
            "",
            md,
        ]
    )
    data = {"machine": machine, "sizes": data_sizes, "runs": runs, "rounds": args.rounds}
    return {"text": text, "markdown": markdown, "data": data}


if __name__ == "__main__":
    sys.exit(main())
