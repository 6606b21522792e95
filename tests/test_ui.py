"""The web UI and the report in a real browser: a real `mfstore ui` on a loopback port, Debian's
Chromium driven by Playwright (pointed at /usr/bin/chromium; Playwright never downloads one).

The store holds three datasets (one imported from a path full of HTML), five networks over
them, aliases, an export, a note full of HTML and one damaged block. Every page is visited by
following the links from the overview; each must load without a console error, show the rows,
chart elements and graph nodes the store implies, and leave the registry and the store
byte-identical.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

from mfstore.block import load_block
from mfstore.compose import compose, extend
from mfstore.config import TrainConfig
from mfstore.dataset import DatasetOptions
from mfstore.export import export_network
from mfstore.importing import import_dataset
from mfstore.lineage_graph import store_graph
from mfstore.network import evaluate_network
from mfstore.spec import LayerPlan
from mfstore.store_training import train_network
from mfstore.workspace import Workspace, block_path
from tests.cli_run import cli
from tests.services import free_port
from tests.ui_run import get, snapshot, ui_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
QUICK = TrainConfig(epochs=3, batch_size=64, lr=0.01, device="cpu")
EVIL_NOTE = '<script>document.title="pwned"</script><b id="injected-note">bold</b> & more'
EVIL_DIR = '<img src=x id="injected-source" onerror="document.title=1">&amp;\'"'

pytestmark = pytest.mark.slow


def _evil_csv(folder: Path) -> Path:
    """A CSV dataset in a folder whose name is HTML (sources are shown on pages)."""
    where = folder / EVIL_DIR
    where.mkdir()
    rows = ["a,b,c,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2},{i % 3}" for i in range(90)]
    (where / "data.csv").write_text("\n".join(rows) + "\n")
    return where / "data.csv"


def build_store(home: Path, folder: Path) -> Workspace:
    ws = Workspace.init(home=str(home))
    import_dataset(ws, "digits", "sklearn:digits")
    import_dataset(ws, "iris", "sklearn:iris")
    import_dataset(ws, "evil", str(_evil_csv(folder)), DatasetOptions(val_fraction=0.2))
    train_network(ws, "net", "digits", "dense:32,dense:32", QUICK)
    extend(ws, "net@1", LayerPlan("dense", 16), QUICK)  # net@2 = net.l1@1, net.l2@1, net.l3@1
    compose(ws, "mixed", ["net.l1@1", "net.l2@1"], "ff")
    train_network(ws, "irisnet", "iris", "dense:8", QUICK)
    ws.registry.add_network("noted", [("irisnet.l1", 1)], "bp", "iris", note=EVIL_NOTE)
    ws.registry.set_alias("layer", "net.l1", "prod", 1)
    ws.registry.set_alias("network", "net", "prod", 2)
    export_network(ws, "net@1", out=str(folder / "net.onnx"))
    damaged = ws.registry.layer("irisnet.l1", "1")
    path = Path(ws.where.store) / block_path(damaged.block_sha256)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit pattern in the tensors: sha256 no longer matches
    path.write_bytes(bytes(data))
    ws.registry.engine.dispose()  # checkpointed: the files no longer depend on this process
    return ws


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    home = folder / "home"
    ws = build_store(home, folder)
    return {"home": home, "ws": ws, "folder": folder}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is not installed: bash tests/install-services.sh")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Visit:
    """A browser page that records console errors, failed requests and error statuses."""

    def __init__(self, browser, shots: Path, **context) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.shots = shots
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed {r.url}"))

    def open(self, url: str, status: int | None = 200):
        response = self.page.goto(url)
        if status is not None:
            assert response is not None and response.status == status, (url, response)
        if status not in (200, None):  # the browser logs the status it was asked to show
            self.errors = [e for e in self.errors if f"status of {status} " not in e]
        assert self.errors == [], (url, self.errors)
        name = re.sub(r"[^A-Za-z0-9.@-]+", "_", url.split("//", 1)[-1])[:120]
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        return self.page

    def close(self) -> None:
        self.context.close()


def crawl(visit: Visit, start: str) -> set[str]:
    """Every page reachable by links from `start` (same server); each opened once."""
    seen, queue = set(), [start]
    while queue:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        page = visit.open(url)
        for href in page.eval_on_selector_all(
                "a[href]", "els => els.map(e => new URL(e.getAttribute('href'), "
                           "document.baseURI).href)"):
            if href.startswith(start) and "#" not in href and href not in seen:
                queue.append(href)
    return seen


def node(page, label: str):
    """The label of a node of the lineage graph (a link to its page)."""
    return page.locator("svg.lineage text.node-label").filter(
        has_text=re.compile(f"^{re.escape(label)}$"))


def texts(page, selector: str) -> list[str]:
    return [" ".join(t.split()) for t in page.locator(selector).all_text_contents()]


@pytest.mark.slow
def test_every_page_in_a_real_browser_and_nothing_written(store, browser, tmp_path):
    home, ws = store["home"], store["ws"]
    before = snapshot(home)
    with ui_server(home) as url:
        visit = Visit(browser, tmp_path)
        pages = crawl(visit, url + "/")
        for path in ("/datasets/evil", "/layers/net.l1/1", "/networks/net/2", "/graph",
                     "/networks/irisnet/1", "/networks/noted/1", "/networks/net/1"):
            assert url + path in pages, path
        check_overview_and_lists(visit, url)
        check_layer_page(visit, url, ws)
        check_network_pages(visit, url, ws)
        check_graph(visit, url, ws)
        check_escaping(visit, url)
        check_filters(visit, url)
        visit.close()
        assert len(list(tmp_path.glob("*.png"))) >= len(pages)
    assert snapshot(home) == before


def check_overview_and_lists(visit: Visit, url: str) -> None:
    page = visit.open(url + "/datasets")
    assert texts(page, "tr.dataset-row td:first-child") == ["digits", "evil", "iris"]
    page = visit.open(url + "/datasets/digits")
    assert texts(page, "dd.splits")[0].startswith("train ")
    assert len(page.locator("tr.stream-row").all()) >= 3  # its examples, l1, l1 → l2, …
    assert "its imported examples" in page.locator("table.streams").inner_text()
    page = visit.open(url + "/layers")
    rows = page.locator("tr.layer-row")
    assert sorted(r.get_attribute("data-ref") for r in rows.all()) == [
        "irisnet.l1@1", "net.l1@1", "net.l2@1", "net.l3@1"]
    assert page.locator('tr.layer-row[data-ref="irisnet.l1@1"] .status').inner_text() == (
        "damaged")
    assert page.locator('tr.layer-row[data-ref="net.l1@1"] .alias').inner_text() == "@prod"
    page = visit.open(url + "/networks")
    assert sorted(r.get_attribute("data-ref") for r in page.locator("tr.network-row").all()
                  ) == ["irisnet@1", "mixed@1", "net@1", "net@2", "noted@1"]


def check_layer_page(visit: Visit, url: str, ws: Workspace) -> None:
    page = visit.open(url + "/layers/net.l1/1")
    layer = ws.registry.layer("net.l1", "1")
    history = load_block(ws, layer).history
    epochs = len(history["epochs"])
    assert page.locator("svg.loss-chart").count() == 1
    assert page.locator("svg.loss-chart circle.point.train-loss").count() == epochs
    assert page.locator("svg.loss-chart circle.point.val-loss").count() == epochs
    assert page.locator("svg.accuracy-chart circle.point.val-accuracy").count() == epochs
    last = history["epochs"][-1]["val_accuracy"]
    tips = page.locator("svg.accuracy-chart circle.point title").all_text_contents()
    assert tips[-1] == f"validation accuracy, epoch {epochs}: {last:.2%}"
    assert page.locator("dd.digest").inner_text() == layer.digest
    assert page.locator("dd.block-sha").inner_text().startswith(layer.block_sha256)
    used = texts(page, "ul.used-by li")
    assert used == ["network mixed@1", "network net@1", "network net@2",
                    "layer net.l2@1 was trained on its outputs",
                    "layer net.l3@1 was trained on its outputs"]
    page.click("ul.used-by >> text=net@2")
    assert page.locator("h1").inner_text().startswith("Network net@2")


def check_network_pages(visit: Visit, url: str, ws: Workspace) -> None:
    page = visit.open(url + "/networks/net/2")
    _, accuracy = evaluate_network(ws, "net@2", device="cpu")
    assert page.locator("svg.accuracy-bars rect.bar").count() == 3 + 2  # layers, FF, BP
    assert page.locator("svg.accuracy-bars rect.bar.layer").count() == 3
    assert page.locator("td.ff").inner_text() == f"{accuracy.ff:.2%}"
    assert page.locator("td.bp").inner_text() == f"{accuracy.bp:.2%}"
    assert page.locator("tr.network-layer.ok").count() == 3
    assert page.locator("tr.stream-row.damaged").count() == 0
    assert page.locator("svg.lineage .node").count() == 5  # digits, 3 layers, net@2
    assert page.locator("h1 .alias").inner_text() == "@prod"
    page = visit.open(url + "/networks/net/1")
    assert page.locator("tr.export-row").count() == 1
    page = visit.open(url + "/networks/irisnet/1")
    assert page.locator("h1 .status").inner_text() == "damaged"
    row = page.locator("tr.network-layer.damaged")
    assert row.count() == 1
    assert "does not match its sha256" in row.inner_text()
    assert row.locator(".repair code").inner_text() == "run `mfstore repair irisnet@1 --layer 1`"
    assert page.locator("svg.accuracy-bars text.bar-missing").count() == 3
    assert page.locator("svg.lineage .node.layer.damaged").count() == 1
    page.click("tr.network-layer.damaged >> text=irisnet.l1@1")
    assert page.locator(".repair code").all_inner_texts() == [
        "run `mfstore repair irisnet@1 --layer 1`", "run `mfstore repair noted@1 --layer 1`"]


def check_graph(visit: Visit, url: str, ws: Workspace) -> None:
    page = visit.open(url + "/graph")
    graph = store_graph(ws.registry)
    labels = texts(page, "svg.lineage text.node-label")
    assert sorted(labels) == sorted(n.label for n in graph.nodes.values())
    assert page.locator("svg.lineage line.edge").count() == len(graph.edges)
    damaged = page.locator("svg.lineage rect.node.damaged title").all_text_contents()
    assert sorted(damaged) == ["layer irisnet.l1@1 (damaged)", "network irisnet@1 (damaged)",
                               "network noted@1 (damaged)"]
    node(page, "mixed@1").click()
    assert page.locator("h1").inner_text().startswith("Network mixed@1")
    assert page.locator("dd >> text=ff").count() >= 1


def check_escaping(visit: Visit, url: str) -> None:
    page = visit.open(url + "/networks/noted/1")
    assert page.locator("dd.note").inner_text() == EVIL_NOTE
    assert page.locator("#injected-note").count() == 0
    assert page.title() != "pwned"
    page = visit.open(url + "/datasets/evil")
    assert EVIL_DIR in page.locator("dd.source").inner_text()
    assert page.locator("#injected-source").count() == 0
    page = visit.open(url + "/datasets")
    assert page.locator("#injected-source").count() == 0


def check_filters(visit: Visit, url: str) -> None:
    page = visit.open(url + "/layers?status=damaged")
    assert [r.get_attribute("data-ref") for r in page.locator("tr.layer-row").all()] == [
        "irisnet.l1@1"]
    page = visit.open(url + "/layers")
    page.fill("form.filters input[name=q]", "l3")
    with page.expect_navigation():
        page.click("form.filters button")
    assert [r.get_attribute("data-ref") for r in page.locator("tr.layer-row").all()] == [
        "net.l3@1"]
    page = visit.open(url + "/networks?dataset=iris")
    assert sorted(r.get_attribute("data-ref") for r in page.locator("tr.network-row").all()
                  ) == ["irisnet@1", "noted@1"]
    page = visit.open(url + "/networks?status=damaged")
    assert sorted(r.get_attribute("data-ref") for r in page.locator("tr.network-row").all()
                  ) == ["irisnet@1", "noted@1"]
    page = visit.open(url + "/")
    page.fill("header input[name=q]", "iris")
    with page.expect_navigation():
        page.click("header button")
    assert texts(page, "ul.found-datasets li") == ["iris"]
    assert [r.get_attribute("data-ref") for r in page.locator("tr.layer-row").all()] == [
        "irisnet.l1@1"]


def test_unknown_pages_are_404_with_the_reason(store):
    with ui_server(store["home"]) as url:
        for path, message in [
                ("/layers/net.l1/9", "layer 'net.l1' has no version 9"),
                ("/networks/nope/1", "network 'nope' has no version 1"),
                ("/datasets/nope", "no dataset 'nope'"),
                ("/layers/net.l1/one", "no page at /layers/net.l1/one"),
                ("/nowhere", "no page at /nowhere")]:
            status, body = get(url + path)
            assert status == 404, path
            assert f'<p class="error-message">{message}</p>' in body.replace("&#39;", "'")
        status, _ = get(url + "/health")
        assert status == 200


def test_token_guards_every_page_but_health(store, browser, tmp_path):
    home = store["home"]
    before = snapshot(home)
    with ui_server(home, "--token", "s3cret") as url:
        assert get(url + "/health") == (200, '{"ok":true}')
        for path in ("/", "/datasets", "/datasets/digits", "/layers", "/layers/net.l1/1",
                     "/networks", "/networks/net/1", "/graph", "/search?q=net", "/nowhere"):
            status, body = get(url + path)
            assert status == 401, path
            assert "needs its token" in body
            assert get(url + path, {"Authorization": "Bearer wrong"})[0] == 401
            assert get(url + path, {"Authorization": "Bearer s3cret"})[0] in (200, 404)
        visit = Visit(browser, tmp_path)
        visit.open(url + "/layers", 401)
        page = visit.open(url + "/layers?token=s3cret&status=damaged")
        assert page.url == url + "/layers?status=damaged"  # the token left the address bar
        assert [r.get_attribute("data-ref") for r in page.locator("tr.layer-row").all()] == [
            "irisnet.l1@1"]
        page.click("text=Networks")
        assert page.locator("h1").inner_text() == "Networks"
        visit.close()
    assert snapshot(home) == before


def test_ui_refuses_a_missing_workspace(tmp_path):
    out = cli("--home", str(tmp_path / "nothing"), "ui", "--port", str(free_port()))
    assert out.returncode == 9
    assert out.stderr.startswith("error: there is no mfstore registry at ")


def test_ui_refuses_a_port_in_use(store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli("--home", str(store["home"]), "ui", "--port", str(port))
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port}: Address already "
                                  "in use; pass --port")


def test_report_opens_offline_with_the_same_figures(store, browser, tmp_path):
    home = store["home"]
    before = snapshot(home)
    report = tmp_path / "report.html"
    out = cli("--home", str(home), "report", "net@2", "--out", str(report))
    assert out.returncode == 0, out.stderr
    assert snapshot(home) == before
    with ui_server(home) as url:
        visit = Visit(browser, tmp_path)
        ui_page = visit.open(url + "/networks/net/2")
        ui_figures = figures(ui_page)
        visit.close()
    offline = Visit(browser, tmp_path, offline=True)
    asked: list[str] = []
    offline.context.route("**/*", lambda route: (
        route.continue_() if route.request.url.startswith("file://")
        else (asked.append(route.request.url), route.abort())))
    page = offline.open(report.as_uri(), status=None)  # file:// has no HTTP status
    assert asked == []
    assert figures(page) == ui_figures
    assert page.locator("section.layer-section").count() == 3
    assert page.locator("svg.loss-chart").count() == 3
    node(page, "net.l2@1").click()
    assert page.url.endswith("#layer-net.l2-1")
    offline.close()
    shutil.copy(report, tmp_path / "kept-report.html")


def figures(page) -> dict[str, object]:
    """What the network page and the report must agree on."""
    return {"bars": page.locator("svg.accuracy-bars rect.bar").evaluate_all(
                "els => els.map(e => e.getAttribute('width'))"),
            "values": texts(page, "svg.accuracy-bars text.bar-value"),
            "ff": page.locator("td.ff").inner_text(), "bp": page.locator("td.bp").inner_text(),
            "layers": texts(page, "tr.network-layer td:nth-child(2)"),
            "nodes": texts(page, "svg.lineage text.node-label"),
            "loss_points": page.locator("svg.loss-chart circle.point").count()}
