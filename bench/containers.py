"""The container stack, measured: cold image builds, image sizes, `up` to healthy, and one clip
end to end through the containers against the same clip through the pip-installed Triton.

    .venv/bin/python bench/containers.py            # cold builds (no cache), then the runs
    .venv/bin/python bench/containers.py --cached   # reuse the build cache (quicker)

Builds offline from wheelhouse/ when it is filled, then `docker-compose up` (the CPU stack,
docker-compose.yml) under a project of its own on free 127.0.0.1 ports.
The end-to-end rounds alternate containers and pip Triton (same clip, same client settings) so
that both see the same machine load. Writes bench/results/containers.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import benchlib
from benchlib import log, median, spread
from local_triton import free_port

NAME = "containers"
ROOT = benchlib.BENCH_DIR.parent
COMPOSE = ["docker-compose", "-f", str(ROOT / "docker-compose.yml")]
MODEL = "efficientnet-lite0"
GRADCAM_VIDEO = str(Path(sys.executable).with_name("gradcam-video"))


def sh(*command: str, env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr}")
    return result.stdout


def build(cached: bool) -> dict[str, float]:
    """Seconds to build each image (the triton image first: it builds the shared stages)."""
    offline = ["--network", "none"] if list((ROOT / "wheelhouse").glob("*.whl")) else []
    cache = [] if cached else ["--no-cache"]
    seconds = {}
    for target, tag in (
        ("triton", "gradcam-triton:cpu"),
        ("dashboard", "gradcam-dashboard:latest"),
    ):
        start = time.perf_counter()
        sh("docker", "build", *offline, *cache, "-f", "docker/Dockerfile", "--target", target,
           "-t", tag, ".")  # fmt: skip
        seconds[target] = time.perf_counter() - start
        log(f"built {tag} in {seconds[target]:.0f} s")
    return seconds


def image_size(tag: str) -> int:
    return int(sh("docker", "image", "inspect", "-f", "{{.Size}}", tag))


class Project:
    """One compose project on free loopback ports with its own model repository."""

    def __init__(self, models: Path) -> None:
        self.name = f"gradcambench{uuid.uuid4().hex[:8]}"
        grpc, http, metrics, dashboard = (free_port() for _ in range(4))
        self.grpc = f"127.0.0.1:{grpc}"
        self.env = {
            **os.environ,
            "GRADCAM_MODELS": str(models),
            "GRADCAM_BIND": "127.0.0.1",
            "GRADCAM_GRPC_PORT": str(grpc),
            "GRADCAM_HTTP_PORT": str(http),
            "GRADCAM_METRICS_PORT": str(metrics),
            "GRADCAM_DASHBOARD_PORT": str(dashboard),
        }

    def compose(self, *args: str) -> str:
        return sh(*COMPOSE, "-p", self.name, *args, env=self.env)

    def healthy(self) -> bool:
        ids = self.compose("ps", "-q").split()
        states = [
            json.loads(sh("docker", "inspect", i))[0]["State"].get("Health", {}).get("Status")
            for i in ids
        ]
        return len(states) == 2 and all(state == "healthy" for state in states)

    def up(self) -> float:
        start = time.perf_counter()
        self.compose("up", "-d")
        while not self.healthy():
            if time.perf_counter() - start > 900:
                raise SystemExit(f"not healthy after 900 s:\n{self.compose('logs')[-3000:]}")
            time.sleep(0.5)
        return time.perf_counter() - start


def fresh_repository(target: Path) -> Path:
    (target / MODEL).mkdir(parents=True)
    shutil.copy2(ROOT / "model_repository" / "README.md", target)
    shutil.copy2(ROOT / "model_repository" / MODEL / "config.pbtxt", target / MODEL)
    return target


def end_to_end(url: str, clip: Path, out: Path, frames: int) -> float:
    """Frames/s of `gradcam-video` on `clip` against `url` (the whole command, wall clock)."""
    start = time.perf_counter()
    sh(GRADCAM_VIDEO, str(clip), "-o", str(out), "--url", url, "--model", MODEL, "--quiet")
    return frames / (time.perf_counter() - start)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cached", action="store_true", help="keep the build cache")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gradcam_client.media.samples import write_sample_clip

    machine = benchlib.machine_info()
    sh("bash", "scripts/docker-engine.sh", "start")
    sh("bash", "scripts/docker-base-image.sh")
    if not list((ROOT / "wheelhouse").glob("*.whl")):
        sh("bash", "scripts/wheelhouse.sh")
    seconds = build(args.cached)
    sizes = {tag: image_size(tag) for tag in ("gradcam-triton:cpu", "gradcam-dashboard:latest")}
    with benchlib.work_dir(args.keep) as work:
        clip = write_sample_clip(work / "clip.mp4", seconds=args.frames / 15, size=(640, 360))
        project = Project(fresh_repository(work / "model_repository"))
        try:
            first_up = project.up()
            log(f"first up (export included) to healthy: {first_up:.1f} s")
            project.compose("down")
            again_up = project.up()
            log(f"up again to healthy: {again_up:.1f} s")
            with benchlib.running_triton(work / "model_repository", work) as server:
                container_fps, pip_fps = [], []
                end_to_end(project.grpc, clip, work / "warm.mp4", args.frames)
                end_to_end(server.urls.grpc, clip, work / "warm.mp4", args.frames)
                for index in range(args.rounds):
                    order = benchlib.rotated(["containers", "pip"], index)
                    for which in order:
                        url = project.grpc if which == "containers" else server.urls.grpc
                        fps = end_to_end(url, clip, work / f"{which}.mp4", args.frames)
                        (container_fps if which == "containers" else pip_fps).append(fps)
                        log(f"round {index + 1} {which}: {fps:.1f} frames/s")
        finally:
            project.compose("down", "-v")
    ratio = median(container_fps) / median(pip_fps)
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "cold_build": not args.cached,
        "build_seconds": seconds,
        "image_bytes": sizes,
        "first_up_to_healthy_s": first_up,
        "up_again_to_healthy_s": again_up,
        "end_to_end_fps": {"containers": container_fps, "pip_triton": pip_fps},
        "ratio_containers_vs_pip": ratio,
        "frames": args.frames,
    }
    headers = ["what", "figure"]
    build_kind = "cached" if args.cached else "cold"
    rows = [
        [f"{build_kind} build, Triton image", f"{seconds['triton']:.0f} s"],
        [f"{build_kind} build, dashboard image", f"{seconds['dashboard']:.0f} s"],
        ["image size, Triton (CPU)", f"{sizes['gradcam-triton:cpu'] / 1e9:.2f} GB"],
        ["image size, dashboard", f"{sizes['gradcam-dashboard:latest'] / 1e9:.2f} GB"],
        ["`up` to healthy, first start (export included)", f"{first_up:.1f} s"],
        ["`up` to healthy, later starts", f"{again_up:.1f} s"],
        [f"end to end, {args.frames}-frame 640x360 clip, containers",
         f"{median(container_fps):.1f} frames/s ({spread(container_fps)})"],
        ["same clip, pip-installed Triton", f"{median(pip_fps):.1f} frames/s ({spread(pip_fps)})"],
        ["containers / pip Triton", benchlib.ratio_line("ratio", ratio, 0.9)],
    ]  # fmt: skip
    text, markdown = benchlib.table(headers, rows)
    print(text)
    benchlib.write_results(NAME, data, f"# Containers\n\n{markdown}\n", benchlib.RESULTS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
