"""Prometheus metrics (`/metrics`), named like Triton's `nv_inference_*` where they mean the
same, plus latency, queue-time and batch-size histograms and, on CUDA, GPU memory.

Each server has its own `CollectorRegistry`, so several servers can live in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from serving.gpu_memory import gpu_memory

disable_created_metrics()  # no `_created` series beside each counter: Triton has none
LABELS = ("model", "version")
LATENCY_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0,
                   2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass
class VersionMetrics:
    """The metrics of one model version, their labels bound once."""
    success: Counter
    failure: dict[str, Counter]  # by reason
    inferences: Counter
    executions: Counter
    request_us: Counter
    queue_us: Counter
    compute_input_us: Counter
    compute_infer_us: Counter
    compute_output_us: Counter
    latency: Histogram
    queue: Histogram
    batch_size: Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.success = Counter("nv_inference_request_success", "Successful inference requests",
                               LABELS, registry=r)
        self.failure = Counter("nv_inference_request_failure", "Failed inference requests",
                               (*LABELS, "reason"), registry=r)
        self.count = Counter("nv_inference_count", "Inferences performed (examples, not "
                             "requests)", LABELS, registry=r)
        self.exec_count = Counter("nv_inference_exec_count", "Model executions (batches)",
                                  LABELS, registry=r)
        self.durations = {part: Counter(f"nv_inference_{part}_duration_us",
                                        f"Cumulative {part.replace('_', ' ')} duration in "
                                        "microseconds", LABELS, registry=r)
                          for part in ("request", "queue", "compute_input", "compute_infer",
                                       "compute_output")}
        self.latency = Histogram("mfstore_inference_request_duration_seconds",
                                 "Inference request duration", LABELS, buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.queue = Histogram("mfstore_inference_queue_duration_seconds",
                               "Time a request waited for its batch", LABELS,
                               buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("mfstore_inference_batch_size",
                                    "Examples per model execution", LABELS,
                                    buckets=BATCH_BUCKETS, registry=r)
        self.gpu_used = Gauge("nv_gpu_memory_used_bytes", "GPU used memory", ("gpu_uuid",),
                              registry=r)
        self.gpu_total = Gauge("nv_gpu_memory_total_bytes", "GPU total memory", ("gpu_uuid",),
                               registry=r)

    def for_version(self, model: str, version: int) -> VersionMetrics:
        labels = (model, str(version))
        d = self.durations
        return VersionMetrics(
            self.success.labels(*labels),
            {reason: self.failure.labels(*labels, reason)
             for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER")},
            self.count.labels(*labels), self.exec_count.labels(*labels),
            d["request"].labels(*labels), d["queue"].labels(*labels),
            d["compute_input"].labels(*labels), d["compute_infer"].labels(*labels),
            d["compute_output"].labels(*labels), self.latency.labels(*labels),
            self.queue.labels(*labels), self.batch_size.labels(*labels))

    def exposition(self) -> bytes:
        """The text format, GPU memory read at the moment of the scrape."""
        for uuid, used, total in gpu_memory():
            self.gpu_used.labels(uuid).set(used)
            self.gpu_total.labels(uuid).set(total)
        return generate_latest(self.registry)
