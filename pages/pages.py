"""Pages as HTML: the Jinja2 templates (autoescaped) over the facts of `pages.facts`, with
the charts and graphs drawn as inline SVG. Shared by the web UI and the report; `Links` says
where a dataset, layer or network points (a page of the UI, an anchor of the report)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from mfstore.fixes import Fix
from mfstore.lineage_graph import Graph, Node
from mfstore.urls import mask_credentials
from pages import charts
from pages.facts import NetworkLayer, NetworkPage
from pages.lineage_drawing import lineage_scene
from pages.scene import Scene, to_svg

TEMPLATES = Path(__file__).with_name("templates")
STYLE = (TEMPLATES / "style.css").read_text()


class Links:
    """Where things point in the web UI."""

    def dataset(self, name: str) -> str:
        return f"/datasets/{quote(name)}"

    def layer(self, name: str, version: int) -> str:
        return f"/layers/{quote(name)}/{version}"

    def network(self, name: str, version: int) -> str:
        return f"/networks/{quote(name)}/{version}"

    def node(self, node: Node) -> str:
        """The page of a node of the lineage graph."""
        name, _, version = node.label.partition("@")
        if node.kind == "dataset":
            return self.dataset(node.label)
        return (self.layer if node.kind == "layer" else self.network)(name, int(version))


def pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2%}"


def size(value: Any) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def svg(scene: Scene) -> Markup:
    return Markup(to_svg(scene))  # every text in it is escaped by to_svg


Phrase = Callable[[Fix], str]  # a fix as the reader is told it (the CLI: its command line)


def in_words(fix: Fix) -> str:
    """A fix in words, for pages made without the command line's phrasing."""
    return fix.describe()


def environment(phrase: Phrase) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        default=True, default_for_string=True), undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, size=size, when=when, fix=phrase, svg=svg,
                       masked=mask_credentials)
    env.globals.update(style=Markup(STYLE), loss_chart=charts.loss_chart,
                       accuracy_chart=charts.accuracy_chart)
    return env


def accuracy_bars(page: NetworkPage, link: Callable[[NetworkLayer], str]) -> Scene:
    """Every layer on its own (measured now, recorded at training), then FF and BP mode."""
    measured = page.measured.accuracy
    bars = [charts.Bar(f"layer {x.position} · {x.layer.ref}",
                       measured.per_layer[x.position - 1] if measured else None,
                       x.layer.metrics.get("test_accuracy"), "layer", link(x),
                       bool(x.problems)) for x in page.layers]
    last = page.layers[-1].layer.metrics.get("test_accuracy") if page.layers else None
    bars += [charts.Bar("FF mode (Σ G)", measured.ff if measured else None, None, "ff"),
             charts.Bar("BP mode (last G)", measured.bp if measured else None, last, "bp")]
    return charts.accuracy_bars(bars, f"{page.network.ref}: test accuracy")


def graph_svg(graph: Graph, link: Callable[[Node], str], title: str) -> Markup:
    return svg(lineage_scene(graph, link, title))


class Renderer:
    """Renders the templates with one set of links."""

    def __init__(self, phrase: Phrase = in_words, links: Links | None = None) -> None:
        self.env, self.links = environment(phrase), links or Links()

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(links=self.links, **context)
