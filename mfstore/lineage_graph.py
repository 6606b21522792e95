"""The lineage graph: datasets → layer versions → networks, as plain nodes and edges, and
written as Graphviz dot or Mermaid.

    dataset:digits ──► l1@1 ──► l2@1 ──► network:net@1
                         └──────trained on (dashed, where a network's order differs)

An edge `feeds` follows a network's order (or, outside networks, what a layer was trained
on); `trained_on` is drawn too where a layer sits after something other than what it was
trained on (a forced composition or swap).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mfstore.errors import NotFoundError
from mfstore.registry import NetworkVersion, Registry
from mfstore.usage import Snapshot, first_by_digest


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # dataset | layer | network
    label: str
    status: str = "ok"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # feeds | trained_on | output


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)  # in the order they were linked
    _linked: set[Edge] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._linked.update(self.edges)

    def add(self, node: Node) -> str:
        self.nodes.setdefault(node.id, node)
        return node.id

    def link(self, source: str, target: str, kind: str) -> None:
        """Add the edge once (a set says whether it is there; the list keeps the order)."""
        edge = Edge(source, target, kind)
        if edge not in self._linked:
            self._linked.add(edge)
            self.edges.append(edge)

    def to_dict(self) -> dict[str, object]:
        return {"nodes": [vars(n) for n in self.nodes.values()],
                "edges": [vars(e) for e in self.edges]}


def _layer_node(graph: Graph, ref: str, status: str) -> str:
    return graph.add(Node(f"layer:{ref}", "layer", ref, status))


def network_graph(registry: Registry, network: NetworkVersion) -> Graph:
    """One network (a deleted one too, its layers marked so): its dataset, its layers in
    order, and what each was trained on where that differs from what it follows here."""
    every = registry.layers()
    versions = {(v.name, v.version): v for v in every}
    producers = first_by_digest(v for v in every if v.status != "deleted")
    graph = Graph()
    previous = graph.add(Node(f"dataset:{network.dataset}", "dataset", network.dataset))
    previous_digest: str | None = None
    for pair in network.layers:
        if pair not in versions:
            raise NotFoundError(f"layer {pair[0]!r} has no version {pair[1]}")
        layer = versions[pair]
        here = _layer_node(graph, layer.ref, layer.status)
        graph.link(previous, here, "feeds")
        chain = layer.signature.chain
        producer = producers.get(chain[-1]) if chain else None
        if producer is not None and chain[-1] != previous_digest:
            graph.link(_layer_node(graph, producer.ref, producer.status), here, "trained_on")
        previous, previous_digest = here, layer.digest
    graph.link(previous, graph.add(Node(f"network:{network.ref}", "network", network.ref,
                                        network.status)), "output")
    return graph


def store_graph(registry: Registry) -> Graph:
    """Every dataset, live layer version and live network of the registry."""
    snap = Snapshot.read(registry)
    producers = first_by_digest(snap.layers)
    graph = Graph()
    fingerprints = {d.fingerprint: d.name for d in registry.datasets()}
    for d in fingerprints.values():
        graph.add(Node(f"dataset:{d}", "dataset", d))
    for layer in snap.layers:
        here = _layer_node(graph, layer.ref, layer.status)
        chain = layer.signature.chain
        if not chain:
            name = fingerprints.get(layer.signature.dataset_fingerprint, layer.dataset)
            source = graph.add(Node(f"dataset:{name}", "dataset", name))
        elif chain[-1] in producers:
            source = _layer_node(graph, producers[chain[-1]].ref, "ok")
        else:
            continue
        graph.link(source, here, "feeds")
    for network in snap.networks:
        node = graph.add(Node(f"network:{network.ref}", "network", network.ref, network.status))
        last = network.layers[-1]
        graph.link(_layer_node(graph, f"{last[0]}@{last[1]}", "ok"), node, "output")
    return graph


def _quoted(text: str) -> str:
    return json.dumps(text)  # a double-quoted string with escapes, valid in dot and Mermaid


def to_dot(graph: Graph) -> str:
    shapes = {"dataset": "cylinder", "layer": "box", "network": "component"}
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for n in graph.nodes.values():
        colour = ', color="red"' if n.status == "damaged" else ""
        lines.append(f"  {_quoted(n.id)} [label={_quoted(n.label)}, shape={shapes[n.kind]}"
                     f"{colour}];")
    for e in graph.edges:
        style = ' [style=dashed, label="trained on"]' if e.kind == "trained_on" else ""
        lines.append(f"  {_quoted(e.source)} -> {_quoted(e.target)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: Graph) -> str:
    ids = {node_id: f"n{i}" for i, node_id in enumerate(graph.nodes)}
    brackets = {"dataset": ("[(", ")]"), "layer": ("[", "]"), "network": ("[[", "]]")}
    lines = ["flowchart LR"]
    for node_id, n in graph.nodes.items():
        left, right = brackets[n.kind]
        lines.append(f"  {ids[node_id]}{left}{_quoted(n.label)}{right}")
        if n.status == "damaged":
            lines.append(f"  style {ids[node_id]} stroke:#d00,stroke-width:2px")
    for e in graph.edges:
        arrow = "-. trained on .->" if e.kind == "trained_on" else "-->"
        lines.append(f"  {ids[e.source]} {arrow} {ids[e.target]}")
    return "\n".join(lines) + "\n"
