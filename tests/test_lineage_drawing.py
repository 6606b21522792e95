"""The lineage graph's edges (each once, in the order linked) and its layout (columns by the
longest path, rows by the mean row of each node's sources), checked by hand on small graphs
and on a large one."""

from __future__ import annotations

from mfstore.lineage_graph import Edge, Graph, Node
from pages.lineage_drawing import columns, incoming, layout, lineage_scene


def graph_of(kinds: dict[str, str], edges: list[tuple[str, str]]) -> Graph:
    graph = Graph()
    for node_id, kind in kinds.items():
        graph.add(Node(node_id, kind, node_id))
    for source, target in edges:
        graph.link(source, target, "feeds")
    return graph


def test_each_edge_is_kept_once_in_the_order_linked():
    graph = graph_of({"d": "dataset", "a": "layer", "b": "layer"},
                     [("d", "a"), ("a", "b"), ("d", "a"), ("a", "b")])
    graph.link("a", "b", "trained_on")  # another kind: another edge
    assert graph.edges == [Edge("d", "a", "feeds"), Edge("a", "b", "feeds"),
                           Edge("a", "b", "trained_on")]
    copy = Graph(dict(graph.nodes), list(graph.edges))  # as live_graph copies one
    copy.link("d", "a", "feeds")
    assert copy.edges == graph.edges


def test_columns_are_the_longest_path_and_rows_follow_the_sources():
    #  d ─► a ─► b ─► n1
    #  │         ▲
    #  └──► c ───┘      e ─► f (a second dataset)
    graph = graph_of({"e": "dataset", "d": "dataset", "f": "layer", "a": "layer",
                      "c": "layer", "b": "layer", "n1": "network"},
                     [("d", "a"), ("a", "b"), ("d", "c"), ("c", "b"), ("b", "n1"),
                      ("e", "f")])
    assert columns(graph) == {"e": 0, "d": 0, "f": 1, "a": 1, "c": 1, "b": 2, "n1": 3}
    assert incoming(graph)["b"] == ["a", "c"]
    rows = {i: y for i, (_, y, _) in layout(graph).items()}
    assert rows["e"] < rows["d"]  # column 0 keeps the nodes' order
    assert rows["f"] < rows["a"] < rows["c"]  # f under e (row 0); a, c under d (row 1)


def test_a_large_store_lays_out_every_node():
    """A chain of 3000 layers with every tenth also feeding a network: each edge once, each
    layer in its own column."""
    graph = Graph()
    previous = graph.add(Node("dataset:d", "dataset", "d"))
    for k in range(3000):
        here = graph.add(Node(f"layer:l{k}@1", "layer", f"l{k}@1"))
        graph.link(previous, here, "feeds")
        graph.link(previous, here, "feeds")
        if k % 10 == 9:
            graph.link(here, graph.add(Node(f"network:n{k}@1", "network", f"n{k}@1")),
                       "output")
        previous = here
    assert len(graph.edges) == 3000 + 300
    column = columns(graph)
    assert [column[f"layer:l{k}@1"] for k in range(3000)] == list(range(1, 3001))
    assert column["network:n2999@1"] == 3001
    scene = lineage_scene(graph, lambda node: "")
    assert scene.width > 3000 * 56
