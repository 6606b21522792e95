"""`mfstore report`: one self-contained HTML file, its charts as PNG, and every bad input
refused in one line with nothing written. (The report in a browser: tests/test_ui.py.)"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser

import pytest

from mfstore.network import evaluate_network
from mfstore.workspace import Workspace
from tests.cli_run import in_home

PNG = b"\x89PNG\r\n\x1a\n"
LOCAL = ("#", "data:")  # what a self-contained page may point at


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed", "base"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = (value or "").strip()
            if name in ("src", "href", "xlink:href", "srcset", "poster", "data", "action",
                        "background", "formaction") and not value.startswith(LOCAL):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name == "style":
                self.found += _css_references(value)

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style":
            self.found += _css_references(data)


def _css_references(css: str) -> list[str]:
    urls = [u for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", css, re.I)
            if not u.strip().startswith(LOCAL)]
    return [f"url({u})" for u in urls] + re.findall(r"@import|@font-face", css, re.I)


def external_references(html: str) -> list[str]:
    """Everything in a page that a browser would fetch from outside it: scripts, frames,
    links and sources other than anchors and data: URLs, CSS url(...), @import, fonts."""
    parser = _References()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("snippet", [
    '<style>body { background: url(https://x.example/a.png) }</style>',
    "<style>@import 'https://x.example/a.css';</style>",
    '<style>@font-face { font-family: f; src: local(Arial) }</style>',
    '<link rel="stylesheet" href="a.css">',
    '<script src="a.js"></script>',
    '<script>fetch("/x")</script>',
    '<p style="background-image: url(\'//x.example/a.png\')">',
    '<img src="x.png">',
    '<svg><image xlink:href="http://x.example/a.png"/></svg>',
    '<img srcset="a.png 2x">',
])
def test_external_references_finds_each_kind(snippet):
    page = f'<html><head><link rel="icon" href="data:,"></head><body>{snippet}</body></html>'
    assert external_references(page) != []
    assert external_references(page.replace(snippet, '<a href="#top">top</a>')) == []


def test_report_is_one_self_contained_file_with_the_figures(home, tmp_path):
    out = tmp_path / "report.html"
    ran = in_home(home, "report", "net@1", "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"wrote {out}"
    html = out.read_text()
    _, accuracy = evaluate_network(Workspace.open(str(home)), "net@1", device="cpu")
    assert f'<td class="num ff">{accuracy.ff:.2%}</td>' in html
    assert f'<td class="num bp">{accuracy.bp:.2%}</td>' in html
    assert html.count('<rect x="') > 0 and html.count('class="bar layer"') == 2
    assert html.count('class="chart loss-chart"') == 2  # one per layer
    assert external_references(html) == []  # nothing from anywhere else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "report.html"]  # no temp file


def test_png_writes_every_chart(home, tmp_path):
    charts = tmp_path / "charts"  # made by the command
    ran = in_home(home, "report", "net", "--out", str(tmp_path / "r.html"), "--png", str(charts))
    assert ran.returncode == 0, ran.stderr
    names = sorted(p.name for p in charts.iterdir())
    assert names == ["accuracy.png", "layer1-net.l1-v1-accuracy.png", "layer1-net.l1-v1-loss.png",
                     "layer2-net.l2-v1-accuracy.png", "layer2-net.l2-v1-loss.png", "lineage.png"]
    for name in names:
        data = (charts / name).read_bytes()
        assert data.startswith(PNG)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 400 and height >= 100, name  # drawn at twice the SVG's size


def _nothing_written(tmp_path) -> None:
    assert [p.name for p in tmp_path.iterdir() if p.name != "home"] in ([], ["charts"])
    if (tmp_path / "charts").exists():
        assert list((tmp_path / "charts").iterdir()) == []


@pytest.mark.parametrize("args, code, message", [
    (["nope", "--out", "{tmp}/r.html"], 6,
     "error: no network named 'nope'; see `mfstore nets list`"),
    (["net@7", "--out", "{tmp}/r.html"], 6,
     "error: network 'net' has no version 7; see `mfstore nets list`"),
    (["net", "--out", "{tmp}/missing/r.html"], 2,
     "error: cannot write {tmp}/missing/r.html: there is no folder {tmp}/missing; pass --out"),
    (["net", "--out", "{tmp}/r.html", "--png", "{tmp}/no/where"], 2,
     "error: cannot write {tmp}/no/where: there is no folder {tmp}/no; pass --png"),
    (["net", "--out", "{tmp}/r.html", "--png", "{tmp}/home/registry.db"], 2,
     "error: cannot write charts into {tmp}/home/registry.db: it is a file, not a folder; "
     "pass --png"),
    (["net", "--out", "{tmp}"], 2,
     "error: cannot write {tmp}: it is a folder, not a file; pass --out"),
    (["nope", "--out", "{tmp}"], 2,  # the target is checked before anything is read
     "error: cannot write {tmp}: it is a folder, not a file; pass --out"),
])
def test_bad_input_is_one_line_and_writes_nothing(home, tmp_path, args, code, message):
    (tmp_path / "charts").mkdir()
    around = sorted(p.name for p in tmp_path.parent.iterdir())
    ran = in_home(home, "report", *[a.format(tmp=tmp_path) for a in args])
    assert ran.returncode == code
    assert ran.stderr.strip() == message.format(tmp=tmp_path)
    _nothing_written(tmp_path)
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == around


def test_png_without_matplotlib_is_one_line_naming_the_extra(home, tmp_path, monkeypatch):
    """A machine without the `png` extra: matplotlib cannot be imported."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    (tmp_path / "charts").mkdir()
    ran = in_home(home, "report", "net", "--out", str(tmp_path / "r.html"), "--png",
                  str(tmp_path / "charts"))
    assert ran.returncode == 2
    assert ran.stderr.strip() == ("error: writing charts as PNG needs matplotlib: install "
                                  "mfstore[png]")
    _nothing_written(tmp_path)
