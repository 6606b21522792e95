"""One network as one self-contained HTML file: the UI's figures and tables (per-layer
accuracy, FF and BP mode, verify status with repair commands, lineage, learning curves, the
dataset, exports) with inline CSS and SVG and no link outside the file, to attach to a review
or a ticket. Its charts are also scenes, so they can be written as images."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from mfstore.lineage_graph import network_graph
from mfstore.workspace import Workspace
from pages import charts, facts
from pages.checks import Checks
from pages.lineage_drawing import lineage_scene
from pages.pages import Links, Phrase, Renderer, accuracy_bars, in_words, svg
from pages.scene import Scene
from pages.statuses import Statuses


class ReportLinks(Links):
    """Anchors inside the report; things outside it are not linked."""

    def __init__(self, page: facts.NetworkPage) -> None:
        self.page = page
        self.refs = {(x.layer.name, x.layer.version) for x in page.layers}

    def dataset(self, name: str) -> str:
        return "#dataset" if name == self.page.network.dataset else ""

    def layer(self, name: str, version: int) -> str:
        return f"#layer-{name}-{version}" if (name, version) in self.refs else ""

    def network(self, name: str, version: int) -> str:
        n = self.page.network
        return "#top" if (name, version) == (n.name, n.version) else ""


@dataclass
class Report:
    html: str
    figures: dict[str, Scene] = field(default_factory=dict)  # file stem -> chart


def _figures(page: facts.NetworkPage, bars: Scene, lineage: Scene) -> dict[str, Scene]:
    figures = {"accuracy": bars, "lineage": lineage}
    for x in page.layers:
        if x.history and x.history.get("epochs"):
            stem = f"layer{x.position}-{x.layer.name}-v{x.layer.version}"
            figures[f"{stem}-loss"] = charts.loss_chart(x.history, f"{x.layer.ref}: loss")
            figures[f"{stem}-accuracy"] = charts.accuracy_chart(
                x.history, f"{x.layer.ref}: validation accuracy")
    return figures


def network_report(ws: Workspace, ref: str, phrase: Phrase = in_words) -> Report:
    """The report of network `ref` (NET, NET@V or NET@ALIAS); reads, never writes.
    `phrase`: how a fix is told (the command line passes its own)."""
    network = ws.registry.resolve_network(ref)
    now = Statuses(ws, Checks(ws))
    page = facts.network_page(now, network.name, network.version)
    links = ReportLinks(page)
    bars = accuracy_bars(page, lambda x: links.layer(x.layer.name, x.layer.version))
    lineage = lineage_scene(now.graph(network_graph(ws.registry, network)), links.node,
                            f"lineage of {network.ref}")
    layers = [facts.layer_page(now, x.layer.name, x.layer.version) for x in page.layers]
    html = Renderer(phrase, links).render(
        "report.html", page=page, layers=layers, bars=svg(bars), graph=svg(lineage),
        dataset=facts.dataset_page(now, network.dataset), shown=ws.where.shown,
        generated=datetime.now(timezone.utc))
    return Report(html, _figures(page, bars, lineage))
