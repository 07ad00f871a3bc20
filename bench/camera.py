"""Camera mode latency: how far the dashboard's overlay lags a browser's camera.

One Triton serving EfficientNet-Lite0 (Grad-CAM, default layer) and the dashboard, as the
browser tests run them; one real Chromium whose fake camera plays a Y4M clip of scikit-image
photos (`--size` 640x480, `--fps` 15) whose frames carry their number as a bar code
(`tests/camera_clip.py`). The page is driven as in `tests/dashboard/test_camera_browser.py`:
Camera mode, Start camera, and, after a warm-up, for `--seconds`:

* capture -> overlay (bar code): the page shows the camera's own stream beside the overlay;
  both bar codes are read at the same instant, their difference in frames is the lag
  (resolution one frame: 67 ms at 15 frames/s);
* arrival -> overlay (the page's own figures): from each frame's arrival at the dashboard to
  its composed overlay, from the run's predictions file (`latency_ms`), for the frames
  explained within the window;
* frames explained and dropped within the window (the page's counters), and the cores the
  dashboard and Triton kept busy.

Then, unless `--no-baseline`, the server is killed: the run fails and the dashboard sends
every camera frame back unexplained (dimmed, with a notice across the middle, the bar code
intact), which is the same WebRTC round trip without the server: the baseline, measured the
same way for another `--seconds`.

    .venv/bin/python bench/camera.py               # 20 s per phase, about 2 minutes
    .venv/bin/python bench/camera.py --quick       # 10 s per phase, writes camera-quick.*
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "tests" / "dashboard")]

import benchlib  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from benchlib import log  # noqa: E402
from camera_clip import BITS, code_from_means, photo_frames, write_y4m  # noqa: E402
from test_browser import running_dashboard  # noqa: E402
from test_camera_browser import (  # noqa: E402
    PHOTOS,
    SAMPLE_JS,
    camera_browser,
    component_frame,
    metric,
    open_camera_page,
    page_server_pid,
    start_camera,
    stop_camera,
    wait_explained,
)

NAME = "camera"
MODEL = "efficientnet-lite0"
PHOTO_SECONDS = 3.0  # each photo is panned over for this long; the clip then loops
WARMUP_FRAMES = 15  # explained before the window opens
RETRY_S = 2  # how long the dashboard retries a lost server before the run fails


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a size is WIDTHxHEIGHT, like 640x480; got {text!r}"
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="length of each measured phase (20)")
    parser.add_argument("--size", type=_size, default=(640, 480), help="camera size (640x480)")
    parser.add_argument("--fps", type=int, default=15, help="camera frames per second (15)")
    parser.add_argument("--interval-ms", type=int, default=150, help="between bar-code reads")
    parser.add_argument("--no-baseline", action="store_true", help="skip the pass-through")
    parser.add_argument("--quick", action="store_true", help="10 s phases, camera-quick.*")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 10.0 if args.quick else 20.0
    clip_frames = round(PHOTO_SECONDS * args.fps) * len(PHOTOS)
    if args.fps < 1 or clip_frames > 2**BITS:
        parser.error(f"--fps must be 1..{2**BITS // (round(PHOTO_SECONDS) * len(PHOTOS))}")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


# --------------------------------------------------------------------------- measuring


def sample_lags(page, seconds: float, interval_ms: int, clip_frames: int) -> dict[str, Any]:
    """Read both bar codes every `interval_ms` for `seconds`: lags in frames, unreadable reads."""
    frame = component_frame(page)
    lags: list[int] = []
    unreadable = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sample = frame.evaluate(SAMPLE_JS)
        if sample and sample["shown"] and sample["camera"]:
            shown = code_from_means(sample["shown"]["means"])
            captured = code_from_means(sample["camera"]["means"])
            if shown < clip_frames and captured < clip_frames:
                lags.append((captured - shown) % clip_frames)
            else:
                unreadable += 1
        else:
            unreadable += 1
        page.wait_for_timeout(interval_ms)
    return {"lags_frames": lags, "unreadable": unreadable}


def counters(page) -> tuple[int, int]:
    """The page's Frames explained and Dropped."""
    return int(metric(page, "Frames explained")), int(metric(page, "Dropped"))


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            for one in (process, *process.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    times = one.cpu_times()
                    total += times.user + times.system
    return total


def percentiles_ms(values_ms: list[float]) -> tuple[float | None, float | None]:
    if not values_ms:
        return None, None
    p50, p95 = np.percentile(values_ms, [50, 95])
    return float(p50), float(p95)


def phase_result(
    name: str, lags: dict[str, Any], fps: int, seconds: float, load: tuple[float, ...]
) -> dict[str, Any]:
    lag_ms = [1000 * lag / fps for lag in lags["lags_frames"]]
    p50, p95 = percentiles_ms(lag_ms)
    return {
        "phase": name,
        "seconds": seconds,
        "samples": len(lag_ms),
        "unreadable": lags["unreadable"],
        "capture_to_overlay_p50_ms": p50,
        "capture_to_overlay_p95_ms": p95,
        "lags_frames": lags["lags_frames"],
        "load_average_after": [round(x, 2) for x in load],
    }


def run_camera(args: argparse.Namespace, work: Path, server: Any, clip: Path) -> list[dict]:
    """Both phases through one dashboard and one browser page."""
    from playwright.sync_api import sync_playwright

    clip_frames = round(PHOTO_SECONDS * args.fps) * len(PHOTOS)
    sessions = work / "sessions"
    env = {
        "GRADCAM_URL": server.urls.grpc,
        "GRADCAM_METRICS_URL": server.urls.metrics,
        "GRADCAM_DASHBOARD_DIR": str(sessions),
        "GRADCAM_MAX_CAMERAS": "1",
        "GRADCAM_CAMERA_ADDRESSES": "127.0.0.1",
        "GRADCAM_CAMERA_ICE_SERVERS": "",
        "GRADCAM_RETRY_S": str(RETRY_S),
    }
    phases = []
    with (
        running_dashboard(env, work / "dashboard.log") as url,
        sync_playwright() as instance,
        camera_browser(
            (instance, shutil.which("chromium")), clip, "--use-fake-ui-for-media-stream"
        ) as browser,
    ):
        dashboard_pid = page_server_pid(int(url.rsplit(":", 1)[1]))
        context, page = open_camera_page(browser, url, MODEL)
        try:
            start_camera(page)
            page.locator(".st-key-camera-stats").wait_for()
            wait_explained(page, WARMUP_FRAMES)
            log(f"camera explained, measuring for {args.seconds:g} s")
            explained0, dropped0 = counters(page)
            cpu0 = cpu_seconds([dashboard_pid]), benchlib.server_cpu_seconds(server)
            started = time.monotonic()
            lags = sample_lags(page, args.seconds, args.interval_ms, clip_frames)
            elapsed = time.monotonic() - started
            explained1, dropped1 = counters(page)
            cpu1 = cpu_seconds([dashboard_pid]), benchlib.server_cpu_seconds(server)
            shown = {name: metric(page, name) for name in ("Latency p50", "Latency p95")}
            explained = phase_result("explained", lags, args.fps, elapsed, os.getloadavg())
            explained.update(
                explained=explained1 - explained0,
                dropped=dropped1 - dropped0,
                explained_per_s=(explained1 - explained0) / elapsed,
                window_frames=[explained0, explained1],
                page_shows=shown,
                dashboard_cores=(cpu1[0] - cpu0[0]) / elapsed,
                triton_cores=(cpu1[1] - cpu0[1]) / elapsed,
            )
            phases.append(explained)
            log_phase(explained)
            if not args.no_baseline:
                server.kill()
                status = page.locator(".st-key-camera-status")
                status.get_by_text("The camera run stopped").wait_for(timeout=60_000)
                page.wait_for_timeout(1000)
                log(f"server gone, pass-through for {args.seconds:g} s")
                cpu0 = cpu_seconds([dashboard_pid])
                started = time.monotonic()
                lags = sample_lags(page, args.seconds, args.interval_ms, clip_frames)
                elapsed = time.monotonic() - started
                through = phase_result("pass-through", lags, args.fps, elapsed, os.getloadavg())
                through["dashboard_cores"] = (cpu_seconds([dashboard_pid]) - cpu0) / elapsed
                phases.append(through)
                log_phase(through)
            stop_camera(page)
            ended = page.locator(".st-key-camera-ended")
            ended.wait_for()
            explained["page_summary"] = next(
                line for line in ended.inner_text().splitlines() if "frames explained" in line
            )
            add_arrival_latency(explained, sessions)  # before the session and its files go
        finally:
            context.close()
    return phases


def add_arrival_latency(explained: dict[str, Any], sessions: Path) -> None:
    """The page's arrival -> overlay latencies of the frames explained within the window."""
    (predictions,) = sessions.glob("*/camera-*/predictions.jsonl")
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    first, last = explained["window_frames"]
    latencies = [r["latency_ms"] for r in records[first:last]]
    p50, p95 = percentiles_ms(latencies)
    explained.update(arrival_to_overlay_p50_ms=p50, arrival_to_overlay_p95_ms=p95)
    log(f"arrival -> overlay over {len(latencies)} frames: p50 {p50:.0f} ms, p95 {p95:.0f} ms")


def log_phase(phase: dict[str, Any]) -> None:
    log(
        f"{phase['phase']}: capture -> overlay p50 {phase['capture_to_overlay_p50_ms']:.0f} ms, "
        f"p95 {phase['capture_to_overlay_p95_ms']:.0f} ms over {phase['samples']} samples"
    )


# --------------------------------------------------------------------------- report


def report(args: argparse.Namespace, machine: dict, phases: list[dict], command: str) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    rows = []
    for p in phases:
        served = p["phase"] == "explained"
        rows.append(
            [
                p["phase"],
                ms(p["capture_to_overlay_p50_ms"]),
                ms(p["capture_to_overlay_p95_ms"]),
                f"{p['samples']} ({p['unreadable']} unreadable)",
                ms(p.get("arrival_to_overlay_p50_ms")),
                ms(p.get("arrival_to_overlay_p95_ms")),
                f"{p['explained']} / {p['dropped']}" if served else "-",
                f"{p['explained_per_s']:.1f}" if served else "-",
                f"{p['dashboard_cores']:.2f}",
                f"{p['triton_cores']:.2f}" if served else "-",
                p["load_average_after"][0],
            ]
        )
    headers = [
        "phase",
        "capture->overlay p50 ms",
        "p95 ms",
        "bar-code reads",
        "arrival->overlay p50 ms (page)",
        "p95 ms (page)",
        "explained / dropped",
        "explained/s",
        "dashboard cores",
        "Triton cores",
        "load after",
    ]
    text, md = benchlib.table(headers, rows)
    print(text)
    width, height = args.size
    summary = next((p.get("page_summary") for p in phases if p.get("page_summary")), None)
    return "\n\n".join(
        [
            f"# Camera mode latency ({machine['time']}, {machine['cpus']} CPUs)",
            f"`{command}`; load average {machine['load_average']} at the start (other users of "
            "this machine).",
            f"One camera (Chromium's fake camera playing a {width}x{height}, {args.fps} frames/s "
            "Y4M clip, frames numbered by bar code) in the dashboard's Camera mode, over WebRTC "
            "on 127.0.0.1, explained by one EfficientNet-Lite0 Triton (Grad-CAM); "
            f"{args.seconds:g} s per phase after {WARMUP_FRAMES} frames of warm-up. "
            "Capture->overlay: the bar code of the camera's own stream minus that of the "
            f"overlay, read in the page at the same instant every {args.interval_ms} ms "
            f"(resolution one frame, {1000 / args.fps:.0f} ms). Arrival->overlay: the "
            "dashboard's own figure per frame explained in the window (its predictions file), "
            "from the frame's arrival at the dashboard to its overlay. Pass-through: the same "
            "page after the server was killed, every frame sent back unexplained (the WebRTC "
            "round trip alone).",
            md,
            "The page after Stop (the whole run: warm-up and the server's loss included): "
            f"{summary or '-'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("chromium") is None:
        raise SystemExit("chromium is not on PATH (bash scripts/system-deps.sh installs it)")
    name = f"{NAME}-quick" if args.quick else NAME
    command = ".venv/bin/python bench/camera.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    machine = benchlib.machine_info()
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        benchlib.export_model(benchlib.load_source(MODEL), repository, MODEL)
        per_photo = round(PHOTO_SECONDS * args.fps)
        frames = photo_frames(PHOTOS, per_photo, args.size)
        clip = write_y4m(work / "camera.y4m", [image for _, image in frames], args.fps)
        with benchlib.running_triton(repository, work) as server:
            phases = run_camera(args, work, server, clip)
    markdown = report(args, machine, phases, command.strip())
    benchlib.write_results(
        name,
        {"machine": machine, "command": command.strip(), "args": vars(args), "phases": phases},
        markdown,
        args.output_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
