"""One page's view of the registry and of what is intact: each registry table read at most once
per page, each thing drawn checked at most once, and one status function for layers and one
for networks, used by every list, filter, graph and page.

    layer   deleted | damaged (its block now, or marked by verify) | ok
    network deleted | damaged (a layer it holds, or a stream it reads) | ok
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

from mfstore.errors import NotFoundError
from mfstore.integrity import Recorded, StreamCheck
from mfstore.lineage_graph import Graph
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion
from mfstore.workspace import Workspace
from pages.checks import Checks


class Statuses:
    """What one page reads and checks; make one per request."""

    def __init__(self, ws: Workspace, checks: Checks) -> None:
        self.ws, self.checks = ws, checks
        self._problems: dict[str, list[str]] = {}
        self._streams: dict[str, list[StreamCheck]] = {}
        self._aliases: dict[str, dict[str, dict[str, int]]] = {}

    @cached_property
    def layers(self) -> list[LayerVersion]:
        """Every layer version, deleted ones included, by name then version."""
        return self.ws.registry.layers()

    @cached_property
    def networks(self) -> list[NetworkVersion]:
        return self.ws.registry.networks()

    @cached_property
    def datasets(self) -> list[DatasetRecord]:
        return self.ws.registry.datasets()

    @cached_property
    def _layer_by_pair(self) -> dict[tuple[str, int], LayerVersion]:
        return {(v.name, v.version): v for v in self.layers}

    @cached_property
    def _network_by_ref(self) -> dict[str, NetworkVersion]:
        return {n.ref: n for n in self.networks}

    @cached_property
    def _recorded(self) -> Recorded:
        return Recorded.read(self.ws.registry)

    def layer_version(self, name: str, version: int) -> LayerVersion:
        """A layer version, deleted ones included (they are shown, marked deleted)."""
        found = self._layer_by_pair.get((name, version))
        if found is None:
            raise NotFoundError(f"layer {name!r} has no version {version}")
        return found

    def network_version(self, name: str, version: int) -> NetworkVersion:
        found = self._network_by_ref.get(f"{name}@{version}")
        if found is None:
            raise NotFoundError(f"network {name!r} has no version {version}")
        return found

    def layers_of(self, network: NetworkVersion) -> list[LayerVersion]:
        return [self.layer_version(name, version) for name, version in network.layers]

    def aliases(self, kind: str, name: str, version: int) -> list[str]:
        """The aliases pointing at `name@version` (every alias of a kind read in one query)."""
        if kind not in self._aliases:
            self._aliases[kind] = self.ws.registry.all_aliases(kind)
        return sorted(a for a, v in self._aliases[kind].get(name, {}).items() if v == version)

    def layer_problems(self, layer: LayerVersion) -> list[str]:
        """What is wrong with a live layer now (a deleted one is not checked: gc frees its
        block, and nothing may be built on it)."""
        if layer.status == "deleted":
            return []
        if layer.ref not in self._problems:
            self._problems[layer.ref] = self.checks.layer_problems(layer)
        return self._problems[layer.ref]

    def layer(self, layer: LayerVersion) -> str:
        if layer.status == "deleted":
            return "deleted"
        return "damaged" if self.layer_problems(layer) else "ok"

    def streams(self, network: NetworkVersion) -> list[StreamCheck]:
        """The streams a live network reads, each as checked now (none for a deleted one)."""
        if network.status == "deleted":
            return []
        if network.ref not in self._streams:
            self._streams[network.ref] = self.checks.streams(
                network, self.layers_of(network), self._recorded)
        return self._streams[network.ref]

    def network(self, network: NetworkVersion) -> str:
        if network.status == "deleted":
            return "deleted"
        damaged = any(self.layer(v) == "damaged" for v in self.layers_of(network)) or any(
            not s.ok for s in self.streams(network))
        return "damaged" if damaged else "ok"

    def graph(self, graph: Graph) -> Graph:
        """`graph` with the status of each node drawn, as checked now (nothing else is
        checked)."""
        out = Graph(edges=list(graph.edges))
        for node_id, node in graph.nodes.items():
            name, _, version = node.label.partition("@")
            status = node.status
            if node.kind == "layer":
                status = self.layer(self.layer_version(name, int(version)))
            elif node.kind == "network":
                status = self.network(self.network_version(name, int(version)))
            out.nodes[node_id] = replace(node, status=status)
        return out
