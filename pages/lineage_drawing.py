"""The lineage graph (`mfstore.lineage_graph`: one definition of lineage) laid out left to
right and drawn as a scene:

    ┌────────┐     ┌──────┐     ┌──────┐     ╔═══════╗
    │ digits │ ──► │ l1@1 │ ──► │ l2@1 │ ──► ║ net@1 ║
    └────────┘     └──────┘     └──────┘     ╚═══════╝

A node's column is the length of the longest path that reaches it, so datasets come first,
then layers in the order they were trained over, then networks. Damaged nodes are red,
deleted ones grey; an edge `trained_on` (a layer placed after something other than what it
was trained on) is dashed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from mfstore.lineage_graph import Graph, Node
from pages.scene import Line, Rect, Scene, Text

NODE_H, ROW, GAP, PAD = 30, 44, 56, 16
FILLS = {"dataset": "#e8f1fb", "layer": "#f4f4f4", "network": "#eaf6e8"}
STROKES = {"dataset": "#4c78a8", "layer": "#666", "network": "#54a24b"}
DAMAGED = "#d62728"
DELETED = "#999"


def incoming(graph: Graph) -> dict[str, list[str]]:
    """Each node's sources, in edge order."""
    found: dict[str, list[str]] = {node_id: [] for node_id in graph.nodes}
    for e in graph.edges:
        if e.source in graph.nodes and e.target in found:
            found[e.target].append(e.source)
    return found


def columns(graph: Graph) -> dict[str, int]:
    """Each node's column: the longest path from a node with no incoming edge, in one pass
    over the nodes in topological order (Kahn's); a node on a cycle (a lineage graph has none)
    stays where its placed sources put it."""
    sources = incoming(graph)
    waiting = {node_id: len(found) for node_id, found in sources.items()}
    outgoing: dict[str, list[str]] = {node_id: [] for node_id in graph.nodes}
    for target, found in sources.items():
        for source in found:
            outgoing[source].append(target)
    column = dict.fromkeys(graph.nodes, 0)
    ready = deque(node_id for node_id, count in waiting.items() if count == 0)
    while ready:
        node_id = ready.popleft()
        for target in outgoing[node_id]:
            column[target] = max(column[target], column[node_id] + 1)
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    return column


def _box_width(node: Node) -> float:
    return max(90.0, 7.2 * len(node.label) + 24)


def layout(graph: Graph) -> dict[str, tuple[float, float, float]]:
    """Node id -> (x, y, width) of its box."""
    column = columns(graph)
    count = max(column.values(), default=-1) + 1
    widths = [90.0] * count
    for i, n in graph.nodes.items():
        widths[column[i]] = max(widths[column[i]], _box_width(n))
    starts = [PAD + sum(widths[:c]) + GAP * c for c in range(count)]
    by_column: list[list[str]] = [[] for _ in range(count)]
    for i in graph.nodes:
        by_column[column[i]].append(i)
    sources, row = incoming(graph), dict[str, float]()
    for placed in by_column:
        ordered = sorted(placed, key=lambda i: _barycentre(sources[i], row))
        row.update({i: float(k) for k, i in enumerate(ordered)})
    return {i: (starts[column[i]], PAD + row[i] * ROW, _box_width(n))
            for i, n in graph.nodes.items()}


def _barycentre(sources: list[str], row: dict[str, float]) -> float:
    """The mean row of a node's sources placed before it (fewer crossings)."""
    rows = [row[s] for s in sources if s in row]
    return sum(rows) / len(rows) if rows else float("inf")


def _node_items(node: Node, box: tuple[float, float, float], href: str) -> list:
    x, y, w = box
    damaged, deleted = node.status == "damaged", node.status == "deleted"
    stroke = DAMAGED if damaged else (DELETED if deleted else STROKES[node.kind])
    fill = "#fdecea" if damaged else ("#fafafa" if deleted else FILLS[node.kind])
    cls = f"node {node.kind}" + (f" {node.status}" if damaged or deleted else "")
    tip = f"{node.kind} {node.label}" + (f" ({node.status})" if damaged or deleted else "")
    ink = DAMAGED if damaged else (DELETED if deleted else "#222")
    return [Rect(x, y, w, NODE_H, fill, stroke, cls, tip, href,
                 radius=12 if node.kind == "dataset" else 3),
            Text(x + w / 2, y + NODE_H / 2 + 4, node.label, "middle", 11, ink,
                 "bold" if node.kind == "network" else "normal", cls="node-label", href=href)]


def lineage_scene(graph: Graph, link: Callable[[Node], str], title: str = "lineage") -> Scene:
    """The graph as a scene; `link` gives each node's page (or "" for none)."""
    boxes = layout(graph)
    width = max((x + w for x, _, w in boxes.values()), default=0) + PAD
    height = max((y for _, y, _ in boxes.values()), default=0) + NODE_H + PAD
    scene = Scene(max(width, 200), max(height, 60), title, cls="lineage")
    for e in graph.edges:
        (sx, sy, sw), (tx, ty, _) = boxes[e.source], boxes[e.target]
        scene.add(Line(sx + sw, sy + NODE_H / 2, tx, ty + NODE_H / 2, "#777", 1.4,
                       e.kind == "trained_on", cls=f"edge {e.kind}", arrow=True,
                       tip=f"{graph.nodes[e.source].label} → {graph.nodes[e.target].label}"
                           + (" (trained on)" if e.kind == "trained_on" else "")))
    for node_id, node in graph.nodes.items():
        scene.add(*_node_items(node, boxes[node_id], link(node)))
    if not graph.nodes:
        scene.add(Text(PAD, 34, "the store is empty", "start", 12, "#555"))
    return scene
