"""`verify`: is every block readable, unchanged (sha256) and finite, is every stream a network
depends on complete and unchanged, and does every layer still reach the accuracy recorded when
it was trained? Damaged layer versions and streams are marked in the registry."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from mfstore.block import LayerBlock
from mfstore.devices import resolve_device
from mfstore.errors import ConfigError, Fix, IntegrityError
from mfstore.evaluation import stack_metrics
from mfstore.network import network_layers, resolve_network
from mfstore.registry import (
    DatasetRecord,
    LayerVersion,
    NetworkVersion,
    Registry,
    StreamRecord,
)
from mfstore.stream import StreamBatches, stream_id, stream_problems
from mfstore.stream_chain import chain_stream
from mfstore.usage import Snapshot, first_by_digest
from mfstore.workspace import Workspace, block_path


@dataclass
class LayerCheck:
    layer: LayerVersion
    position: int | None  # 1-based place in the verified network
    problems: list[str] = field(default_factory=list)
    accuracy: float | None = None  # measured now, with a dataset
    recorded: float | None = None  # recorded at training time
    note: str = ""
    fixes: list[Fix] = field(default_factory=list)
    repaired_by: str | None = None  # a newer version that repairs this one

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class StreamCheck:
    id: str
    dataset: str
    chain: list[str]  # the layers that made it (refs where known), input side first
    problems: list[str] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    network: NetworkVersion | None
    checks: list[LayerCheck]
    dataset: str | None
    streams: list[StreamCheck] = field(default_factory=list)

    @property
    def damaged(self) -> list[LayerCheck]:
        """Damaged layers that need mending: in the whole store, a version another version
        already repairs does not (it is kept for the networks that still name it)."""
        return [c for c in self.checks if not c.ok
                and (self.network is not None or c.repaired_by is None)]

    @property
    def damaged_streams(self) -> list[StreamCheck]:
        return [s for s in self.streams if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.damaged_streams


def check_tolerance(tolerance: float) -> float:
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 1):
        raise ConfigError(f"the accuracy tolerance must lie in [0, 1] (a fraction: 0.02 = 2 "
                          f"points), got {tolerance}")
    return tolerance


def block_problems(ws: Workspace, layer: LayerVersion) -> tuple[list[str], LayerBlock | None]:
    """Problems with the block file, and the block when its bytes still parse."""
    stored = ws.read_block(layer)
    where = ws.store.url_of(block_path(layer.block_sha256))
    if stored.data is None:
        return [f"its block file {where} is missing or unreadable"], None
    problems = [] if stored.intact else [
        f"its block file {where} does not match its sha256 (changed, flipped or truncated bytes)"]
    if stored.block is None:
        return [*problems, "its block file is not a readable layer block"], None
    bad = [name for name, t in stored.block.tensors.items() if not torch.isfinite(t).all()]
    if bad:
        problems.append(f"non-finite values in {', '.join(bad)}")
    return problems, stored.block


def layer_accuracy(ws: Workspace, block: LayerBlock, dataset: DatasetRecord,
                   upstream: Sequence[LayerVersion], device: torch.device) -> float:
    """Test accuracy of one layer on its own, fed by the stream of `upstream`."""
    manifest = chain_stream(ws, dataset, upstream, device)
    source = StreamBatches(ws.store, manifest, "test", options=ws.stream_options)
    return stack_metrics([block.to_layer()], source, device).accuracies[0]


def _layer_fix(snap: Snapshot, layer: LayerVersion, network: NetworkVersion | None,
               position: int | None) -> Fix:
    if network is not None and position is not None:
        return Fix("repair", {"network": network.ref, "layer": position})
    pair = (layer.name, layer.version)
    for net in snap.networks:
        if pair in net.layers:
            return Fix("repair", {"network": net.ref, "layer": net.layers.index(pair) + 1})
    return Fix("repair", {"auto": True})


@dataclass(frozen=True)
class Recorded:
    """The registry's streams and datasets, read once (a page checks many networks)."""

    streams: dict[str, StreamRecord]  # by id
    datasets: list[DatasetRecord]

    @classmethod
    def read(cls, registry: Registry) -> Recorded:
        return cls({s.id: s for s in registry.streams()}, registry.datasets())


def streams_in_scope(recorded: Recorded, network: NetworkVersion,
                     layers: list[LayerVersion]) -> dict[str, tuple[str, list[str]]]:
    """Stream id -> (dataset name, chain refs) of the streams a network reads: its dataset's
    examples and every recorded prefix of its chain."""
    dataset = next(d for d in recorded.datasets if d.name == network.dataset)
    out = {dataset.stream_id: (dataset.name, list[str]())}
    for k in range(1, len(layers) + 1):
        sid = stream_id(dataset.fingerprint, [v.digest for v in layers[:k]])
        if sid in recorded.streams:
            out[sid] = (dataset.name, [v.ref for v in layers[:k]])
    return out


def _every_stream(ws: Workspace, recorded: Recorded) -> dict[str, tuple[str, list[str]]]:
    """Every dataset's examples and every recorded stream, for verifying the whole store."""
    names = {d.fingerprint: d.name for d in recorded.datasets}
    producers = first_by_digest(ws.registry.layers())
    out = {d.stream_id: (d.name, list[str]()) for d in recorded.datasets}
    for s in recorded.streams.values():
        out.setdefault(s.id, (names.get(s.dataset_fingerprint, "?"),
                              [producers[d].ref if d in producers else d[:12]
                               for d in s.chain]))
    return out


def check_streams(ws: Workspace, network: NetworkVersion | None, layers: list[LayerVersion],
                  problems: Callable[[str], list[str]] | None = None,
                  recorded: Recorded | None = None) -> list[StreamCheck]:
    """The streams network `network` reads (every stream without one), each with what is
    wrong with it: `problems(stream id)`, by default every shard read now."""
    find = problems or (lambda sid: stream_problems(ws.store, sid))
    recorded = recorded or Recorded.read(ws.registry)
    scope = (streams_in_scope(recorded, network, layers) if network is not None
             else _every_stream(ws, recorded))
    fix = Fix("repair", {"network": network.ref, "auto": True} if network else {"auto": True})
    checks = []
    for sid, (dataset, chain) in scope.items():
        check = StreamCheck(sid, dataset, chain, find(sid))
        if not check.ok:
            check.fixes.append(fix)
        checks.append(check)
    return checks


def _scope(ws: Workspace, ref: str | None) -> tuple[NetworkVersion | None, list[LayerVersion]]:
    if ref is not None:
        network = resolve_network(ws, ref)
        return network, network_layers(ws, network)
    return None, [v for v in ws.registry.layers() if v.status != "deleted"]


def verify(ws: Workspace, ref: str | None = None, dataset_name: str | None = None,
           tolerance: float = 0.02, device: str = "auto",
           streams: bool = True) -> VerifyReport:
    """Check the blocks of network `ref` (or of every live layer version) and, with `streams`,
    the streams they depend on; with a dataset, compare each layer's test accuracy on it with
    the accuracy recorded at training time."""
    check_tolerance(tolerance)
    dev = resolve_device(device)
    ws.store  # noqa: B018 - a store that is not there is an error, even with nothing to check
    network, layers = _scope(ws, ref)
    dataset = ws.registry.dataset(dataset_name) if dataset_name else None
    snap = Snapshot.read(ws.registry)
    by_digest = first_by_digest(snap.layers)
    stream_checks = check_streams(ws, network, layers) if streams else []
    broken = {s.id for s in stream_checks if not s.ok}
    repaired_by = {(v.name, v.repairs): v.ref for v in snap.layers if v.repairs is not None}
    checks: list[LayerCheck] = []
    intact: dict[str, bool] = {}  # digest -> block intact, for the layers checked so far
    for i, layer in enumerate(layers):
        check = LayerCheck(layer, i + 1 if network else None,
                           repaired_by=repaired_by.get((layer.name, layer.version)))
        check.problems, block = block_problems(ws, layer)
        intact[layer.digest] = intact.get(layer.digest, False) or not check.problems
        if dataset is not None and block is not None:
            _check_accuracy(ws, check, block, dataset, by_digest, intact, broken, tolerance,
                            dev)
        if not check.ok and check.repaired_by is None:
            check.fixes.append(_layer_fix(snap, layer, network, check.position))
        checks.append(check)
    _record(ws, checks, stream_checks)
    return VerifyReport(network, checks, dataset.name if dataset else None, stream_checks)


def _record(ws: Workspace, checks: list[LayerCheck], streams: list[StreamCheck]) -> None:
    for check in checks:
        status = "ok" if check.ok else "damaged"
        if check.layer.status != status:
            ws.registry.set_layer_status(check.layer.name, check.layer.version, status)
    for stream in streams:
        ws.registry.set_stream_status(stream.id, "ok" if stream.ok else "damaged")


def _check_accuracy(ws: Workspace, check: LayerCheck, block: LayerBlock, dataset: DatasetRecord,
                    by_digest: dict[str, LayerVersion], intact: dict[str, bool],
                    broken: set[str], tolerance: float, device: torch.device) -> None:
    chain = check.layer.signature.chain
    if not all(d in by_digest and intact.get(d, True) for d in chain):
        check.note = "accuracy not checked: an upstream layer is damaged or unknown"
        return
    upstream = [by_digest[d] for d in chain]
    if any(stream_id(dataset.fingerprint, chain[:k]) in broken for k in range(len(chain) + 1)):
        check.note = "accuracy not checked: its input stream is damaged"
        return
    check.accuracy = layer_accuracy(ws, block, dataset, upstream, device)
    check.recorded = check.layer.metrics.get("test_accuracy")
    if check.recorded is not None and check.recorded - check.accuracy > tolerance:
        check.problems.append(
            f"test accuracy {check.accuracy:.2%} against {check.recorded:.2%} recorded at "
            f"training (a drop of {100 * (check.recorded - check.accuracy):.1f} points, more "
            f"than the {100 * tolerance:.1f} tolerated)")


def require_intact(ws: Workspace, layers: Sequence[LayerVersion]) -> None:
    """Refuse to build on a layer marked damaged or whose block is damaged now (marked so)."""
    snap = Snapshot.read(ws.registry)
    for layer in layers:
        problems = ["it is marked damaged"] if layer.status == "damaged" else (
            block_problems(ws, layer)[0])
        if problems:
            if layer.status != "damaged":
                ws.registry.set_layer_status(layer.name, layer.version, "damaged")
            raise IntegrityError(f"layer {layer.ref} is damaged ({'; '.join(problems)}); "
                                 "nothing was built on it",
                                 _layer_fix(snap, layer, None, None))
