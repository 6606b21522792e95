"""The whole store, checked and mended: `mfstore verify` with no network reports every network
version a damaged layer breaks (unless a newer intact version replaces it and no alias names
it), and `mfstore repair --auto` leaves every network that had a damaged layer with a healthy
registered version, reusing a repair made earlier rather than training a second copy."""

from __future__ import annotations

import json
import sqlite3

from mfstore.compose import retrain
from mfstore.workspace import Workspace, block_path
from tests.cli_run import in_home, json_of


def _flip(home, ref: str) -> None:
    """One flipped byte in the block of layer `ref` (its sha256 no longer matches)."""
    ws = Workspace.open(home=str(home))
    row = ws.registry.layer(*ref.split("@"))
    path = home / "store" / block_path(row.block_sha256)
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01
    path.write_bytes(bytes(data))


def _verify(home, *args: str) -> tuple[int, dict]:
    out = in_home(home, "verify", *args, "--json")
    return out.returncode, json.loads(out.stdout)


def test_a_store_repair_registers_every_network_it_mends_and_verify_agrees(home):
    _flip(home, "net.l1@1")
    code, report = _verify(home)
    assert code == 8 and report["damaged"] == 1 and report["damaged_networks"] == 1
    assert report["networks"] == [{
        "network": "net@1", "ok": False, "problems": ["its layer 1 net.l1@1 is damaged"],
        "repaired_by": None, "aliases": [], "repair": "run `mfstore repair net@1 --auto`"}]

    repaired = json_of(home, "repair", "--auto")
    assert repaired["repaired"] == [{"old": "net.l1@1", "new": "net.l1@2", "identical": True}]
    assert repaired["networks"] == ["net@2"]
    nets = json_of(home, "nets", "list")
    assert [(n["ref"], n["layers"]) for n in nets] == [
        ("net@1", [["net.l1", 1], ["net.l2", 1]]), ("net@2", [["net.l1", 2], ["net.l2", 1]])]

    code, report = _verify(home)
    assert code == 0 and report["damaged_networks"] == 0
    assert [(n["network"], n["ok"], n["repaired_by"]) for n in report["networks"]] == [
        ("net@1", True, "net@2")]
    assert in_home(home, "verify", "net").returncode == 0
    assert in_home(home, "eval", "net").returncode == 0
    text = in_home(home, "verify").stdout
    assert "REPAIRED network net@1  (by net@2)" in text
    assert text.strip().endswith("0 layers, 0 streams and 0 networks damaged")
    assert json_of(home, "repair", "--auto") == {  # nothing left to do, nothing trained again
        "network": None, "networks": [], "repaired": [], "retrained_downstream": [],
        "kept_downstream": [], "streams": [], "left": {}}


def test_an_alias_still_naming_the_broken_version_is_reported_with_the_move_that_mends_it(home):
    assert in_home(home, "nets", "alias", "net@1", "prod").returncode == 0
    _flip(home, "net.l2@1")
    json_of(home, "repair", "--auto")
    code, report = _verify(home)
    assert code == 8 and report["damaged"] == 0 and report["damaged_networks"] == 1
    (check,) = report["networks"]
    assert (check["network"], check["repaired_by"], check["aliases"]) == ("net@1", "net@2",
                                                                          ["prod"])
    assert check["repair"] == "move it with `mfstore nets alias net@2 prod`"
    assert in_home(home, "verify", "net@prod").returncode == 8  # what the report said
    assert in_home(home, "nets", "alias", "net@2", "prod").returncode == 0  # the fix, as said
    assert _verify(home)[0] == 0
    assert in_home(home, "verify", "net@prod").returncode == 0


def test_a_layer_repaired_before_is_used_rather_than_trained_again(home):
    """The state an older `repair --auto` left: net.l1@2 repairs net.l1@1, but net@1 still
    names the damaged version and no network holds the repair."""
    _flip(home, "net.l1@1")
    ws = Workspace.open(home=str(home))
    old = ws.registry.layer("net.l1", "1")
    retrain(ws, old, ws.registry.dataset("digits"), [], repairs=1, note="repairs net.l1@1")
    assert in_home(home, "verify").returncode == 8  # net@1, the latest, is broken

    repaired = json_of(home, "repair", "--auto")
    assert repaired["repaired"] == [] and repaired["networks"] == ["net@2"]
    assert [v["ref"] for v in json_of(home, "layers", "list") if v["name"] == "net.l1"] == [
        "net.l1@1", "net.l1@2"]  # no third copy
    assert json_of(home, "nets", "show", "net@2")["layers"] == [["net.l1", 2], ["net.l2", 1]]
    assert in_home(home, "verify").returncode == 0


def test_a_network_whose_layer_cannot_be_mended_is_named(home):
    """net.l1@1 and net.l2@1 damaged, and net.l1@1's recorded seed no longer the one it was
    trained with: net.l1@1 comes back with other weights, so nothing intact computes what
    net.l2@1 was trained on. The store repair says net@1 was left, and why; verify agrees."""
    _flip(home, "net.l1@1")
    _flip(home, "net.l2@1")
    with sqlite3.connect(home / "registry.db") as db:
        db.execute("UPDATE layer_versions SET config = json_set(config, '$.seed', 99) "
                   "WHERE name = 'net.l1' AND version = 1")
    out = in_home(home, "repair", "--auto", "--json")
    assert out.returncode == 8
    result = json.loads(out.stdout)
    assert result["repaired"] == [{"old": "net.l1@1", "new": "net.l1@2", "identical": False}]
    assert result["networks"] == []
    assert result["left"]["net@1"] == "its layer 2 net.l2@1 is damaged and was not repaired"
    assert "net.l2@1" in result["left"]
    code, report = _verify(home)
    assert code == 8 and [n["network"] for n in report["networks"]] == ["net@1"]
