"""Server load from Triton's metrics endpoint (Prometheus text format).

Triton's per-model counters only grow; figures "since the server started" are their ratios
(`ModelLoad`), recent figures are ratios of the differences between two samples (`recent`):

- requests: ``nv_inference_request_success`` (plus ``..._failure`` over all reasons);
- mean batch size: ``nv_inference_count / nv_inference_exec_count`` (frames per execution);
- mean queue time: ``nv_inference_queue_duration_us / nv_inference_request_success``;
- pending requests now: the gauge ``nv_inference_pending_request_count``.

The client library has no metrics reader, so this module fetches and parses the text itself.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"\s+(?P<value>\S+)"
    r"(?:\s+(?P<timestamp>-?\d+))?\s*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


TOTAL = "all models"
"""The name under which `ServerLoad.total` and `recent` report the sum over models."""


class MetricsUnavailable(Exception):
    """The metrics endpoint cannot be read (one-line message)."""


@dataclass(frozen=True)
class Sample:
    """One line of Prometheus text: a metric name, its labels and its value."""

    name: str
    labels: dict[str, str]
    value: float


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            raise ValueError(f"bad labels: {text!r}")
        value = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], match.group(2))
        labels[match.group(1)] = value
        pos = match.end()
    return labels


def _value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[text] if text in special else float(text)


def parse_prometheus(text: str) -> list[Sample]:
    """The samples of Prometheus text exposition; comments and malformed lines are skipped."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            labels = _labels(match.group("labels") or "")
            value = _value(match.group("value"))
        except ValueError:
            continue
        samples.append(Sample(match.group("name"), labels, value))
    return samples


_COUNTERS = {
    "nv_inference_request_success": "requests",
    "nv_inference_request_failure": "failures",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_infer_duration_us": "compute_us",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_pending_request_count": "pending",
}


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True)
class ModelLoad:
    """One model's counters (summed over its versions) and the figures derived from them."""

    model: str
    requests: float = 0.0
    failures: float = 0.0
    inferences: float = 0.0  # frames (batch items)
    executions: float = 0.0  # model executions (batches)
    queue_us: float = 0.0
    compute_us: float = 0.0
    request_us: float = 0.0
    pending: float = 0.0  # a gauge: requests waiting now

    @property
    def mean_batch(self) -> float | None:
        """Frames per model execution."""
        return _ratio(self.inferences, self.executions)

    @property
    def mean_queue_ms(self) -> float | None:
        """Milliseconds a request waited in the queue, on average."""
        ratio = _ratio(self.queue_us, self.requests)
        return None if ratio is None else ratio / 1000.0

    @property
    def mean_request_ms(self) -> float | None:
        """Milliseconds from arrival to response, on average."""
        ratio = _ratio(self.request_us, self.requests)
        return None if ratio is None else ratio / 1000.0

    def minus(self, earlier: ModelLoad) -> ModelLoad:
        """The counters' growth since `earlier` (the gauge keeps its current value)."""
        values = {
            name: max(0.0, getattr(self, name) - getattr(earlier, name))
            for name in _COUNTERS.values()
            if name != "pending"
        }
        return ModelLoad(self.model, pending=self.pending, **values)


@dataclass(frozen=True)
class ServerLoad:
    """A metrics sample: per-model load at time `time` (seconds, any monotonic clock)."""

    time: float
    models: dict[str, ModelLoad] = field(default_factory=dict)
    cpu_utilization: float | None = None

    @property
    def total(self) -> ModelLoad:
        """All models together."""
        values = {name: 0.0 for name in _COUNTERS.values()}
        for load in self.models.values():
            for name in values:
                values[name] += getattr(load, name)
        return ModelLoad(TOTAL, **values)


def server_load(samples: Iterable[Sample], time: float = 0.0) -> ServerLoad:
    """Per-model load from parsed samples (versions and failure reasons are summed)."""
    values: dict[str, dict[str, float]] = {}
    cpu = None
    for sample in samples:
        if sample.name == "nv_cpu_utilization":
            cpu = sample.value
        attribute = _COUNTERS.get(sample.name)
        model = sample.labels.get("model")
        if attribute is None or model is None or math.isnan(sample.value):
            continue
        per_model = values.setdefault(model, {})
        per_model[attribute] = per_model.get(attribute, 0.0) + sample.value
    models = {name: ModelLoad(name, **values[name]) for name in sorted(values)}
    return ServerLoad(time, models, cpu)


@dataclass(frozen=True)
class Recent:
    """One model's load between two samples."""

    model: str
    seconds: float
    delta: ModelLoad

    @property
    def requests_per_s(self) -> float:
        return self.delta.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.delta.inferences / self.seconds if self.seconds > 0 else 0.0


def recent(now: ServerLoad, earlier: ServerLoad | None) -> dict[str, Recent]:
    """Per model (and "all models"), the load between `earlier` and `now`.

    Without an earlier sample, or after a server restart (counters went down), the interval
    is empty.
    """
    seconds = now.time - earlier.time if earlier is not None else 0.0
    valid = earlier is not None and seconds > 0 and now.total.requests >= earlier.total.requests
    out = {}
    for name, load in [*now.models.items(), (TOTAL, now.total)]:
        if not valid or earlier is None:
            out[name] = Recent(name, 0.0, load.minus(load))
            continue
        before = earlier.total if name == TOTAL else earlier.models.get(name, ModelLoad(name))
        out[name] = Recent(name, seconds, load.minus(before))
    return out


def fetch_metrics(url: str, timeout: float = 2.0) -> str:
    """The metrics text at `url`; `MetricsUnavailable` with a short reason otherwise."""
    if not url.startswith(("http://", "https://")):
        raise MetricsUnavailable(f"{url}: not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read(8 * 1024 * 1024).decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise MetricsUnavailable(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise MetricsUnavailable(f"{url}: {error.reason}") from None
    except (OSError, ValueError) as error:
        raise MetricsUnavailable(f"{url}: {error}") from None


def read_load(url: str, time: float, timeout: float = 2.0) -> ServerLoad:
    """Fetch and parse the metrics at `url` into a `ServerLoad` stamped `time`."""
    return server_load(parse_prometheus(fetch_metrics(url, timeout)), time)
