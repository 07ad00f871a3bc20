"""Streams per server: how many live sources one EfficientNet-Lite0 server explains in real time.

N MPEG-TS/UDP sources on 127.0.0.1 (a camera panning over scikit-image's cat, 640x360, 10 or
25 frames/s, pre-encoded once and sent in real time by one separate process, as N cameras
would) are explained by `gradcam-video`, each stream recorded and its predictions written,
against one Triton on this machine, in two ways:

* one: a single client process with every source (``--sources``): one gRPC channel, a fair
  share of requests in flight, each stream's newest frame first;
* separate: N client processes, one source each, sharing only the server.

Raw and JPEG frames on the wire. Per stream, over the steady part of the run (from `--warmup`
seconds after its first explained frame: FFmpeg hands over its first second of frames at once
after recognising a stream), from the stream's predictions file: latency p50 / p95 from a
frame's arrival (decoded) to its composed frame, and the fraction of frames skipped; over the
whole run: frames explained per second (all streams), Triton's mean batch size (inferences per
execution, from its statistics), and client and server CPU (cores busy on average). A number
of streams is "held" when every stream has p95 <= 300 ms and <= 5 % skipped.

    .venv/bin/python bench/live_scale.py                                   # full, ~25 min
    .venv/bin/python bench/live_scale.py --streams 1,2,4 --seconds 10      # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
from benchlib import log
from local_triton import free_port

from gradcam_client.remote.server import GradcamServer

NAME = "live_scale"
MODEL = "efficientnet-lite0"
SIZE = (640, 360)
HELD_P95_S = 0.300
HELD_SKIPPED = 0.05
CLIP_SECONDS = 10


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=_ints, default=[1, 2, 4, 8, 16])
    parser.add_argument(
        "--rates", type=lambda t: [float(v) for v in t.split(",")], default=[10.0, 25.0]
    )
    parser.add_argument("--wires", type=_names, default=["raw", "jpeg"])
    parser.add_argument("--modes", type=_names, default=["one", "separate"])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the sources send")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out per stream")
    parser.add_argument("--in-flight", type=int, help="one process: requests in flight (8)")
    parser.add_argument(
        "--batch-size", type=int, help="frames per request (one process 1, separate ones 4)"
    )
    parser.add_argument("--no-recording", action="store_true", help="predictions only")
    parser.add_argument("--output-dir", type=Path, default=benchlib.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--from-json", type=Path, help="only write the report again from this run's JSON"
    )
    args = parser.parse_args(argv)
    bad = set(args.modes) - {"one", "separate"} or set(args.wires) - {"raw", "jpeg"}
    if bad:
        parser.error(f"unknown mode or wire: {', '.join(sorted(bad))}")
    return args


# --------------------------------------------------------------------------- the sources


def encode_clip(path: Path, fps: float, size: tuple[int, int]) -> Path:
    """The sample clip as MPEG-TS H.264 (a key frame with its headers every second)."""
    import av

    from gradcam_client.media.samples import pan_zoom_frames

    n = round(CLIP_SECONDS * fps)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream(
            "libx264",
            rate=rate,
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "g": str(round(fps)),
                "x264-params": "repeat-headers=1",
            },
        )
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for index, rgb in enumerate(pan_zoom_frames(n, size)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def fan_out(clip: str, urls: list[str], fps: float, seconds: float) -> None:
    """Send the clip's packets to every address in real time, looping (a child process)."""
    import av

    source = av.open(clip)
    template = source.streams.video[0]
    packets = [(p.pts, p.dts, bytes(p), p.is_keyframe) for p in source.demux(template) if p.size]
    outputs = [av.open(url, "w", format="mpegts") for url in urls]
    streams = [output.add_stream_from_template(template) for output in outputs]
    step = round(1 / (fps * template.time_base))
    period = len(packets) * step
    start, sent = time.monotonic(), 0
    while sent < round(seconds * fps):
        pts, dts, data, key = packets[sent % len(packets)]
        shift = (sent // len(packets)) * period
        for output, stream in zip(outputs, streams, strict=True):
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.time_base = pts + shift, dts + shift, template.time_base
            packet.stream, packet.is_keyframe = stream, key
            output.mux(packet)
        sent += 1
        delay = start + sent / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for output in outputs:
        output.close()


# --------------------------------------------------------------------------- the clients


def udp_ports_bound() -> set[int]:
    """The local ports of this machine's UDP sockets (from Linux's /proc)."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return ports


class Client:
    """A `gradcam-video` process: its stderr read as it comes, its CPU from `os.wait4`."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.listening = 0
        self.cpu_s = 0.0  # CPU seconds from `mark` to the end
        self._cpu_at_mark = 0.0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if "listening on udp port" in line:
                self.listening += 1

    def mark(self) -> None:
        """Count the CPU from now on (not the start-up, imports and connecting)."""
        import psutil

        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return
        self._cpu_at_mark = times.user + times.system

    def wait(self, timeout: float) -> int:
        """Wait for the process (killed after `timeout`); its exit code."""
        if self.process.returncode is not None:  # reaped already (it ended early)
            return self.process.returncode
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.cpu_s = usage.ru_utime + usage.ru_stime - self._cpu_at_mark
                self.process.returncode = os.waitstatus_to_exitcode(status)
                self._reader.join(5)
                return self.process.returncode
            time.sleep(0.05)
        self.process.kill()
        _pid, status, usage = os.wait4(self.process.pid, 0)
        self.cpu_s = usage.ru_utime + usage.ru_stime - self._cpu_at_mark
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode


def client_command(
    server_url: str,
    wire: str,
    sources: list[str],
    out: Path,
    record: bool,
    batch_size: int | None = None,
) -> list[str]:
    """`gradcam-video` on `sources`, its predictions (and recording) named after `out`."""
    base = [sys.executable, "-m", "gradcam_client.cli", *sources]
    base += ["--predictions", str(out.with_suffix(".jsonl"))]
    if record:
        base += ["-o", str(out.with_suffix(".mp4"))]
    if batch_size is not None:
        base += ["--batch-size", str(batch_size)]
    return [
        *base, "--url", server_url, "--model", MODEL, "--wire", wire, "--open-timeout", "60",
        "--read-timeout", "2", "--reconnect-deadline", "0",
    ]  # fmt: skip


def stream_figures(path: Path, fps: float, warmup: float) -> dict[str, Any]:
    """One stream's figures from its predictions file (steady part and whole run)."""
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    if not records:
        return {"processed": 0, "p50_s": None, "p95_s": None, "skipped_steady": 1.0}
    first = records[0]["source_frame"] + round(warmup * fps)
    steady = [r for r in records if r["source_frame"] >= first]
    if not steady:
        steady = records
        first = records[0]["source_frame"]
    received = steady[-1]["source_frame"] - first + 1
    latency = np.array([r["latency_ms"] for r in steady]) / 1000
    return {
        "processed": len(records),
        "steady_processed": len(steady),
        "steady_received": received,
        "skipped_steady": 1 - len(steady) / max(1, received),
        "p50_s": float(np.percentile(latency, 50)),
        "p95_s": float(np.percentile(latency, 95)),
    }


def live_run(
    server: Any, stats_client: GradcamServer, clip: Path, args: argparse.Namespace, work: Path,
    n: int, fps: float, wire: str, mode: str,
) -> dict[str, Any]:  # fmt: skip
    """N sources for `args.seconds`, explained in one or in N client processes."""
    folder = work / f"{mode}-{wire}-{fps:g}-{n}"
    folder.mkdir()
    names = [f"s{i}" for i in range(1, n + 1)]
    urls = [f"udp://127.0.0.1:{free_port()}" for _ in names]
    record = not args.no_recording
    if mode == "one":
        sources = folder / "sources.txt"
        sources.write_text(
            "".join(f"{name} {url}\n" for name, url in zip(names, urls, strict=True))
        )
        extra = [] if args.in_flight is None else ["--max-in-flight", str(args.in_flight)]
        command = client_command(
            server.urls.grpc, wire, ["--sources", str(sources)], folder / "p", record
        )
        clients = [Client(command + extra)]
    else:
        clients = [
            Client(
                client_command(
                    server.urls.grpc, wire, [url], folder / f"p-{name}", record, args.batch_size
                )
            )
            for name, url in zip(names, urls, strict=True)
        ]
    deadline = time.monotonic() + 120
    ports = {int(url.rsplit(":", 1)[1]) for url in urls}
    while not ports <= udp_ports_bound():
        if time.monotonic() > deadline or any(c.process.poll() is not None for c in clients):
            for client in clients:
                client.wait(0)
            said = [line for client in clients for line in client.lines][-3:]
            raise SystemExit("clients did not start: " + " | ".join(said))
        time.sleep(0.05)
    load = os.getloadavg()[0]
    for client in clients:
        client.mark()
    triton_before = benchlib.triton_compute(stats_client)
    server_cpu = benchlib.server_cpu_seconds(server)
    started = time.monotonic()
    sender = multiprocessing.get_context("spawn").Process(
        target=fan_out, args=(str(clip), urls, fps, args.seconds)
    )
    sender.start()
    sender.join(args.seconds + 60)
    codes = [client.wait(60) for client in clients]
    seconds = time.monotonic() - started
    triton = benchlib.delta(benchlib.triton_compute(stats_client), triton_before)
    server_cpu = benchlib.server_cpu_seconds(server) - server_cpu
    streams = {name: stream_figures(folder / f"p-{name}.jsonl", fps, args.warmup) for name in names}
    processed = sum(s["processed"] for s in streams.values())
    sent = round(args.seconds * fps)
    p95s = [s["p95_s"] for s in streams.values() if s["p95_s"] is not None]
    worst_p95 = max(p95s) if len(p95s) == n else None
    worst_skipped = max(s["skipped_steady"] for s in streams.values())
    return {
        "mode": mode,
        "wire": wire,
        "fps": fps,
        "streams": n,
        "exit_codes": codes,
        "load_before": round(load, 2),
        "sent_per_stream": sent,
        "per_stream": streams,
        "p50_median_s": benchlib.median([s["p50_s"] for s in streams.values() if s["p50_s"]]),
        "p95_worst_s": worst_p95,
        "skipped_steady_worst": worst_skipped,
        "skipped_whole_mean": 1 - processed / (n * sent),
        "explained_fps": processed / args.seconds,
        "mean_batch": triton["inferences"] / triton["executions"] if triton["executions"] else 0,
        "client_cores": sum(c.cpu_s for c in clients) / seconds,
        "server_cores": server_cpu / seconds,
        "held": worst_p95 is not None and worst_p95 <= HELD_P95_S and worst_skipped <= HELD_SKIPPED,
        "errors": [line for c in clients for line in c.lines if "error" in line][:5],
    }


# --------------------------------------------------------------------------- report


def steady_fps(run: dict[str, Any]) -> float:
    """Frames/s explained over all streams in the steady part of a run."""
    return sum(run["fps"] * (1 - s["skipped_steady"]) for s in run["per_stream"].values())


def report(
    runs: list[dict[str, Any]], args: argparse.Namespace, machine: dict, command: str
) -> str:
    headers = [
        "mode", "wire", "frames/s", "streams", "p50 ms (median stream)", "p95 ms (worst stream)",
        "p95 / 1 stream's", "skipped, steady (worst stream)", "skipped, whole run (mean)",
        "explained/s (all)", "Triton mean batch", "client cores", "Triton cores", "held",
        "load",
    ]  # fmt: skip
    rows = []
    base: dict[tuple, float] = {}
    for run in runs:
        key = (run["mode"], run["wire"], run["fps"])
        if run["streams"] == min(args.streams) and run["p95_worst_s"]:
            base[key] = run["p95_worst_s"]
    for run in runs:
        key = (run["mode"], run["wire"], run["fps"])
        p95 = run["p95_worst_s"]
        rows.append([
            run["mode"], run["wire"], f"{run['fps']:g}", run["streams"],
            f"{1000 * run['p50_median_s']:.0f}" if np.isfinite(run["p50_median_s"]) else "-",
            f"{1000 * p95:.0f}" if p95 else "-",
            f"{p95 / base[key]:.1f}" if p95 and key in base else "-",
            f"{100 * run['skipped_steady_worst']:.0f} %",
            f"{100 * run['skipped_whole_mean']:.0f} %",
            f"{run['explained_fps']:.1f}", f"{run['mean_batch']:.1f}",
            f"{run['client_cores']:.2f}", f"{run['server_cores']:.2f}",
            "yes" if run["held"] else "no", run["load_before"],
        ])  # fmt: skip
    _text, table = benchlib.table(headers, rows)
    lines = []
    for key in sorted({(r["mode"], r["wire"], r["fps"]) for r in runs}):
        mine = [r for r in runs if (r["mode"], r["wire"], r["fps"]) == key]
        held = [r["streams"] for r in mine if r["held"]]
        most = max(steady_fps(r) for r in mine)
        full = (
            f"; {max(held)} x {key[2]:g} / {most:.1f} = {max(held) * key[2] / most:.2f}"
            if held
            else ""
        )
        lines.append(
            f"- {key[0]} process{'es' if key[0] == 'separate' else ''}, {key[1]}, "
            f"{key[2]:g} frames/s: largest number of streams held "
            f"{max(held) if held else 'none'} (of {', '.join(str(r['streams']) for r in mine)})"
            f"{full}"
        )
    load = machine["load_average"]
    return (
        f"# Streams per server ({machine['time']}, {machine['cpus']} CPUs, load {load} at the "
        f"start)\n\n"
        f"`{command}`\n\n"
        f"{len(args.streams)} stream counts, sources {SIZE[0]}x{SIZE[1]} sent for "
        f"{args.seconds:g} s; steady part from {args.warmup:g} s after each stream's first "
        f"explained frame; held: every stream p95 <= {1000 * HELD_P95_S:.0f} ms and <= "
        f"{100 * HELD_SKIPPED:.0f} % skipped. One process: `--sources` (8 requests in flight "
        f"over all streams, 2 of one frame each); separate: one `gradcam-video` per source "
        f"(2 requests in flight, one frame each). Both take a stream's newest frame. 'load' is "
        f"the 1-minute load average before each run (the other users of this machine). After "
        f"each largest number held: held x rate / most frames/s explained (steady part) in "
        f"that case, how full the server ran while latency stayed bounded.\n\n"
        + "\n".join(lines)
        + f"\n\n{table}\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        saved = argparse.Namespace(**{**data["args"], "output_dir": args.output_dir})
        runs = [r for r in data["runs"] if not (r["mode"] == "separate" and r["streams"] == 1)]
        print(save(runs, saved, data["machine"], data.get("command")))
        return 0
    machine = benchlib.machine_info()
    runs: list[dict[str, Any]] = []
    with benchlib.work_dir(args.keep) as work:
        repository = work / "repository"
        benchlib.export_model(benchlib.load_source(MODEL), repository, MODEL)
        clips = {fps: encode_clip(work / f"clip-{fps:g}.ts", fps, SIZE) for fps in args.rates}
        with benchlib.running_triton(repository, work) as server:
            stats_client = GradcamServer(server.urls.grpc, MODEL)
            stats_client.model_info()
            for fps in args.rates:
                for wire in args.wires:
                    for n in args.streams:
                        for mode in args.modes:
                            if mode == "separate" and n == 1 and "one" in args.modes:
                                continue  # the same as one process with one source
                            run = live_run(
                                server, stats_client, clips[fps], args, work, n, fps, wire, mode
                            )
                            runs.append(run)
                            save(runs, args, machine)
                            p95 = run["p95_worst_s"]
                            log(
                                f"{mode} {wire} {fps:g} frames/s x {n}: p95 worst "
                                f"{f'{1000 * p95:.0f}' if p95 else '-'} ms, "
                                f"skipped worst {100 * run['skipped_steady_worst']:.0f} %, "
                                f"{run['explained_fps']:.1f}/s, batch {run['mean_batch']:.1f}, "
                                f"load {run['load_before']}"
                            )
    print(save(runs, args, machine))
    return 0


def save(
    runs: list[dict[str, Any]],
    args: argparse.Namespace,
    machine: dict,
    command: str | None = None,
) -> str:
    """Write the results so far (after every run: a long run stopped early keeps its figures)."""
    runs = list(runs)
    for run in list(runs):  # one process with one source stands for the separate case too
        if run["mode"] == "one" and run["streams"] == 1 and "separate" in args.modes:
            runs.append({**run, "mode": "separate"})
    runs.sort(key=lambda r: (r["fps"], r["wire"], r["mode"], r["streams"]))
    command = command or " ".join([".venv/bin/python", "bench/live_scale.py", *sys.argv[1:]])
    markdown = report(runs, args, machine, command)
    data = {"machine": machine, "command": command, "args": vars(args), "runs": runs}
    benchlib.write_results(NAME, data, markdown, args.output_dir)
    return markdown


if __name__ == "__main__":
    sys.exit(main())
