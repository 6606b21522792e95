"""Prometheus metrics (`/metrics`), read from the served versions' statistics when scraped, so
that they agree with `/stats` by construction and cost requests nothing. Named like Triton's
`nv_inference_*` where they mean the same, and written as Triton writes them: a counter's
samples carry its family name (`nv_inference_count{…}`), not prometheus_client's `_total`
suffix, so a dashboard built for Triton finds them. Latency, queue-time and batch-size
histograms besides; on a machine with an NVIDIA driver, GPU memory (`nv_gpu_memory_*`).

As in Triton, a version's series go when it is unloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from serving.gpu_memory import gpu_memory
from serving.statistics import REASONS, Histogram, VersionStats

LABELS = ["model", "version"]
COUNTERS: list[tuple[str, str, Callable[[VersionStats], float]]] = [
    ("nv_inference_request_success", "Successful inference requests",
     lambda s: s.parts["success"].count),
    ("nv_inference_count", "Inferences performed (examples, not requests)",
     lambda s: s.inference_count),
    ("nv_inference_exec_count", "Model executions (batches)", lambda s: s.execution_count),
    ("nv_inference_request_duration_us", "Cumulative duration of successful requests (us)",
     lambda s: s.parts["success"].ns / 1000),
    ("nv_inference_queue_duration_us", "Cumulative time requests waited for a batch (us)",
     lambda s: s.parts["queue"].ns / 1000),
    ("nv_inference_compute_input_duration_us", "Cumulative time gathering inputs (us)",
     lambda s: s.parts["compute_input"].ns / 1000),
    ("nv_inference_compute_infer_duration_us", "Cumulative time in ONNX Runtime (us)",
     lambda s: s.parts["compute_infer"].ns / 1000),
    ("nv_inference_compute_output_duration_us", "Cumulative time splitting outputs (us)",
     lambda s: s.parts["compute_output"].ns / 1000),
]
HISTOGRAMS: list[tuple[str, str, Callable[[VersionStats], Histogram]]] = [
    ("mfstore_inference_request_duration_seconds", "Duration of successful requests",
     lambda s: s.latency),
    ("mfstore_inference_queue_duration_seconds", "Time a request waited for its batch",
     lambda s: s.queue),
    ("mfstore_inference_batch_size", "Examples per model execution", lambda s: s.batch_size),
]


class StatisticsCollector:
    """A Prometheus collector over whatever versions `served()` returns at scrape time."""

    def __init__(self, served: Callable[[], Iterable[VersionStats]]) -> None:
        self.served = served

    def collect(self) -> Iterator[Metric]:
        stats = list(self.served())
        for name, text, value in COUNTERS:
            family = CounterMetricFamily(name, text, labels=LABELS)
            for s in stats:
                family.add_metric([s.name, str(s.version)], value(s))
            yield family
        failure = CounterMetricFamily("nv_inference_request_failure",
                                      "Failed inference requests", labels=[*LABELS, "reason"])
        for s in stats:
            for reason in REASONS:
                failure.add_metric([s.name, str(s.version), reason], s.failures[reason])
        yield failure
        for name, text, histogram in HISTOGRAMS:
            buckets = HistogramMetricFamily(name, text, labels=LABELS)
            for s in stats:
                h = histogram(s)
                buckets.add_metric([s.name, str(s.version)], _cumulative(h), h.total)
            yield buckets
        yield from _gpu_memory()


def _cumulative(h: Histogram) -> list[tuple[str, float]]:
    running, buckets = 0.0, []
    for bound, count in zip([*map(str, map(float, h.bounds)), "+Inf"], h.counts, strict=True):
        running += count
        buckets.append((bound, running))
    return buckets


def _gpu_memory() -> Iterator[Metric]:
    devices = gpu_memory()
    if not devices:
        return
    used = GaugeMetricFamily("nv_gpu_memory_used_bytes", "GPU used memory", labels=["gpu_uuid"])
    total = GaugeMetricFamily("nv_gpu_memory_total_bytes", "GPU total memory",
                              labels=["gpu_uuid"])
    for uuid, used_bytes, total_bytes in devices:
        used.add_metric([uuid], used_bytes)
        total.add_metric([uuid], total_bytes)
    yield used
    yield total


def exposition(served: Callable[[], Iterable[VersionStats]]) -> bytes:
    """The Prometheus text format of the versions `served()` returns."""
    lines: list[str] = []
    for family in StatisticsCollector(served).collect():
        lines += [f"# HELP {family.name} {_escape(family.documentation, help_text=True)}",
                  f"# TYPE {family.name} {family.type}"]
        for sample in family.samples:
            name = family.name if sample.name == f"{family.name}_total" else sample.name
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            lines.append(f"{name}{{{labels}}} {floatToGoString(sample.value)}" if labels
                         else f"{name} {floatToGoString(sample.value)}")
    return "".join(f"{line}\n" for line in lines).encode()


def _escape(text: str, help_text: bool = False) -> str:
    """A label value (or, with `help_text`, a HELP text) as the text format writes it."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text if help_text else text.replace('"', '\\"')
