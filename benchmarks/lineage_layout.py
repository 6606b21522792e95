"""How the lineage graph's cost grows with the store: building the graph (each edge linked
twice, as store_graph links shared sources) and laying it out, for stores of growing size.

    python benchmarks/lineage_layout.py          # seconds per size; linear growth doubles

A chain of layers over one dataset, every tenth layer ending a network: the shape of a store
that has been extended for a long time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import print_table

from mfstore.lineage_graph import Graph, Node
from pages.lineage_drawing import lineage_scene


def store_like(layers: int) -> Graph:
    graph = Graph()
    previous = graph.add(Node("dataset:d", "dataset", "d"))
    for k in range(layers):
        here = graph.add(Node(f"layer:l{k}@1", "layer", f"l{k}@1"))
        graph.link(previous, here, "feeds")
        graph.link(previous, here, "feeds")
        if k % 10 == 9:
            graph.link(here, graph.add(Node(f"network:n{k}@1", "network", f"n{k}@1")),
                       "output")
        previous = here
    return graph


def main() -> None:
    rows = []
    for layers in (1000, 2000, 4000, 8000):
        start = time.perf_counter()
        lineage_scene(store_like(layers), lambda node: "")
        rows.append([layers, f"{time.perf_counter() - start:.3f}"])
    print_table(["layers", "build + layout (s)"], rows)


if __name__ == "__main__":
    main()
