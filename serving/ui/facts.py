"""What each page shows, read from the registry and the store (never written): plain
dataclasses the templates render, for the web UI and the report alike."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mfstore.block import LayerBlock
from mfstore.errors import Fix, NotFoundError
from mfstore.lineage_graph import Graph
from mfstore.registry import (
    DatasetRecord,
    ExportRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
)
from mfstore.usage import Usage, first_by_digest, used_by
from mfstore.verify import StreamCheck
from mfstore.workspace import Workspace
from serving.ui.checks import Checks, Measured


@dataclass
class Filters:
    """Search and filter: a part of the name, a dataset, a status (empty = any)."""

    q: str = ""
    dataset: str = ""
    status: str = ""

    def keep(self, name: str, dataset: str, status: str) -> bool:
        return ((not self.q or self.q.lower() in name.lower())
                and (not self.dataset or dataset == self.dataset)
                and (not self.status or status == self.status))


@dataclass
class LayerRow:
    layer: LayerVersion
    status: str  # ok | damaged | deleted, as checked now
    aliases: list[str]


@dataclass
class NetworkRow:
    network: NetworkVersion
    status: str
    aliases: list[str]
    layers: list[LayerVersion]


@dataclass
class StreamRow:
    stream: StreamRecord
    chain: list[str]  # refs where known
    examples: bool  # the dataset's own imported examples


@dataclass
class DatasetPage:
    dataset: DatasetRecord
    streams: list[StreamRow]
    layers: list[LayerVersion]
    networks: list[NetworkVersion]


@dataclass
class LayerPage:
    layer: LayerVersion
    status: str
    problems: list[str]
    fixes: list[Fix]
    aliases: list[str]
    block: LayerBlock | None
    lineage: list[tuple[str, LayerVersion | None]]  # (digest, the version computing it)
    dataset: DatasetRecord | None
    usage: Usage
    versions: list[LayerVersion]  # every version of this name
    repaired_by: list[LayerVersion]
    block_bytes: int | None

    @property
    def history(self) -> dict[str, Any]:
        return self.block.history if self.block is not None else {}


@dataclass
class NetworkLayer:
    position: int
    layer: LayerVersion
    problems: list[str]
    fix: Fix | None
    history: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetworkPage:
    network: NetworkVersion
    aliases: list[str]
    layers: list[NetworkLayer]
    streams: list[StreamCheck]
    measured: Measured
    exports: list[ExportRecord]
    versions: list[NetworkVersion]

    @property
    def damaged(self) -> bool:
        return any(x.problems for x in self.layers) or any(not s.ok for s in self.streams)


def find_layer(ws: Workspace, name: str, version: int) -> LayerVersion:
    """A layer version, deleted ones included (they are shown, marked deleted)."""
    found = [v for v in ws.registry.layers(name) if v.version == version]
    if not found:
        raise NotFoundError(f"layer {name!r} has no version {version}")
    return found[0]


def find_network(ws: Workspace, name: str, version: int) -> NetworkVersion:
    found = [n for n in ws.registry.networks(name) if n.version == version]
    if not found:
        raise NotFoundError(f"network {name!r} has no version {version}")
    return found[0]


def network_versions(ws: Workspace, network: NetworkVersion,
                     known: dict[tuple[str, int], LayerVersion] | None = None
                     ) -> list[LayerVersion]:
    """The network's layer versions, from `known` (every version, read once) when given."""
    if known is not None:
        return [known[pair] for pair in network.layers]
    return [find_layer(ws, n, v) for n, v in network.layers]


class Aliases:
    """Aliases by kind and name, each name's read once."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.found: dict[tuple[str, str], dict[str, int]] = {}

    def of(self, kind: str, name: str, version: int) -> list[str]:
        if (kind, name) not in self.found:
            self.found[(kind, name)] = self.ws.registry.aliases(kind, name)
        return sorted(a for a, v in self.found[(kind, name)].items() if v == version)


def _aliases(ws: Workspace, kind: str, name: str, version: int) -> list[str]:
    return Aliases(ws).of(kind, name, version)


def layer_status(checks: Checks, layer: LayerVersion) -> str:
    if layer.status == "deleted":
        return "deleted"
    return "damaged" if checks.layer_problems(layer) else "ok"


def live_graph(ws: Workspace, checks: Checks, graph: Graph) -> Graph:
    """The lineage graph with each layer's status as checked now, and each network damaged
    where a layer it holds is."""
    layers = {v.ref: v for v in ws.registry.layers()}
    damaged = {ref for ref, v in layers.items() if layer_status(checks, v) == "damaged"}
    networks = {n.ref: n for n in ws.registry.networks()}
    out = Graph(edges=list(graph.edges))
    for node_id, node in graph.nodes.items():
        holds = networks[node.label].layers if node.kind == "network" else ()
        broken = node.label in damaged if node.kind == "layer" else any(
            f"{n}@{v}" in damaged for n, v in holds)
        out.nodes[node_id] = replace(node, status="damaged" if broken else node.status)
    return out


def layer_rows(ws: Workspace, checks: Checks, filters: Filters) -> list[LayerRow]:
    rows, aliases = [], Aliases(ws)
    for layer in ws.registry.layers():
        status = layer_status(checks, layer)
        if filters.keep(layer.ref, layer.dataset, status):
            rows.append(LayerRow(layer, status, aliases.of("layer", layer.name, layer.version)))
    return rows


def network_rows(ws: Workspace, checks: Checks, filters: Filters) -> list[NetworkRow]:
    rows, aliases = [], Aliases(ws)
    known = {(v.name, v.version): v for v in ws.registry.layers()}
    for network in ws.registry.networks():
        layers = network_versions(ws, network, known)
        status = network.status if network.status == "deleted" else (
            "damaged" if any(layer_status(checks, v) == "damaged" for v in layers) else "ok")
        if filters.keep(network.ref, network.dataset, status):
            rows.append(NetworkRow(network, status, aliases.of("network", network.name,
                                                               network.version), layers))
    return rows


def dataset_rows(ws: Workspace, filters: Filters) -> list[DatasetRecord]:
    """Datasets whose name contains the search text."""
    return [d for d in ws.registry.datasets() if filters.q.lower() in d.name.lower()]


def dataset_page(ws: Workspace, name: str) -> DatasetPage:
    dataset = ws.registry.dataset(name)
    by_digest = first_by_digest(ws.registry.layers())
    streams = [StreamRow(s, [by_digest[d].ref if d in by_digest else d[:12] for d in s.chain],
                         s.id == dataset.stream_id)
               for s in ws.registry.streams() if s.dataset_fingerprint == dataset.fingerprint]
    streams.sort(key=lambda row: (len(row.chain), row.chain))
    return DatasetPage(dataset, streams,
                       [v for v in ws.registry.layers() if v.dataset == name],
                       [n for n in ws.registry.networks() if n.dataset == name])


def _read_block(ws: Workspace, layer: LayerVersion) -> tuple[LayerBlock | None, int | None]:
    """The block as stored (even a damaged one, when its bytes still parse) and its size."""
    stored = ws.read_block(layer)
    return stored.block, None if stored.data is None else len(stored.data)


def _layer_fixes(ws: Workspace, layer: LayerVersion) -> list[Fix]:
    """How to mend a damaged layer: repair it in the networks that hold it."""
    pair = (layer.name, layer.version)
    fixes = [Fix("repair", {"network": n.ref, "layer": n.layers.index(pair) + 1})
             for n in ws.registry.networks() if n.status != "deleted" and pair in n.layers]
    return fixes or [Fix("repair", {"auto": True})]


def layer_page(ws: Workspace, checks: Checks, name: str, version: int) -> LayerPage:
    layer = find_layer(ws, name, version)
    problems = checks.layer_problems(layer)
    block, size = _read_block(ws, layer)
    by_digest = first_by_digest(ws.registry.layers())
    versions = ws.registry.layers(name)
    datasets = {d.fingerprint: d for d in ws.registry.datasets()}
    return LayerPage(
        layer, layer_status(checks, layer), problems,
        _layer_fixes(ws, layer) if problems else [],
        _aliases(ws, "layer", name, layer.version), block,
        [(d, by_digest.get(d)) for d in layer.signature.chain],
        datasets.get(layer.signature.dataset_fingerprint), used_by(ws.registry, layer),
        versions, [v for v in versions if v.repairs == layer.version], size)


def _network_layer(ws: Workspace, checks: Checks, network: NetworkVersion, position: int,
                   layer: LayerVersion) -> NetworkLayer:
    problems = checks.layer_problems(layer)
    block = None if problems else _read_block(ws, layer)[0]
    fix = Fix("repair", {"network": network.ref, "layer": position}) if problems else None
    return NetworkLayer(position, layer, problems, fix, block.history if block else {})


def network_page(ws: Workspace, checks: Checks, name: str, version: int) -> NetworkPage:
    network = find_network(ws, name, version)
    versions = network_versions(ws, network)
    layers = [_network_layer(ws, checks, network, k, v) for k, v in enumerate(versions, 1)]
    streams = checks.streams(network, versions)
    damaged = any(x.problems for x in layers) or any(not s.ok for s in streams)
    return NetworkPage(network, _aliases(ws, "network", name, network.version), layers,
                       streams, checks.accuracy(network, versions, damaged),
                       [e for e in ws.registry.exports(name) if e.version == network.version],
                       ws.registry.networks(name))

