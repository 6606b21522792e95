"""One status everywhere, as things are now: a damaged stream shows on the lists, the filters and
the graph as on the network page; a flipped byte that keeps a block's size and time is seen; a
deleted network (its layers deleted and collected) has a page, marked deleted, that offers no
repair; a page checks each thing it draws once and nothing else; long lists come in pages.

The store: iris; `two@1` (two layers, so a stream of its first layer's outputs, which is
damaged: one byte flipped, size and time kept), `one@1` (intact), `removed@1` (deleted, its layer
deleted with it and its block collected by gc).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mfstore.config import TrainConfig
from mfstore.deletion import delete_network
from mfstore.gc import collect
from mfstore.importing import import_dataset
from mfstore.lineage_graph import network_graph, store_graph
from mfstore.manifest import stream_id
from mfstore.store_training import train_network
from mfstore.workspace import Workspace, block_path
from pages import facts
from pages.checks import Checks
from pages.statuses import Statuses
from tests.ui_run import get, ui_server

pytestmark = pytest.mark.slow

QUICK = TrainConfig(epochs=2, batch_size=32, lr=0.01, device="cpu")


def flip_keeping_size_and_time(path: Path, at: int = -5) -> bytes:
    """Flip one byte of `path`, keeping its size and modification time; its old bytes."""
    before, stat = path.read_bytes(), path.stat()
    data = bytearray(before)
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return before


def restore(path: Path, data: bytes) -> None:
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def first_shard(ws: Workspace, sid: str) -> Path:
    folder = Path(ws.where.store) / "streams" / sid
    return next(p for p in sorted(folder.rglob("*.safetensors")))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("status") / "home"
    ws = Workspace.init(home=str(home))
    import_dataset(ws, "iris", "sklearn:iris")
    train_network(ws, "two", "iris", "dense:8,dense:8", QUICK)
    train_network(ws, "one", "iris", "dense:5", QUICK)  # not two.l1: another digest
    train_network(ws, "removed", "iris", "dense:6", QUICK)
    delete_network(ws, "removed@1")
    collect(ws, grace_seconds=0)
    first = ws.registry.layer("two.l1", "1")
    sid = stream_id(ws.registry.dataset("iris").fingerprint, [first.digest])
    flip_keeping_size_and_time(first_shard(ws, sid))
    ws.registry.engine.dispose()
    return {"home": home, "ws": ws, "sid": sid}


def offers_repair(page: str) -> bool:
    return 'class="repair"' in page or "mfstore repair" in page


def refs(body: str, kind: str) -> dict[str, str]:
    """{ref: status} of the rows of a list page."""
    rows = re.findall(rf'<tr class="{kind}-row (\w+)" data-ref="([^"]+)"', body)
    return {ref: status for status, ref in rows}


def test_a_damaged_stream_shows_on_every_list_filter_and_graph(store):
    with ui_server(store["home"]) as url:
        page = get(url + "/networks/two/1")[1]
        assert '<h1>Network two@1 <span class="status status-damaged">' in page
        assert refs(get(url + "/networks")[1], "network") == {
            "removed@1": "deleted", "one@1": "ok", "two@1": "damaged"}
        assert list(refs(get(url + "/networks?status=damaged")[1], "network")) == ["two@1"]
        assert list(refs(get(url + "/networks?status=ok")[1], "network")) == ["one@1"]
        overview = get(url + "/")[1]
        assert refs(overview, "network")["two@1"] == "damaged"
        for body in (overview, get(url + "/graph")[1]):
            assert "<title>network two@1 (damaged)</title>" in body
            assert "<title>network one@1</title>" in body
        assert refs(get(url + "/layers")[1], "layer") == {  # a stream is not a layer's block
            "removed.l1@1": "deleted", "one.l1@1": "ok", "two.l1@1": "ok", "two.l2@1": "ok"}


def test_a_deleted_network_has_a_page_marked_deleted_and_no_repair(store):
    with ui_server(store["home"]) as url:
        status, page = get(url + "/networks/removed/1")
        assert status == 200
        assert '<h1>Network removed@1 <span class="status status-deleted">' in page
        assert not offers_repair(page) and "Not measured: it is deleted." in page
        assert "<title>network removed@1 (deleted)</title>" in page
        assert "<title>layer removed.l1@1 (deleted)</title>" in page
        status, page = get(url + "/layers/removed.l1/1")
        assert status == 200
        assert '<h1>Layer removed.l1@1 <span class="status status-deleted">' in page
        assert "(deleted: not in the store any more)" in page
        assert not offers_repair(page)  # its block was collected: nothing to repair
        assert list(refs(get(url + "/networks?status=deleted")[1], "network")) == ["removed@1"]


def test_a_flipped_byte_keeping_size_and_time_is_seen(store):
    ws = store["ws"]
    path = Path(ws.where.store) / block_path(ws.registry.layer("one.l1", "1").block_sha256)
    with ui_server(store["home"]) as url:
        assert refs(get(url + "/layers?q=one")[1], "layer") == {"one.l1@1": "ok"}
        before = flip_keeping_size_and_time(path)
        try:
            assert refs(get(url + "/layers?q=one")[1], "layer") == {"one.l1@1": "damaged"}
            page = get(url + "/layers/one.l1/1")[1]
            assert "does not match its sha256" in page
            assert "run `mfstore repair one@1 --layer 1`" in page
        finally:
            restore(path, before)
        assert refs(get(url + "/layers?q=one")[1], "layer") == {"one.l1@1": "ok"}
    ws.registry.engine.dispose()


def test_a_stream_is_read_again_after_stream_seconds(store):
    """Its answer is kept while its files keep their size and time, for at most
    `stream_seconds` (0 here: every time)."""
    ws = store["ws"]
    one = ws.registry.network("one", "1")
    examples = ws.registry.dataset("iris").stream_id
    path = first_shard(ws, examples)
    kept, fresh = Checks(ws), Checks(ws, stream_seconds=0)
    layers = [ws.registry.layer("one.l1", "1")]
    assert [s.ok for s in kept.streams(one, layers)] == [True]
    assert [s.ok for s in fresh.streams(one, layers)] == [True]
    before = flip_keeping_size_and_time(path)
    try:
        assert [s.ok for s in fresh.streams(one, layers)] == [False]
        assert [s.ok for s in kept.streams(one, layers)] == [True]  # remembered, for now
    finally:
        restore(path, before)
    ws.registry.engine.dispose()


class CountingChecks(Checks):
    """The real checks, counting which layers' blocks they read."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        self.read: list[str] = []
        self.streams_read: list[str] = []

    def layer_problems(self, layer):
        self.read.append(layer.ref)
        return super().layer_problems(layer)

    def stream_problems(self, sid, counts=None):
        self.streams_read.append(sid)
        return super().stream_problems(sid, counts)


def test_a_page_checks_what_it_draws_once_and_reads_aliases_once(store, monkeypatch):
    ws = store["ws"]
    asked: list[str] = []
    monkeypatch.setattr(ws.registry, "aliases", lambda *a: asked.append("aliases"))
    all_aliases = ws.registry.all_aliases
    monkeypatch.setattr(ws.registry, "all_aliases",
                        lambda kind: (asked.append(kind), all_aliases(kind))[1])
    checks = CountingChecks(ws)
    now = Statuses(ws, checks)
    page = facts.network_page(now, "one", 1)
    now.graph(network_graph(ws.registry, page.network))
    assert checks.read == ["one.l1@1"] and page.status == "ok"
    assert len(checks.streams_read) == 1  # the examples: one@1 reads no other stream
    assert asked == ["network"]
    checks.read.clear()
    asked.clear()
    now = Statuses(ws, checks)  # the overview: every live layer once, every alias in one read
    facts.damaged_layers(now)
    facts.network_rows(now, facts.Filters())
    now.graph(store_graph(ws.registry))
    facts.layer_rows(now, facts.Filters())
    assert sorted(checks.read) == ["one.l1@1", "two.l1@1", "two.l2@1"]
    assert sorted(asked) == ["layer", "network"]
    ws.registry.engine.dispose()


def test_long_lists_come_a_page_at_a_time(tmp_path):
    ws = Workspace.init(home=str(tmp_path / "home"))
    import_dataset(ws, "iris", "sklearn:iris")
    train_network(ws, "n", "iris", "dense:4", QUICK)
    layer = ws.registry.layer("n.l1", "1")
    for k in range(facts.PAGE_SIZE + 20):  # rows whose blocks are not there: damaged
        ws.registry.add_layer(f"x{k:03d}", "0" * 64, f"d{k}", layer.spec, layer.signature,
                              "iris", layer.config, layer.metrics)
    ws.registry.engine.dispose()
    with ui_server(tmp_path / "home") as url:
        first = get(url + "/layers")[1]
        assert len(refs(first, "layer")) == facts.PAGE_SIZE
        assert f"page 1 of 2 ({facts.PAGE_SIZE + 21} in all)" in first
        second = get(url + "/layers?page=2")[1]
        assert list(refs(second, "layer")) == [f"x{k:03d}@1" for k in range(99, 120)]
        damaged = get(url + "/layers?status=damaged&page=2")[1]
        assert list(refs(damaged, "layer")) == [f"x{k:03d}@1" for k in range(100, 120)]
        assert "page 2 of 2 (120 in all)" in damaged
        for bad, why in (("0", "must lie in 1..2147483647, got 0"),
                         ("x", "must be a whole number, got &#39;x&#39;"),
                         ("-1", "must be a whole number, got &#39;-1&#39;"),
                         ("%C2%B2", "must be a whole number, got &#39;\u00b2&#39;"),
                         ("9" * 5000, "must lie in 1..2147483647, got a 5000-digit number")):
            status, body = get(url + f"/layers?page={bad}")
            assert status == 400
            assert f'<p class="error-message">page {why}</p>' in body
