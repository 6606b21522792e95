"""Compose, extend, swap, verify, repair, degraded mode and gc, through the CLI on digits."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from mfstore.block import LayerBlock, load_block, store_block
from mfstore.store import sha256
from mfstore.workspace import Workspace, block_path
from tests.cli_run import QUICK, in_home, json_of


def layer_of(home, ref):
    return json_of(home, "layers", "show", ref)


def tensors(home, ref):
    ws = Workspace.open(home=str(home))
    name, version = ref.split("@")
    return load_block(ws, ws.registry.layer(name, version)).tensors


def test_extend_keeps_the_earlier_blocks_and_their_accuracy(home):
    before = json_of(home, "nets", "show", "net@1")["layer_versions"]
    eval_before = json_of(home, "eval", "net@1")
    out = json_of(home, "extend", "net@1", "--kind", "dense", "--width", "16", *QUICK)
    assert out["network"]["ref"] == "net@2" and out["layer"]["ref"] == "net.l3@1"
    after = json_of(home, "nets", "show", "net@2")["layer_versions"]
    assert [v["block_sha256"] for v in after[:2]] == [v["block_sha256"] for v in before]
    assert out["layer"]["signature"]["chain"] == [v["digest"] for v in before]
    eval_after = json_of(home, "eval", "net@2")
    assert eval_after["per_layer"][:2] == eval_before["per_layer"]
    assert len(eval_after["per_layer"]) == 3


def test_flipped_bytes_are_found_and_repaired_bit_for_bit(home):
    layer2 = layer_of(home, "net.l2@1")
    original = tensors(home, "net.l2@1")
    accuracy = json_of(home, "eval", "net@1")["per_layer"][1]
    path = home / "store" / block_path(layer2["block_sha256"])
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01
    path.write_bytes(bytes(data))

    out = in_home(home, "verify", "net@1")
    assert out.returncode == 8
    assert "DAMAGED layer 2 net.l2@1" in out.stdout
    assert "does not match its sha256 (changed, flipped or truncated bytes)" in out.stdout
    assert "repair: run `mfstore repair net@1 --layer 2`" in out.stdout
    assert "ok      layer 1 net.l1@1" in out.stdout
    assert layer_of(home, "net.l2@1")["status"] == "damaged"
    refused = in_home(home, "eval", "net@1")
    assert refused.returncode == 8 and "run `mfstore verify`" in refused.stderr

    repaired = json_of(home, "repair", "net@1", "--layer", "2")
    assert repaired["repaired"] == [{"old": "net.l2@1", "new": "net.l2@2", "identical": True}]
    assert repaired["network"]["ref"] == "net@2"
    for name, tensor in tensors(home, "net.l2@2").items():
        assert torch.equal(tensor, original[name]), name
    assert layer_of(home, "net.l2@2")["repairs"] == 1
    assert json_of(home, "eval", "net@2")["per_layer"][1] == accuracy
    assert in_home(home, "verify", "net@2").returncode == 0


def _write_noise(home, ref, register: bool):
    """A valid block with the right spec and wrong values, in place of `ref`'s file; with
    `register`, the registry also points at it (damage that happened before hashing)."""
    ws = Workspace.open(home=str(home))
    name, version = ref.split("@")
    row = ws.registry.layer(name, version)
    block = load_block(ws, row)
    g = torch.Generator().manual_seed(0)
    block.tensors = {k: torch.randn(t.shape, generator=g) for k, t in block.tensors.items()}
    data = block.to_bytes()
    if not register:
        (home / "store" / block_path(row.block_sha256)).write_bytes(data)
        return
    sha = store_block(ws, block)
    with sqlite3.connect(home / "registry.db") as db:
        db.execute("UPDATE layer_versions SET block_sha256 = ?, digest = ? WHERE name = ? AND "
                   "version = ?", (sha, LayerBlock.from_bytes(data).digest, name, int(version)))
    assert sha == sha256(data)


@pytest.mark.parametrize("register", [False, True])
def test_noise_is_caught_by_the_accuracy_check_and_repaired(home, register):
    accuracy = json_of(home, "eval", "net@1")["per_layer"][1]
    _write_noise(home, "net.l2@1", register)
    plain = in_home(home, "verify", "net@1")
    assert plain.returncode == (0 if register else 8)  # a registered noise block hashes fine
    report = json.loads(in_home(home, "verify", "net@1", "--data", "digits", "--json").stdout)
    layer2 = report["layers"][1]
    assert not layer2["ok"] and report["damaged"] == 1
    drop = [p for p in layer2["problems"] if p.startswith("test accuracy")]
    assert drop and "recorded at training (a drop of" in drop[0]
    assert layer2["accuracy"] < 0.5 and layer2["recorded_accuracy"] == accuracy
    repaired = json_of(home, "repair", "net@1", "--auto")
    assert [r["old"] for r in repaired["repaired"]] == ["net.l2@1"]
    assert json_of(home, "eval", "net@2")["per_layer"][1] == accuracy
    assert in_home(home, "verify", "net@2", "--data", "digits").returncode == 0


def test_degraded_prediction_from_the_first_layers(home):
    full = json_of(home, "eval", "net@1")
    _write_noise(home, "net.l2@1", register=False)  # layer 2 is broken
    degraded = json_of(home, "eval", "net@1", "--upto", "1")
    assert degraded["bp"] == degraded["ff"] == degraded["per_layer"][0] == full["per_layer"][0]
    from mfstore.network import load_network

    ws = Workspace.open(home=str(home))
    net = load_network(ws, "net@1", "bp", upto=1)  # the broken block is never read
    first = load_block(ws, ws.registry.layer("net.l1", "1")).to_layer()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net(x), first.goodness(first(x)))
    from mfstore.errors import IntegrityError

    with pytest.raises(IntegrityError, match="is damaged: its sha256 is not"):
        load_network(ws, "net@1", "bp")  # all of it: layer 2's block refuses


def test_compose_checks_shapes_and_lineage(home):
    out = in_home(home, "train-layer", "other", "--data", "digits", "--kind", "dense", "--width",
              "32", "--seed", "5", *QUICK)
    assert out.returncode == 0, out.stderr
    bad_shape = in_home(home, "compose", "x", "net.l1@1", "net.l1@1")
    assert bad_shape.returncode == 2
    assert bad_shape.stderr.strip() == ("error: net.l1@1 takes input of shape (1, 8, 8) but "
                                        "net.l1@1 produces (32,); check the chain's order")
    refused = in_home(home, "compose", "mix", "other@1", "net.l2@1")
    assert refused.returncode == 7
    assert refused.stderr.strip() == (
        "error: net.l2@1 was trained on the outputs of [net.l1@1] but here follows [other@1] "
        "of dataset 'digits'; retrain net.l2@1 with `mfstore train-layer net.l2 --data digits "
        "--on other@1 --kind dense --width 32 --epochs 3 --batch-size 64 --lr 0.01 --device "
        "cpu` (or pass --force to compose it anyway)")
    forced = json_of(home, "compose", "mix", "other@1", "net.l2@1", "--force")
    assert forced["forced"] and forced["note"].startswith("forced despite: net.l2@1 was")
    fine = json_of(home, "compose", "copy", "net.l1@1", "net.l2@1", "--mode", "ff")
    assert fine["ref"] == "copy@1" and fine["mode"] == "ff" and not fine["forced"]
    assert in_home(home, "nets", "alias", "copy@1", "prod").returncode == 0
    assert json_of(home, "eval", "copy@prod")["network"] == "copy@1"


def test_swap_refuses_an_incompatible_layer_unless_forced(home):
    for args in (["base", "--seed", "5"], ["alt", "--on", "base@1", "--seed", "7"]):
        out = in_home(home, "train-layer", args[0], "--data", "digits", "--kind", "dense",
                      "--width", "32", *args[1:], *QUICK)
        assert out.returncode == 0, out.stderr
    wrong_shape = in_home(home, "swap", "net@1", "--layer", "2", "--with", "base@1")
    assert wrong_shape.returncode == 2
    assert wrong_shape.stderr.strip() == ("error: base@1 takes input of shape (1, 8, 8) but "
                                          "net.l1@1 produces (32,); check the chain's order")
    refused = in_home(home, "swap", "net@1", "--layer", "2", "--with", "alt@1")
    assert refused.returncode == 7
    assert refused.stderr.strip() == (
        "error: alt@1 was trained on the outputs of [base@1] but here follows [net.l1@1] of "
        "dataset 'digits'; retrain alt@1 with `mfstore train-layer alt --data digits --on "
        "net.l1@1 --kind dense --width 32 --epochs 3 --batch-size 64 --lr 0.01 --seed 7 "
        "--device cpu` (or pass --force to swap it in anyway)")
    assert len(json_of(home, "nets", "list")) == 1  # nothing registered by the refusals
    forced = json_of(home, "swap", "net@1", "--layer", "2", "--with", "alt@1", "--force")
    assert forced["network"]["forced"] and forced["network"]["layers"][1] == ["alt", 1]
    assert "alt@1 was trained on the outputs of [base@1]" in forced["network"]["note"]


def test_swap_lists_and_retrains_downstream_layers(home):
    out = in_home(home, "train-layer", "first", "--data", "digits", "--kind", "dense", "--width",
              "32", "--seed", "3", *QUICK)
    assert out.returncode == 0, out.stderr
    refused = in_home(home, "swap", "net@1", "--layer", "1", "--with", "first@1")
    assert refused.returncode == 7
    assert refused.stderr.strip() == (
        "error: swapping in first@1 leaves downstream layers trained on another chain: "
        "net.l2@1; pass --retrain-downstream to retrain them (or pass --force to keep them)")
    done = json_of(home, "swap", "net@1", "--layer", "1", "--with", "first@1",
                   "--retrain-downstream")
    assert done["stale"] == ["net.l2@1"] and [v["ref"] for v in done["retrained"]] == ["net.l2@2"]
    assert done["network"]["layers"] == [["first", 1], ["net.l2", 2]]
    assert not done["network"]["forced"]
    assert done["retrained"][0]["signature"]["chain"] == [layer_of(home, "first@1")["digest"]]


def test_gc_after_deleting_a_network_frees_exactly_its_blocks_and_streams(home):
    assert json_of(home, "gc", "--grace", "0")["bytes"] == 0  # nothing unreferenced yet
    json_of(home, "extend", "net@1", "--kind", "dense", "--width", "16", *QUICK)  # net@2 adds l3
    json_of(home, "extend", "net@2", "--kind", "dense", "--width", "8", *QUICK)  # net@3 adds l4
    ws = Workspace.open(home=str(home))
    l3, l4 = ws.registry.layer("net.l3", "1"), ws.registry.layer("net.l4", "1")
    own_blocks = sorted(block_path(v.block_sha256) for v in (l3, l4))
    streams_before = {s.id for s in ws.registry.streams()}
    out = in_home(home, "nets", "delete", "net@3")
    assert out.stdout.splitlines() == [
        "deleted network net@3", "deleted layer net.l4@1",
        "kept layer net.l1@1: network net@1 holds it; network net@2 holds it",
        "kept layer net.l2@1: network net@1 holds it; network net@2 holds it",
        "kept layer net.l3@1: network net@2 holds it"]
    out = in_home(home, "nets", "delete", "net@2")
    assert out.stdout.splitlines()[:2] == ["deleted network net@2", "deleted layer net.l3@1"]
    dry = json_of(home, "gc", "--grace", "0", "--dry-run")
    assert sorted(p for p, _ in dry["blocks"]) == own_blocks
    l3_streams = {sid for sid, _ in dry["streams"]}
    assert len(l3_streams) == 1 and l3_streams < streams_before  # l3's output, which l4 read
    assert all(ws.store.exists(p) for p in own_blocks)  # a dry run removes nothing
    freed = json_of(home, "gc", "--grace", "0")
    assert freed["bytes"] == dry["bytes"] > 0
    assert not any(ws.store.exists(p) for p in own_blocks)
    assert {s.id for s in ws.registry.streams()} == streams_before - l3_streams
    assert in_home(home, "verify", "net@1", "--data", "digits").returncode == 0
    assert json_of(home, "gc", "--grace", "0")["bytes"] == 0


def test_a_repair_that_changes_the_tensors_retrains_the_layers_above(home):
    """Stands in for a layer trained with non-deterministic kernels: the recorded seed is
    changed, so the retrain cannot reproduce the original tensors."""
    json_of(home, "extend", "net@1", "--kind", "dense", "--width", "16", *QUICK)  # net@2: 3 layers
    layer2 = layer_of(home, "net.l2@1")
    with sqlite3.connect(home / "registry.db") as db:
        config = json.loads(db.execute("SELECT config FROM layer_versions WHERE name = 'net.l2'"
                                       ).fetchone()[0])
        db.execute("UPDATE layer_versions SET config = ? WHERE name = 'net.l2'",
                   (json.dumps({**config, "seed": 12345}),))
    path = home / "store" / block_path(layer2["block_sha256"])
    path.write_bytes(path.read_bytes()[:-3])  # truncated
    out = json_of(home, "repair", "net@2", "--layer", "2")
    assert out["repaired"] == [{"old": "net.l2@1", "new": "net.l2@2", "identical": False}]
    assert out["retrained_downstream"] == ["net.l3@2"]
    assert out["network"]["layers"] == [["net.l1", 1], ["net.l2", 2], ["net.l3", 2]]
    assert not out["network"]["forced"]
    assert in_home(home, "verify", "net@3", "--data", "digits").returncode == 0
