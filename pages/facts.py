"""What each page shows, read from the registry and the store (never written): plain
dataclasses the templates render, for the web UI and the report alike. Every status comes
from one `Statuses` per page (`pages.statuses`); long lists come a page at a time."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mfstore.block_header import BlockHeader
from mfstore.errors import ConfigError
from mfstore.fixes import Fix, RepairFix
from mfstore.integrity import StreamCheck
from mfstore.numbers import INT32, NumberError, whole_number
from mfstore.registry import (
    DatasetRecord,
    ExportRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
)
from mfstore.usage import Usage, first_by_digest, used_by
from pages.checks import Measured
from pages.statuses import Statuses

PAGE_SIZE = 100
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Filters:
    """Search and filter: a part of the name, a dataset, a status (empty = any), and which
    page of the matches (from 1)."""

    q: str = ""
    dataset: str = ""
    status: str = ""
    page: int = 1

    def keep(self, name: str, dataset: str) -> bool:
        return ((not self.q or self.q.lower() in name.lower())
                and (not self.dataset or dataset == self.dataset))


def page_number(text: str | None) -> int:
    """`?page=` as a page number (1 when absent); anything else is a 400."""
    if text is None or text == "":
        return 1
    try:
        return whole_number(text, 1, INT32)
    except NumberError as err:
        raise ConfigError(f"page {err}") from None


@dataclass
class Listing(Generic[T]):
    """One page of a long list."""

    rows: list[T]
    page: int
    pages: int
    total: int


def listing(items: Sequence[R], filters: Filters, status: Callable[[R], str],
            row: Callable[[R, str], T]) -> Listing[T]:
    """The page of `items` the filters ask for. A status is computed for every item only
    when the filters name one; otherwise for the rows shown."""
    if filters.status:
        items = [x for x in items if status(x) == filters.status]
    pages = max(1, math.ceil(len(items) / PAGE_SIZE))
    page = min(filters.page, pages)
    shown = items[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    return Listing([row(x, status(x)) for x in shown], page, pages, len(items))


@dataclass
class LayerListed:
    layer: LayerVersion
    status: str  # ok | damaged | deleted, as checked now
    aliases: list[str]


@dataclass
class NetworkListed:
    network: NetworkVersion
    status: str
    aliases: list[str]
    layers: list[LayerVersion]


@dataclass
class StreamListed:
    stream: StreamRecord
    chain: list[str]  # refs where known
    examples: bool  # the dataset's own imported examples


@dataclass
class DatasetPage:
    dataset: DatasetRecord
    streams: list[StreamListed]
    layers: list[LayerVersion]
    networks: list[NetworkVersion]


@dataclass
class LayerPage:
    layer: LayerVersion
    status: str
    problems: list[str]
    fixes: list[Fix]
    aliases: list[str]
    block: BlockHeader | None  # the header of its block, None where it cannot be read
    lineage: list[tuple[str, LayerVersion | None]]  # (digest, the version computing it)
    dataset: DatasetRecord | None
    usage: Usage
    versions: list[LayerVersion]  # every version of this name
    repaired_by: list[LayerVersion]
    block_bytes: int | None

    @property
    def history(self) -> dict[str, Any] | None:
        """The block's history; None where its block cannot be read (a deleted layer's may
        be freed by gc)."""
        return self.block.history if self.block is not None else None


@dataclass
class NetworkLayer:
    position: int
    layer: LayerVersion
    status: str
    problems: list[str]
    fix: Fix | None
    history: dict[str, Any] | None = field(default_factory=dict)


@dataclass
class NetworkPage:
    network: NetworkVersion
    status: str  # ok | damaged | deleted, as checked now
    aliases: list[str]
    layers: list[NetworkLayer]
    streams: list[StreamCheck]
    measured: Measured
    exports: list[ExportRecord]
    versions: list[NetworkVersion]


def layer_rows(now: Statuses, filters: Filters) -> Listing[LayerListed]:
    return listing([v for v in now.layers if filters.keep(v.ref, v.dataset)], filters,
                   now.layer, lambda v, status: LayerListed(
                       v, status, now.aliases("layer", v.name, v.version)))


def network_rows(now: Statuses, filters: Filters) -> Listing[NetworkListed]:
    return listing([n for n in now.networks if filters.keep(n.ref, n.dataset)], filters,
                   now.network, lambda n, status: NetworkListed(
                       n, status, now.aliases("network", n.name, n.version), now.layers_of(n)))


def damaged_layers(now: Statuses) -> int:
    """How many live layer versions are damaged now (every block is read)."""
    return sum(now.layer(v) == "damaged" for v in now.layers)


def dataset_rows(now: Statuses, filters: Filters) -> list[DatasetRecord]:
    """Datasets whose name contains the search text."""
    return [d for d in now.datasets if filters.q.lower() in d.name.lower()]


def dataset_page(now: Statuses, name: str) -> DatasetPage:
    dataset = now.ws.registry.dataset(name)
    producers = first_by_digest(now.layers)
    streams = [StreamListed(s, [producers[d].ref if d in producers else d[:12] for d in s.chain],
                         s.id == dataset.stream_id)
               for s in now.ws.registry.streams()
               if s.dataset_fingerprint == dataset.fingerprint]
    streams.sort(key=lambda row: (len(row.chain), row.chain))
    return DatasetPage(dataset, streams, [v for v in now.layers if v.dataset == name],
                       [n for n in now.networks if n.dataset == name])


def _layer_fixes(now: Statuses, layer: LayerVersion) -> list[Fix]:
    """How to mend a damaged live layer: repair it in the live networks that hold it."""
    pair = (layer.name, layer.version)
    fixes: list[Fix] = [RepairFix(n.ref, n.layers.index(pair) + 1)
                        for n in now.networks if n.status != "deleted" and pair in n.layers]
    return fixes or [RepairFix(auto=True)]


def layer_page(now: Statuses, name: str, version: int) -> LayerPage:
    layer = now.layer_version(name, version)
    problems = now.layer_problems(layer)  # none for a deleted layer: nothing to repair
    stored = now.ws.read_block(layer)
    producers = first_by_digest(now.layers)
    versions = [v for v in now.layers if v.name == name]
    datasets = {d.fingerprint: d for d in now.datasets}
    return LayerPage(
        layer, now.layer(layer), problems, _layer_fixes(now, layer) if problems else [],
        now.aliases("layer", name, layer.version), stored.header,
        [(d, producers.get(d)) for d in layer.signature.chain],
        datasets.get(layer.signature.dataset_fingerprint), used_by(now.ws.registry, layer),
        versions, [v for v in versions if v.repairs == layer.version],
        None if stored.data is None else len(stored.data))


def _network_layer(now: Statuses, network: NetworkVersion, position: int,
                   layer: LayerVersion) -> NetworkLayer:
    problems = now.layer_problems(layer)
    live = network.status != "deleted"
    fix = RepairFix(network.ref, position) if (
        problems and live) else None
    history = None if problems else now.ws.read_block(layer).history
    return NetworkLayer(position, layer, now.layer(layer), problems, fix, history)


def network_page(now: Statuses, name: str, version: int) -> NetworkPage:
    """A network's page; a deleted network's too (marked deleted, nothing checked or
    measured for it, no repair offered)."""
    network = now.network_version(name, version)
    versions = now.layers_of(network)
    status = now.network(network)
    return NetworkPage(
        network, status, now.aliases("network", name, network.version),
        [_network_layer(now, network, k, v) for k, v in enumerate(versions, 1)],
        now.streams(network), now.checks.accuracy(network, versions, status),
        [e for e in now.ws.registry.exports(name) if e.version == network.version],
        [n for n in now.networks if n.name == name])
