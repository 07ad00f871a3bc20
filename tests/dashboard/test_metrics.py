"""Parsing Triton's Prometheus metrics into per-model load figures."""

from __future__ import annotations

import http.server
import math
import threading

import pytest

from gradcam_dashboard import metrics

# Triton 2.x output, trimmed: two models, one with two versions, plus server gauges.
TRITON_TEXT = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="tiny",version="1"} 10
nv_inference_request_success{model="effnet",version="1"} 4
nv_inference_request_success{model="effnet",version="2"} 2
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="tiny",reason="BACKEND",version="1"} 1
nv_inference_request_failure{model="tiny",reason="REJECTED",version="1"} 2
# TYPE nv_inference_count counter
nv_inference_count{model="tiny",version="1"} 80
nv_inference_count{model="effnet",version="1"} 12
nv_inference_count{model="effnet",version="2"} 6
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="tiny",version="1"} 5
nv_inference_exec_count{model="effnet",version="1"} 4
nv_inference_exec_count{model="effnet",version="2"} 2
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="tiny",version="1"} 25000
nv_inference_queue_duration_us{model="effnet",version="1"} 600
nv_inference_queue_duration_us{model="effnet",version="2"} 0
nv_inference_compute_infer_duration_us{model="tiny",version="1"} 5000
nv_inference_request_duration_us{model="tiny",version="1"} 40000
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="tiny",version="1"} 3
nv_cpu_utilization 0.25
nv_cpu_memory_used_bytes 1.5e+09
"""


def test_parse_prometheus_reads_names_labels_and_values():
    samples = metrics.parse_prometheus(TRITON_TEXT)
    first = samples[0]
    assert first.name == "nv_inference_request_success"
    assert first.labels == {"model": "tiny", "version": "1"}
    assert first.value == 10
    assert samples[-1].name == "nv_cpu_memory_used_bytes"
    assert samples[-1].labels == {}
    assert samples[-1].value == 1.5e9
    assert not any(s.name.startswith("#") for s in samples)


def test_parse_prometheus_handles_escapes_specials_timestamps_and_junk():
    text = (
        'weird{path="C:\\\\models",quote="say \\"hi\\"",nl="a\\nb",} 1 1700000000000\n'
        "inf_metric +Inf\n"
        "nan_metric NaN\n"
        "this line is not a sample\n"
        'bad_value{model="x"} twelve\n'
        "   \n"
    )
    samples = {s.name: s for s in metrics.parse_prometheus(text)}
    assert samples["weird"].labels == {"path": "C:\\models", "quote": 'say "hi"', "nl": "a\nb"}
    assert samples["weird"].value == 1
    assert samples["inf_metric"].value == math.inf
    assert math.isnan(samples["nan_metric"].value)
    assert set(samples) == {"weird", "inf_metric", "nan_metric"}


def test_server_load_sums_versions_and_reasons_and_derives_figures():
    load = metrics.server_load(metrics.parse_prometheus(TRITON_TEXT), time=5.0)
    assert list(load.models) == ["effnet", "tiny"]
    tiny, effnet = load.models["tiny"], load.models["effnet"]
    assert tiny.requests == 10 and tiny.failures == 3 and tiny.pending == 3
    assert tiny.mean_batch == pytest.approx(16.0)  # 80 frames in 5 executions
    assert tiny.mean_queue_ms == pytest.approx(2.5)  # 25 ms over 10 requests
    assert tiny.mean_request_ms == pytest.approx(4.0)
    assert effnet.requests == 6 and effnet.inferences == 18 and effnet.executions == 6
    assert effnet.mean_batch == pytest.approx(3.0)
    assert effnet.mean_queue_ms == pytest.approx(0.1)
    assert load.cpu_utilization == pytest.approx(0.25)
    total = load.total
    assert total.requests == 16 and total.inferences == 98 and total.executions == 11


def test_figures_of_an_idle_model_are_unknown_not_a_division_by_zero():
    idle = metrics.ModelLoad("idle")
    assert idle.mean_batch is None and idle.mean_queue_ms is None and idle.mean_request_ms is None


def _load(time: float, requests: float, frames: float, executions: float, queue_us: float):
    text = (
        f'nv_inference_request_success{{model="m",version="1"}} {requests}\n'
        f'nv_inference_count{{model="m",version="1"}} {frames}\n'
        f'nv_inference_exec_count{{model="m",version="1"}} {executions}\n'
        f'nv_inference_queue_duration_us{{model="m",version="1"}} {queue_us}\n'
    )
    return metrics.server_load(metrics.parse_prometheus(text), time)


def test_recent_figures_come_from_the_growth_between_two_samples():
    earlier = _load(10.0, requests=100, frames=400, executions=100, queue_us=100_000)
    now = _load(12.0, requests=110, frames=480, executions=105, queue_us=130_000)
    recent = metrics.recent(now, earlier)
    model = recent["m"]
    assert model.seconds == pytest.approx(2.0)
    assert model.requests_per_s == pytest.approx(5.0)
    assert model.frames_per_s == pytest.approx(40.0)
    assert model.delta.mean_batch == pytest.approx(16.0)  # 80 frames, 5 executions
    assert model.delta.mean_queue_ms == pytest.approx(3.0)  # 30 ms over 10 requests
    assert recent[metrics.TOTAL].requests_per_s == pytest.approx(5.0)


def test_recent_is_empty_without_an_earlier_sample_or_after_a_restart():
    now = _load(12.0, requests=10, frames=10, executions=10, queue_us=0)
    for earlier in (None, _load(10.0, requests=500, frames=500, executions=500, queue_us=0)):
        figures = metrics.recent(now, earlier)
        assert figures["m"].requests_per_s == 0.0
        assert figures["m"].delta.mean_batch is None


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404, "Not Found")
            return
        body = TRITON_TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_read_load_fetches_over_http(metrics_server):
    load = metrics.read_load(f"{metrics_server}/metrics", time=1.0)
    assert load.models["tiny"].requests == 10


def test_fetch_failures_are_one_line_messages(metrics_server):
    with pytest.raises(metrics.MetricsUnavailable, match="HTTP 404"):
        metrics.fetch_metrics(f"{metrics_server}/nope")
    with pytest.raises(metrics.MetricsUnavailable, match="refused"):
        metrics.fetch_metrics("http://127.0.0.1:1/metrics", timeout=1)
    with pytest.raises(metrics.MetricsUnavailable, match="not an http"):
        metrics.fetch_metrics("localhost:8002/metrics")
