"""Per model version statistics in Triton's schema (`/stats`, gRPC `ModelStatistics`), kept in
step with the Prometheus metrics: both are updated here and nowhere else.

Durations are cumulative nanoseconds. `success` and `fail` time whole requests; `queue` is
the wait for a batch; `compute_input` (gathering a batch), `compute_infer` (ONNX Runtime) and
`compute_output` (splitting it) are counted once per request in `inference_stats` and once per
execution in `batch_stats`, keyed by the batch's size, as Triton does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tritonclient.grpc import service_pb2 as pb

from serving.metrics import Metrics

PARTS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
         "cache_hit", "cache_miss")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class Execution:
    """The timings of one model execution of `rows` examples for `requests` requests."""
    rows: int
    requests: int
    queue_ns: list[int]  # per request
    input_ns: int
    infer_ns: int
    output_ns: int


@dataclass
class VersionStats:
    name: str
    version: int
    metrics: Metrics
    parts: dict[str, Duration] = field(default_factory=lambda: {p: Duration() for p in PARTS})
    batches: dict[int, dict[str, Duration]] = field(default_factory=dict)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0

    def __post_init__(self) -> None:
        self.bound = self.metrics.for_version(self.name, self.version)

    def request_done(self, ns: int, failure: str | None = None) -> None:
        """A request answered (`failure` None) or failed for a reason (`failure_reason`)."""
        self.parts["fail" if failure else "success"].add(ns)
        self.last_inference_ms = time.time_ns() // 1_000_000
        if failure:
            self.bound.failure[failure].inc()
            return
        self.bound.success.inc()
        self.bound.request_us.inc(ns / 1000)
        self.bound.latency.observe(ns / 1e9)

    def executed(self, run: Execution) -> None:
        self.execution_count += 1
        self.inference_count += run.rows
        p, m = self.parts, self.bound
        for queued in run.queue_ns:
            p["queue"].add(queued)
            m.queue.observe(queued / 1e9)
        p["compute_input"].add(run.input_ns * run.requests, run.requests)
        p["compute_infer"].add(run.infer_ns * run.requests, run.requests)
        p["compute_output"].add(run.output_ns * run.requests, run.requests)
        batch = self.batches.setdefault(run.rows, {k: Duration() for k in PARTS[3:6]})
        batch["compute_input"].add(run.input_ns)
        batch["compute_infer"].add(run.infer_ns)
        batch["compute_output"].add(run.output_ns)
        m.inferences.inc(run.rows)
        m.executions.inc()
        m.batch_size.observe(run.rows)
        m.queue_us.inc(sum(run.queue_ns) / 1000)
        m.compute_input_us.inc(run.input_ns * run.requests / 1000)
        m.compute_infer_us.inc(run.infer_ns * run.requests / 1000)
        m.compute_output_us.inc(run.output_ns * run.requests / 1000)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": str(self.version),
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {k: d.to_dict() for k, d in self.parts.items()},
                "batch_stats": [{"batch_size": size, **{k: d.to_dict() for k, d in b.items()}}
                                for size, b in sorted(self.batches.items())],
                "memory_usage": []}

    def to_proto(self) -> pb.ModelStatistics:
        return pb.ModelStatistics(
            name=self.name, version=str(self.version), last_inference=self.last_inference_ms,
            inference_count=self.inference_count, execution_count=self.execution_count,
            inference_stats=pb.InferStatistics(
                **{k: pb.StatisticDuration(count=d.count, ns=d.ns)
                   for k, d in self.parts.items()}),
            batch_stats=[pb.InferBatchStatistics(
                batch_size=size, **{k: pb.StatisticDuration(count=d.count, ns=d.ns)
                                    for k, d in b.items()})
                for size, b in sorted(self.batches.items())])
