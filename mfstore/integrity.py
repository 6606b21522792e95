"""What is intact, checked without torch and without writing: a layer's block (readable,
its sha256 unchanged, finite values) and the streams a network reads (manifest, every
shard's sha256), with the records `verify` reports and the web UI shows. `verify.py` adds
what needs the layers themselves (accuracy against the recorded one) and records damage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_arrays

from mfstore.errors import ConfigError
from mfstore.fixes import AliasFix, Fix, RepairFix
from mfstore.manifest import stream_id, stream_problems
from mfstore.registry import (
    DatasetRecord,
    LayerVersion,
    NetworkVersion,
    Registry,
    StreamRecord,
)
from mfstore.usage import first_by_digest
from mfstore.workspace import StoredBlock, Workspace, block_path


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
class NetworkCheck:
    """A network version that names a damaged layer (whole-store verify)."""

    network: NetworkVersion
    problems: list[str]  # one per damaged layer it names
    repaired_by: str | None = None  # a newer intact version of the same network
    aliases: list[str] = field(default_factory=list)  # its aliases (they still name it)
    fixes: list[Fix] = field(default_factory=list)

    @property
    def needs_mending(self) -> bool:
        """Unless a newer intact version replaces it and no alias still names it."""
        return self.repaired_by is None or bool(self.aliases)


@dataclass
class VerifyReport:
    network: NetworkVersion | None
    checks: list[LayerCheck]
    dataset: str | None
    streams: list[StreamCheck] = field(default_factory=list)
    networks: list[NetworkCheck] = field(default_factory=list)  # whole store: broken ones

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
    def damaged_networks(self) -> list[NetworkCheck]:
        return [n for n in self.networks if n.needs_mending]

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.damaged_streams and not self.damaged_networks


def network_checks(networks: list[NetworkVersion], checks: list[LayerCheck],
                   aliases: dict[str, dict[str, int]]) -> list[NetworkCheck]:
    """Every live network version that names a damaged layer version (`checks`), whether a
    newer intact version of it exists, and its aliases: what `verify NET@VERSION` and
    `verify NET@ALIAS` would fail on."""
    damaged = {(c.layer.name, c.layer.version): c.layer.ref for c in checks if not c.ok}
    out: list[NetworkCheck] = []
    for net in networks:
        problems = [f"its layer {k} {damaged[pair]} is damaged"
                    for k, pair in enumerate(net.layers, 1) if pair in damaged]
        if not problems:
            continue
        newer = [n for n in networks if n.name == net.name and n.version > net.version
                 and not any(pair in damaged for pair in n.layers)]
        by = max(newer, key=lambda n: n.version) if newer else None
        names = sorted(a for a, v in aliases.get(net.name, {}).items() if v == net.version)
        fixes: list[Fix] = ([AliasFix(by.ref, a) for a in names] if by is not None
                            else [RepairFix(net.ref, auto=True)])
        out.append(NetworkCheck(net, problems, by.ref if by else None, names, fixes))
    return out


def check_tolerance(tolerance: float) -> float:
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 1):
        raise ConfigError(f"the accuracy tolerance must lie in [0, 1] (a fraction: 0.02 = 2 "
                          f"points), got {tolerance}")
    return tolerance


def stored_problems(ws: Workspace, layer: LayerVersion, stored: StoredBlock) -> list[str]:
    """What is wrong with a layer's block as stored (`Workspace.read_block`): missing,
    changed bytes, not a block, non-finite values."""
    where = ws.store.url_of(block_path(layer.block_sha256))
    if stored.data is None:
        return [f"its block file {where} is missing or unreadable"]
    problems = [] if stored.intact else [
        f"its block file {where} does not match its sha256 (changed, flipped or truncated bytes)"]
    try:
        arrays = load_arrays(stored.data) if stored.header is not None else None
    except SafetensorError:
        arrays = None
    if arrays is None:
        return [*problems, "its block file is not a readable layer block"]
    bad = [name for name, a in sorted(arrays.items()) if not np.isfinite(a).all()]
    if bad:
        problems.append(f"non-finite values in {', '.join(bad)}")
    return problems


def block_problems(ws: Workspace, layer: LayerVersion) -> list[str]:
    """What is wrong with a layer's block now (its bytes are read)."""
    return stored_problems(ws, layer, ws.read_block(layer))


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
                  problems: Callable[[str, dict[str, int] | None], list[str]] | None = None,
                  recorded: Recorded | None = None) -> list[StreamCheck]:
    """The streams network `network` reads (every stream without one), each with what is
    wrong with it: `problems(stream id, its dataset's counts)`, by default every shard read
    now."""
    find = problems or (lambda sid, counts: stream_problems(ws.store, sid, counts))
    recorded = recorded or Recorded.read(ws.registry)
    counts = {d.name: d.counts for d in recorded.datasets}
    scope = (streams_in_scope(recorded, network, layers) if network is not None
             else _every_stream(ws, recorded))
    fix = RepairFix(network.ref if network else None, auto=True)
    checks = []
    for sid, (dataset, chain) in scope.items():
        check = StreamCheck(sid, dataset, chain, find(sid, counts.get(dataset)))
        if not check.ok:
            check.fixes.append(fix)
        checks.append(check)
    return checks
