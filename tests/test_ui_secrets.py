"""Registry and store URLs may hold passwords; the UI's pages (its error and 401 pages above
all) and the report show them masked, or not at all. Each form a password takes in a URL: a
`password=` query value (SQLite passes it on) and `user:password@` (PostgreSQL; a local store
URL, which fsspec reads as a path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfstore.config import TrainConfig
from mfstore.importing import import_dataset
from mfstore.store_training import train_network
from mfstore.workspace import Workspace
from tests.cli_run import cli
from tests.ui_run import get, ui_server

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings(
    "ignore:Query string argument:sqlalchemy.exc.SAWarning")]  # SQLite ignores password=

QUICK = TrainConfig(epochs=2, batch_size=32, lr=0.01, device="cpu")
PAGES = ["/", "/datasets", "/datasets/iris", "/layers", "/layers/irisnet.l1/1", "/networks",
         "/networks/irisnet/1", "/graph", "/search?q=iris"]


def build(folder: Path, registry: str, store: str) -> list[str]:
    """A small workspace at these URLs (store paths relative to `folder`); its global options."""
    where = ["--registry", registry, "--store", store]
    ws = Workspace.init(home=str(folder / "home"), registry=registry, store=store)
    import_dataset(ws, "iris", "sklearn:iris")
    train_network(ws, "irisnet", "iris", "dense:8", QUICK)
    ws.registry.engine.dispose()
    return where


@pytest.fixture(params=["query", "userinfo"])
def secret_store(request, tmp_path, monkeypatch):
    """(folder, global options, the passwords, the masked URLs) of a workspace whose URLs hold
    passwords."""
    monkeypatch.chdir(tmp_path)  # the `user:password@` store is a path under it
    if request.param == "query":
        registry = f"sqlite:///{tmp_path}/registry.db?password=regpw-4711"
        store, masked = f"file:///{tmp_path}/store?password=storepw-4711", [
            f"sqlite:///{tmp_path}/registry.db?password=***",
            f"file:///{tmp_path}/store?password=***"]
    else:
        database = request.getfixturevalue("postgres").new_database()
        registry = database.replace("postgres@", "postgres:regpw-4711@")
        store = "file://admin:storepw-4711@/store"
        masked = [database.replace("postgres@", "postgres:***@"),
                  "file://admin:***@/store"]
    return tmp_path, build(tmp_path, registry, store), ["regpw-4711", "storepw-4711"], masked


def test_pages_and_the_report_never_show_a_password(secret_store):
    folder, where, secrets, masked = secret_store
    with ui_server(folder / "home", where=where, cwd=folder) as url:
        for path in PAGES:
            status, body = get(url + path)
            assert status == 200, path
            assert not [s for s in secrets if s in body], path
        assert all(m in body for m in masked)  # the footer names them, masked
        for path, code in [("/nowhere", 404), ("/layers/irisnet.l1/9", 404)]:
            status, body = get(url + path)
            assert status == code
            assert not [s for s in secrets if s in body] and "<footer" not in body
    report = folder / "report.html"
    ran = cli("--home", str(folder / "home"), *where, "report", "irisnet@1", "--out",
              str(report))
    assert ran.returncode == 0, ran.stderr
    html = report.read_text()
    assert not [s for s in secrets if s in html]
    assert all(m in html for m in masked)


def test_the_401_page_says_nothing_of_the_registry_or_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    where = build(tmp_path, f"sqlite:///{tmp_path}/registry.db?password=regpw-4711",
                  str(tmp_path / "store"))
    with ui_server(tmp_path / "home", "--token", "s3cret-token", where=where) as url:
        for path in ("/", "/layers", "/nowhere"):
            status, body = get(url + path)
            assert status == 401, path
            assert "regpw" not in body and "<footer" not in body
            assert "registry.db" not in body and str(tmp_path) not in body
