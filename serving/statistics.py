"""Per model version statistics in Triton's schema (`/stats`, gRPC `ModelStatistics`), and the
histograms `/metrics` adds: the one record of what a version has done. Requests only add to
integers here (cheap enough for every request); `/metrics` reads them when scraped.

Durations are cumulative nanoseconds. `success` and `fail` time whole requests; `queue` is
the wait for a batch; `compute_input` (gathering a batch), `compute_infer` (ONNX Runtime) and
`compute_output` (splitting it) are counted once per request in `inference_stats` and once per
execution in `batch_stats`, keyed by the batch's size, as Triton does.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

from tritonclient.grpc import service_pb2 as pb

PARTS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
         "cache_hit", "cache_miss")
COMPUTE = ("compute_input", "compute_infer", "compute_output")
REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")  # Triton's failure reasons
LATENCY_BOUNDS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0,
                  2.5, 5.0, 10.0)  # seconds
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
HISTOGRAMS = ("latency", "queue", "batch_size")  # VersionStats' histogram fields


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}

    def to_proto(self) -> pb.StatisticDuration:
        return pb.StatisticDuration(count=self.count, ns=self.ns)


@dataclass
class Histogram:
    """Counts of observations per bucket (the last: above every bound), and their sum."""
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total


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
    parts: dict[str, Duration] = field(default_factory=lambda: {p: Duration() for p in PARTS})
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    batches: dict[int, dict[str, Duration]] = field(default_factory=dict)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BOUNDS))
    queue: Histogram = field(default_factory=lambda: Histogram(LATENCY_BOUNDS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BOUNDS))

    def request_done(self, ns: int, failure: str | None = None) -> None:
        """A request answered (`failure` None) or failed for a reason (`failure_reason`)."""
        self.parts["fail" if failure else "success"].add(ns)
        self.last_inference_ms = time.time_ns() // 1_000_000
        if failure:
            self.failures[failure] += 1
        else:
            self.latency.observe(ns / 1e9)

    def executed(self, run: Execution) -> None:
        self.execution_count += 1
        self.inference_count += run.rows
        p = self.parts
        for queued in run.queue_ns:
            p["queue"].add(queued)
            self.queue.observe(queued / 1e9)
        batch = self.batches.get(run.rows)
        if batch is None:
            batch = self.batches[run.rows] = {k: Duration() for k in COMPUTE}
        for part, ns in zip(COMPUTE, (run.input_ns, run.infer_ns, run.output_ns), strict=True):
            p[part].add(ns * run.requests, run.requests)
            batch[part].add(ns)
        self.batch_size.observe(run.rows)

    def add(self, other: VersionStats) -> None:
        """Add another process's record of the same version (`serve --workers`)."""
        for part, d in other.parts.items():
            self.parts[part].add(d.ns, d.count)
        for reason, n in other.failures.items():
            self.failures[reason] += n
        for size, parts in other.batches.items():
            mine = self.batches.setdefault(size, {k: Duration() for k in COMPUTE})
            for part, d in parts.items():
                mine[part].add(d.ns, d.count)
        self.inference_count += other.inference_count
        self.execution_count += other.execution_count
        self.last_inference_ms = max(self.last_inference_ms, other.last_inference_ms)
        for h in HISTOGRAMS:
            getattr(self, h).add(getattr(other, h))

    def record(self) -> dict[str, Any]:
        """Everything, as plain data (JSON): what another server process sends to add."""
        return {"name": self.name, "version": self.version,
                "parts": {k: d.to_dict() for k, d in self.parts.items()},
                "failures": self.failures,
                "batches": [[size, {k: d.to_dict() for k, d in b.items()}]
                            for size, b in self.batches.items()],
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "last_inference_ms": self.last_inference_ms,
                "histograms": {h: [getattr(self, h).counts, getattr(self, h).total]
                               for h in HISTOGRAMS}}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> VersionStats:
        stats = cls(r["name"], r["version"],
                    parts={k: Duration(**d) for k, d in r["parts"].items()},
                    failures=dict(r["failures"]),
                    batches={size: {k: Duration(**d) for k, d in b.items()}
                             for size, b in r["batches"]},
                    inference_count=r["inference_count"],
                    execution_count=r["execution_count"],
                    last_inference_ms=r["last_inference_ms"])
        for h, (counts, total) in r["histograms"].items():
            getattr(stats, h).counts, getattr(stats, h).total = list(counts), total
        return stats

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
                **{k: d.to_proto() for k, d in self.parts.items()}),
            batch_stats=[pb.InferBatchStatistics(
                batch_size=size, **{k: d.to_proto() for k, d in b.items()})
                for size, b in sorted(self.batches.items())])


def merged(records: list[VersionStats]) -> list[VersionStats]:
    """One record per (model, version): the sum of every process's, in first-seen order."""
    by_version: dict[tuple[str, int], VersionStats] = {}
    for r in records:
        key = (r.name, r.version)
        if key not in by_version:
            by_version[key] = VersionStats(r.name, r.version)
        by_version[key].add(r)
    return list(by_version.values())
