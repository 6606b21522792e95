"""`--json` of `train-layer`, `layers show` and `nets show` carries each block's per-epoch
history, the same the UI draws; a damaged block shows none and the command still answers."""

from __future__ import annotations

from pathlib import Path

from mfstore.block import load_block
from mfstore.workspace import Workspace, block_path
from tests.cli_run import QUICK, in_home, json_of


def _history(home, ref: str) -> dict:
    ws = Workspace.open(str(home))
    name, version = ref.split("@")
    return load_block(ws, ws.registry.layer(name, version)).history


def test_train_layer_json_has_the_history(home):
    data = json_of(home, "train-layer", "extra", "--data", "digits", "--kind", "dense",
                   "--width", "8", *QUICK)
    history = data["history"]
    assert history == _history(home, "extra@1")
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert set(history["epochs"][0]) == {"epoch", "train_loss", "val_loss", "val_accuracy"}
    assert history["best_epoch"] in (1, 2, 3)


def test_layers_show_and_nets_show_json_have_the_history(home):
    shown = json_of(home, "layers", "show", "net.l2@1")
    assert shown["history"] == _history(home, "net.l2@1")
    assert len(shown["history"]["epochs"]) == 3
    net = json_of(home, "nets", "show", "net@1")
    assert [v["ref"] for v in net["layer_versions"]] == ["net.l1@1", "net.l2@1"]
    assert [v["history"] for v in net["layer_versions"]] == [
        _history(home, "net.l1@1"), _history(home, "net.l2@1")]


def test_a_damaged_block_shows_no_history_and_show_still_answers(home):
    ws = Workspace.open(str(home))
    layer = ws.registry.layer("net.l1", "1")
    path = Path(ws.where.store) / block_path(layer.block_sha256)
    path.write_bytes(path.read_bytes()[:-3])  # truncated
    shown = json_of(home, "layers", "show", "net.l1@1")
    assert shown["history"] is None
    assert shown["block_sha256"] == layer.block_sha256
    net = json_of(home, "nets", "show", "net@1")
    assert [v["history"] is None for v in net["layer_versions"]] == [True, False]
    assert in_home(home, "layers", "show", "net.l1@1").returncode == 0


def test_show_refuses_a_store_that_is_gone_and_json_nulls_only_a_damaged_block(home):
    """A store that is not there is exit 9 for every command, never a history of null; a
    block that is missing from a store that is there is a damaged one: its history is null."""
    ws = Workspace.open(str(home))
    Path(ws.where.store).rename(home / "moved")
    for args in (["layers", "show", "net.l2@1"], ["nets", "show", "net@1"],
                 ["layers", "show", "net.l2@1", "--json"], ["nets", "show", "net@1", "--json"]):
        out = in_home(home, *args)
        assert out.returncode == 9, out.stdout
        assert out.stderr.startswith(f"error: there is no mfstore store at '{ws.where.store}'")
    (home / "moved").rename(ws.where.store)
    layer = ws.registry.layer("net.l2", "1")
    (Path(ws.where.store) / block_path(layer.block_sha256)).unlink()
    assert json_of(home, "layers", "show", "net.l2@1")["history"] is None
    net = json_of(home, "nets", "show", "net@1")
    assert [v["history"] is None for v in net["layer_versions"]] == [False, True]
