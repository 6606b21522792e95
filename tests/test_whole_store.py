"""The whole store, checked and mended: `mfstore verify` with no network reports every network
version a damaged layer breaks (unless a newer intact version replaces it and no alias names
it), and `mfstore repair --auto` leaves every network that had a damaged layer with a healthy
registered version, reusing a repair made earlier rather than training a second copy."""

from __future__ import annotations

import json
import sqlite3

import pytest

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
    assert result["left"]["net@1"] == "its layer 2 net.l2@1 was not repaired (said above)"
    assert "net.l2@1" in result["left"]
    code, report = _verify(home)
    assert code == 8 and [n["network"] for n in report["networks"]] == ["net@1"]


# A stream's manifest against its shards and its dataset -------------------------------------

def _edit_manifest(home, edit) -> str:
    """Apply `edit` to the JSON of digits' own stream's manifest; the stream id."""
    ws = Workspace.open(home=str(home))
    sid = ws.registry.dataset("digits").stream_id
    path = home / "store" / "streams" / sid / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return sid


def _lower_split(manifest) -> None:
    manifest["splits"]["train"]["count"] -= 5


def _lower_split_and_shard(manifest) -> None:
    manifest["splits"]["train"]["count"] -= 5
    manifest["splits"]["train"]["shards"][-1]["count"] -= 5


def _drop_a_shard(manifest) -> None:
    train = manifest["splits"]["train"]
    gone = train["shards"].pop()
    train["count"] -= gone["count"]


@pytest.mark.parametrize("edit,problem", [
    (_lower_split, "split train says {n} examples, its shards hold {m}"),
    (_lower_split_and_shard, "holds x [{k}, 1, 8, 8] and y [{k}], its manifest says {j} examples"),
    (_drop_a_shard, "split train holds {d} examples, its dataset {m}"),
], ids=["split-count", "shard-count", "shard-dropped"])
def test_a_manifest_that_lies_about_its_examples_is_damaged(home, edit, problem):
    ws = Workspace.open(home=str(home))
    m = ws.registry.dataset("digits").counts["train"]
    sid = ws.registry.dataset("digits").stream_id
    before = json.loads((home / "store" / "streams" / sid / "manifest.json").read_text())
    shards = before["splits"]["train"]["shards"]
    k = shards[-1]["count"]
    expected = problem.format(n=m - 5, m=m, k=k, j=k - 5, d=m - k)
    _edit_manifest(home, edit)
    layers = json_of(home, "layers", "list")

    code, report = _verify(home)
    assert code == 8
    (stream,) = [s for s in report["streams"] if s["id"] == sid]
    assert not stream["ok"] and any(expected in p for p in stream["problems"]), stream
    out = in_home(home, "train-layer", "more", "--data", "digits", "--kind", "dense",
                  "--width", "8", "--epochs", "1", "--device", "cpu")
    assert out.returncode == 8 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "damaged" in out.stderr and "Traceback" not in out.stderr
    assert json_of(home, "layers", "list") == layers  # nothing trained on the short stream

    assert in_home(home, "repair", "--auto").returncode == 0  # read again from its source
    assert _verify(home)[0] == 0
    after = json.loads((home / "store" / "streams" / sid / "manifest.json").read_text())
    assert _contents(after) == _contents(before)  # the same examples, every one


def _contents(manifest) -> dict:
    return {name: (split["count"], [s["sha256"] for s in split["shards"]])
            for name, split in manifest["splits"].items()}
