"""What libx264 spends on heat-map frames, what in the composition costs it, and which preset.

Encode only: every variant's frames are made first (yuv420p pictures, as the client hands them
to the encoder), then encoded with the client's `VideoWriter` and settings (preset, CRF 20,
the encoder's own threads); the CPU of the whole process (every encoder thread) per frame and
the file size are reported. The variants run in interleaved rounds (medians). Clips are the
pan-and-zoom clips of `bench/client_cost.py` (640x360, 1280x720, 1920x1080).

1. The input's own frames (what a plain transcode encodes) against the composed frames with
   the zero-cost model's map (one blob that stays put while the picture pans, as in
   `bench/client_cost.py`), and what each part of the composition adds: labels, the overlay
   in luma or chroma only, a heat upsampled at full resolution or linearly, and maps that
   follow the picture and change every frame (a 7x7 map made from each frame's own local
   contrast, smoothed and normalised as the client does by default, by the clip's maximum, or
   not smoothed).
2. Presets on the composed frames: CPU, size and quality (PSNR and SSIM of the luma against the
   composed frames before encoding), and the same preset on the input's own frames.

    .venv/bin/python bench/encoder_cost.py            # ~4 minutes on 2 cores
    .venv/bin/python bench/encoder_cost.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import cv2
import numpy as np
from benchlib import log, median

NAME = "encoder_cost"
SIZES = ((640, 360), (1280, 720), (1920, 1080))
FRAMES = {360: 150, 720: 75, 1080: 45}  # as in bench/client_cost.py
CRF = 20
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
SSIM_EVERY = 3  # SSIM on every third frame (it is slow); PSNR on all of them


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (2)")
    parser.add_argument("--sizes", help="heights to run, e.g. 360,1080 (all)")
    parser.add_argument("--fps", type=int, default=15, help="frame rate of the clips")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    return args


# --------------------------------------------------------------------------- frames


def blob_map() -> np.ndarray:
    """The zero-cost model's 7x7 map: one warm blob, off centre (bench/client_cost.py)."""
    y, x = np.mgrid[0:7, 0:7]
    return np.exp(-((y - 2.8) ** 2 + (x - 4.2) ** 2) / 4.0).astype(np.float32)


def content_maps(pictures: list[np.ndarray]) -> list[np.ndarray]:
    """Raw 7x7 maps that follow the picture: each frame's local contrast, area-averaged."""
    from gradcam_client.render.compose_yuv import planes

    maps = []
    for picture in pictures:
        luma = planes(picture)[0].astype(np.float32)
        contrast = (luma - cv2.blur(luma, (31, 31))) ** 2
        maps.append(cv2.resize(contrast, (7, 7), interpolation=cv2.INTER_AREA))
    return maps


def normalised(raw: list[np.ndarray], scope: str, smoothing: float) -> list[np.ndarray]:
    """The maps as the client shows them: smoothed (EMA), then normalised in `scope`."""
    from gradcam_client.render.normalize import (
        DEFAULT_DECAY,
        Normalizer,
        TemporalSmoother,
        clip_maximum,
    )

    smoother = TemporalSmoother(smoothing)
    smoothed = [smoother(m) for m in raw]
    maximum = clip_maximum(smoothed) if scope == "clip" else None
    normalizer = Normalizer(scope, maximum=maximum, decay=DEFAULT_DECAY)
    return [normalizer(m) for m in smoothed]


def composed(
    pictures: list[np.ndarray],
    heats: list[np.ndarray],
    labels: bool = True,
    keep_input: tuple[int, ...] = (),
    **overlay: Any,
) -> list[np.ndarray]:
    """The client's overlay layout (`MapRenderer.render_picture`) on every picture; planes
    listed in `keep_input` (0 Y, 1 U, 2 V) are copied back from the input, for attribution."""
    from gradcam_client.render.compose_yuv import draw_label_yuv, overlay_yuv, planes

    out = []
    for picture, heat in zip(pictures, heats, strict=True):
        frame = overlay_yuv(picture, heat, **overlay)
        if labels:
            draw_label_yuv(frame, "Grad-CAM", "top-left")
            draw_label_yuv(frame, "tabby 0.90", "bottom-left")
        for plane in keep_input:
            planes(frame)[plane][:] = planes(picture)[plane]
        out.append(frame)
    return out


def variants(pictures: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Every set of frames section 1 encodes, by name."""
    blob = [blob_map()] * len(pictures)
    raw = content_maps(pictures)
    return {
        "input's own frames (the transcode's)": pictures,
        "composed, zero-cost model's map (client_cost.py)": composed(pictures, blob),
        "  same, no labels": composed(pictures, blob, labels=False),
        "  same, overlay in chroma only (luma of the input)": composed(
            pictures, blob, labels=False, keep_input=(0,)
        ),
        "  same, overlay in luma only (chroma of the input)": composed(
            pictures, blob, labels=False, keep_input=(1, 2)
        ),
        "  same, heat upsampled at full resolution": composed(pictures, blob, heat_scale=1),
        "  same, heat upsampled linearly": composed(pictures, blob, interpolation="linear"),
        "composed, maps following the picture (default: running max, EMA 0.7)": composed(
            pictures, normalised(raw, "running", 0.7)
        ),
        "  same, clip maximum (--scope clip)": composed(pictures, normalised(raw, "clip", 0.7)),
        "  same, no smoothing (--smoothing 0)": composed(pictures, normalised(raw, "running", 0)),
    }


# --------------------------------------------------------------------------- encoding


Timing = tuple[Any, list[int]]
"""The input's `VideoInfo` and its frames' timestamps."""


def encode(
    frames: list[np.ndarray], timing: Timing, out: Path, preset: str = "veryfast", crf: int = CRF
) -> dict[str, float]:
    """Encode yuv420p `frames` with the client's writer at the input's timestamps (libx264's
    rate control depends on the frame rate they give); CPU ms per frame and kB."""
    info, stamps = timing
    from gradcam_client.media import VideoWriter

    started = time.process_time()
    with VideoWriter(out, info, preset=preset, crf=crf, encoder="libx264", audio=False) as sink:
        for pts, picture in zip(stamps, frames, strict=True):
            sink.write_picture(picture, pts)
    cpu = time.process_time() - started
    return {"cpu_ms": 1000 * cpu / len(frames), "kb": out.stat().st_size / 1000}


def quality(encoded: Path, source: list[np.ndarray], ssim: bool = True) -> dict[str, float]:
    """PSNR (dB, all frames) and SSIM (every `SSIM_EVERY`th frame) of the decoded luma."""
    from skimage.metrics import structural_similarity

    from gradcam_client.media import open_media
    from gradcam_client.render.compose_yuv import planes

    psnr, ssims = [], []
    decoded = [frame.image for frame in open_media(encoded).pictures()]
    assert len(decoded) == len(source), (len(decoded), len(source))
    for index, (got, want) in enumerate(zip(decoded, source, strict=True)):
        a, b = planes(got)[0], planes(want)[0]
        mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
        psnr.append(10 * np.log10(255.0**2 / max(mse, 1e-10)))
        if ssim and index % SSIM_EVERY == 0:
            ssims.append(float(structural_similarity(a, b, data_range=255)))
    result = {"psnr_db": float(np.mean(psnr))}
    return {**result, "ssim": float(np.mean(ssims))} if ssim else result


def interleaved(
    jobs: dict[str, Callable[[], dict[str, float]]], rounds: int
) -> dict[str, dict[str, float]]:
    """Run every job once per round, the order rotating; medians per job."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in jobs}
    for round_index in range(rounds):
        for name in benchlib.rotated(list(jobs), round_index):
            runs[name].append(jobs[name]())
    return {
        name: {key: median([r[key] for r in results]) for key in results[0]}
        for name, results in runs.items()
    }


def measure_size(clip: Path, work: Path, rounds: int) -> dict[str, Any]:
    from gradcam_client.media import open_media

    reader = open_media(clip)
    decoded = list(reader.pictures())
    pictures = [frame.image for frame in decoded]
    timing = (reader.info, [frame.pts for frame in decoded])
    sets = variants(pictures)
    out = work / "encoded.mp4"
    section1 = interleaved(
        {name: (lambda f=frames: encode(f, timing, out)) for name, frames in sets.items()},
        rounds,
    )
    plain_cpu = section1["input's own frames (the transcode's)"]["cpu_ms"]
    plain_kb = section1["input's own frames (the transcode's)"]["kb"]
    for entry in section1.values():
        entry["cpu_ratio"] = entry["cpu_ms"] / plain_cpu
        entry["size_ratio"] = entry["kb"] / plain_kb
    log(f"{clip.name}: section 1 done")

    frames = sets["composed, zero-cost model's map (client_cost.py)"]
    jobs = {}
    for preset in PRESETS:
        jobs[f"composed {preset}"] = lambda p=preset: encode(frames, timing, out, p)
        jobs[f"input {preset}"] = lambda p=preset: encode(pictures, timing, out, p)
    timed = interleaved(jobs, rounds)
    section2 = {}
    for preset in PRESETS:
        encode(frames, timing, out, preset)
        entry = {**timed[f"composed {preset}"], **quality(out, frames)}
        entry["input_cpu_ms"] = timed[f"input {preset}"]["cpu_ms"]
        entry["input_kb"] = timed[f"input {preset}"]["kb"]
        section2[preset] = entry
        log(f"{clip.name} {preset}: {entry}")
    section3 = matched_quality(frames, timing, out, section2["veryfast"], rounds)
    out.unlink(missing_ok=True)
    return {
        "frames": len(pictures),
        "variants": section1,
        "presets": section2,
        "matched": section3,
    }


def matched_quality(
    frames: list[np.ndarray], timing: Timing, out: Path, reference: dict[str, float], rounds: int
) -> dict[str, dict[str, float]]:
    """Each preset faster than veryfast at the highest CRF whose PSNR is still at least
    veryfast's at CRF 20: the size and CPU it takes to look as good."""
    matched = {}
    for preset in PRESETS[: PRESETS.index("veryfast")]:
        for crf in range(CRF + 8, CRF - 9, -1):  # the first that looks as good is the highest
            encode(frames, timing, out, preset, crf)
            if quality(out, frames, ssim=False)["psnr_db"] >= reference["psnr_db"]:
                break
        entry = {"crf": crf, "kb": out.stat().st_size / 1000, **quality(out, frames)}
        job = {preset: lambda p=preset, c=crf: encode(frames, timing, out, p, c)}
        entry["cpu_ms"] = interleaved(job, rounds)[preset]["cpu_ms"]
        matched[preset] = entry
        log(f"matched quality {preset}: {entry}")
    return matched


# --------------------------------------------------------------------------- report


def report(results: dict[str, dict[str, Any]], machine: dict[str, Any], args: argparse.Namespace):
    sizes = list(results)
    first = results[sizes[0]]
    rows = [
        [name, *[f"{results[s]['variants'][name]['cpu_ratio']:.2f}" for s in sizes],
         *[f"{results[s]['variants'][name]['size_ratio']:.2f}" for s in sizes]]
        for name in first["variants"]
    ]  # fmt: skip
    headers = ["frames encoded", *[f"{s} CPU" for s in sizes], *[f"{s} size" for s in sizes]]
    text1, md1 = benchlib.table(headers, rows)
    ms_rows = [
        [name, *[results[s]["variants"][name]["cpu_ms"] for s in sizes],
         *[results[s]["variants"][name]["kb"] for s in sizes]]
        for name in first["variants"]
    ]  # fmt: skip
    ms_headers = [
        "frames encoded",
        *[f"{s} ms CPU/frame" for s in sizes],
        *[f"{s} kB" for s in sizes],
    ]
    _, md1ms = benchlib.table(ms_headers, ms_rows)
    rows2 = []
    for preset in PRESETS:
        for s in sizes:
            e = results[s]["presets"][preset]
            base = results[s]["presets"]["veryfast"]
            rows2.append(
                [preset, s, e["cpu_ms"], e["cpu_ms"] / base["cpu_ms"], e["kb"] / base["kb"],
                 e["psnr_db"], e["ssim"], e["input_cpu_ms"], e["cpu_ms"] / e["input_cpu_ms"]]
            )  # fmt: skip
    headers2 = [
        *("preset", "clip", "ms CPU/frame", "CPU / veryfast", "size / veryfast"),
        *("PSNR-Y dB", "SSIM-Y", "input's frames ms CPU/frame", "composed / input CPU"),
    ]
    text2, md2 = benchlib.table(headers2, rows2)
    rows3 = []
    for s in sizes:
        base = results[s]["presets"]["veryfast"]
        rows3.append(["veryfast", s, CRF, 1.0, 1.0, base["psnr_db"], base["ssim"]])
        for preset, e in results[s]["matched"].items():
            rows3.append(
                [preset, s, e["crf"], e["cpu_ms"] / base["cpu_ms"], e["kb"] / base["kb"],
                 e["psnr_db"], e["ssim"]]
            )  # fmt: skip
    headers3 = ["preset", "clip", "CRF", "CPU / veryfast", "size / veryfast", "PSNR-Y dB", "SSIM-Y"]
    text3, md3 = benchlib.table(headers3, rows3)
    load = machine["load_average"]
    markdown = "\n".join(
        [
            "# What the encoder spends on heat-map frames",
            "",
            f"`bench/encoder_cost.py{' --quick' if args.quick else ''}`, {args.rounds} "
            f"interleaved rounds (medians), {machine['cpus']} CPUs, load average at the start "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, {machine['time']}.",
            "",
            "## Encode only, libx264 veryfast CRF 20 (the client's settings): ratios to the "
            "input's own frames",
            "",
            "CPU: the whole process per frame (every encoder thread); size: the file.",
            "",
            md1,
            "",
            md1ms,
            "",
            "## Presets on the composed frames (zero-cost model's map), CRF 20",
            "",
            "PSNR and SSIM of the decoded luma against the composed frames before encoding "
            f"(SSIM on every {SSIM_EVERY}rd frame). The last columns encode the input's own "
            "frames with the same preset, as the transcode baseline does.",
            "",
            md2,
            "",
            "## Faster presets at the same quality",
            "",
            "Each preset faster than veryfast at the highest CRF whose luma PSNR is still at "
            f"least veryfast's at CRF {CRF}, on the same composed frames.",
            "",
            md3,
        ]
    )
    return text1 + "\n\n" + text2 + "\n\n" + text3, markdown


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gradcam_client.media.samples import pan_zoom_frames, write_frames

    heights = [int(h) for h in args.sizes.split(",")] if args.sizes else [h for _, h in SIZES]
    machine = benchlib.machine_info()
    results = {}
    with benchlib.work_dir(args.keep) as work:
        for width, height in SIZES:
            if height not in heights:
                continue
            frames = max(6, FRAMES[height] // (5 if args.quick else 1))
            clip = write_frames(
                work / f"clip_{height}p.mp4",
                pan_zoom_frames(frames, (width, height)),
                frames,
                (width, height),
                args.fps,
            )
            results[f"{width}x{height}"] = measure_size(clip, work, args.rounds)
    text, markdown = report(results, machine, args)
    print(text)
    data = {"machine": machine, "rounds": args.rounds, "crf": CRF, "sizes": results}
    name = f"{NAME}-quick" if args.quick else NAME
    benchlib.write_results(name, data, markdown, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
