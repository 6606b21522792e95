"""Faults that used to lose work or dead-end: damaged streams, deletions that stranded a layer,
a registry that is not one, damaged blocks built upon, diverged training, read-only
registries, bad names and endless inputs. Each ends in one line with its exit code, and
nothing is lost."""

from __future__ import annotations

import contextlib
import json

import pytest

from mfstore.block import load_block
from mfstore.manifest import read_manifest
from mfstore.workspace import Workspace, block_path
from tests.cli_run import QUICK, in_home, json_of


def _error(out) -> str:
    """The one error line (progress bars of training before the failure aside)."""
    assert "Traceback" not in out.stderr
    lines = [x for x in out.stderr.strip().splitlines() if not x.startswith(("MF layer", "BP"))]
    assert len(lines) == 1, out.stderr
    return lines[0]


def _stream_of(home, *refs: str):
    """The manifest of the stream the chain `refs` makes of digits."""
    from mfstore.manifest import stream_id

    ws = Workspace.open(home=str(home))
    chain = [ws.registry.layer(*r.split("@")).digest for r in refs]
    dataset = ws.registry.dataset("digits")
    return ws, read_manifest(ws.store, stream_id(dataset.fingerprint, chain))


def _corrupt(home, path: str) -> None:
    file = home / "store" / path
    file.write_bytes(file.read_bytes()[:-8])


# 7. damaged streams ------------------------------------------------------------------------

def test_a_damaged_derived_stream_is_found_repaired_and_collected(home):
    _, manifest = _stream_of(home, "net.l1@1")
    _corrupt(home, manifest.splits["train"].shards[0].path)
    out = in_home(home, "train-layer", "t3", "--data", "digits", "--on", "net.l1@1", "--kind",
                  "dense", "--width", "8", *QUICK)
    assert out.returncode == 8
    assert _error(out).startswith(f"error: stream {manifest.id[:12]} is damaged: ")
    assert _error(out).endswith("; run `mfstore repair --auto`")
    report = json.loads(in_home(home, "verify", "net@1", "--json").stdout)
    assert in_home(home, "verify", "net@1").returncode == 8
    (bad,) = [s for s in report["streams"] if not s["ok"]]
    assert bad["id"] == manifest.id and bad["chain"] == ["net.l1@1"]
    assert bad["repair"] == "run `mfstore repair net@1 --auto`"
    assert json_of(home, "layers", "list") and report["damaged"] == 0  # the layers are fine
    assert json_of(home, "gc", "--dry-run")["streams"] == []  # not within the grace period
    dry = json_of(home, "gc", "--dry-run", "--grace", "0")
    assert [sid for sid, _ in dry["streams"]] == [manifest.id]
    repaired = json_of(home, "repair", "net@1", "--auto")
    assert repaired["streams"] == [manifest.id] and repaired["repaired"] == []
    assert in_home(home, "verify", "net@1").returncode == 0
    out = in_home(home, "train-layer", "t3", "--data", "digits", "--on", "net.l1@1", "--kind",
                  "dense", "--width", "8", *QUICK)
    assert out.returncode == 0, out.stderr


def test_the_datasets_own_stream_is_restored_by_data_add_or_repair(home):
    ws = Workspace.open(home=str(home))
    dataset = ws.registry.dataset("digits")
    manifest = read_manifest(ws.store, dataset.stream_id)
    shard = manifest.splits["test"].shards[0]
    (home / "store" / shard.path).unlink()
    out = in_home(home, "eval", "net@1")
    assert out.returncode == 8 and f"stream {dataset.stream_id[:12]} is damaged" in _error(out)
    report = json.loads(in_home(home, "verify", "--json").stdout)
    (bad,) = [s for s in report["streams"] if not s["ok"]]
    assert bad["id"] == dataset.stream_id and bad["problems"][0].endswith("is missing")
    assert in_home(home, "data", "add", "digits", "sklearn:digits").returncode == 0
    assert in_home(home, "verify").returncode == 0
    assert in_home(home, "eval", "net@1").returncode == 0
    (home / "store" / "streams" / dataset.stream_id / "manifest.json").unlink()
    assert json_of(home, "repair", "--auto")["streams"] == [dataset.stream_id]  # from the source
    assert in_home(home, "verify").returncode == 0


# 8. deletion never strands a live layer ----------------------------------------------------

def test_deleting_a_network_keeps_the_layers_a_live_layer_was_trained_on(home):
    out = in_home(home, "train-layer", "t3", "--data", "digits", "--on", "net.l1@1", "--on",
                  "net.l2@1", "--kind", "dense", "--width", "8", *QUICK)
    assert out.returncode == 0, out.stderr
    out = in_home(home, "nets", "delete", "net@1")
    assert out.stdout.splitlines() == [
        "deleted network net@1",
        "kept layer net.l1@1: layer t3@1 was trained on its outputs",
        "kept layer net.l2@1: layer t3@1 was trained on its outputs"]
    assert json_of(home, "layers", "show", "net.l2@1")["used_by"] == {"networks": [],
                                                                      "layers": ["t3@1"]}
    refused = in_home(home, "layers", "delete", "net.l1@1")
    assert refused.returncode == 10
    assert _error(refused) == (
        "error: layer net.l1@1 is still needed: layer net.l2@1 was trained on its outputs; "
        "layer t3@1 was trained on its outputs; first delete t3@1 and net.l2@1 (`mfstore "
        "layers delete t3@1`, `mfstore layers delete net.l2@1`)")
    collected = json_of(home, "gc", "--grace", "0")
    assert collected["blocks"] == [] and collected["streams"] == []
    assert in_home(home, "verify", "--data", "digits").returncode == 0
    composed = in_home(home, "compose", "again", "net.l1@1", "net.l2@1", "t3@1")
    assert composed.returncode == 0, composed.stderr
    assert in_home(home, "layers", "delete", "t3@1").returncode == 10  # again@1 holds it


def test_deleting_the_last_user_frees_the_chain(home):
    out = in_home(home, "train-layer", "t3", "--data", "digits", "--on", "net.l1@1", "--on",
                  "net.l2@1", "--kind", "dense", "--width", "8", *QUICK)
    assert out.returncode == 0, out.stderr
    assert in_home(home, "nets", "delete", "net@1").returncode == 0
    assert in_home(home, "layers", "delete", "t3@1").stdout == "deleted layer t3@1\n"
    for ref in ("net.l2@1", "net.l1@1"):  # now nothing needs them, upper layer first
        assert in_home(home, "layers", "delete", ref).returncode == 0
    freed = json_of(home, "gc", "--grace", "0")
    assert len(freed["blocks"]) == 3 and len(freed["streams"]) >= 2
    assert json_of(home, "gc", "--grace", "0")["bytes"] == 0


def test_lineage_graph_of_a_network(home):
    dot = in_home(home, "nets", "graph", "net@1").stdout
    assert '"dataset:digits" -> "layer:net.l1@1";' in dot
    assert '"layer:net.l2@1" -> "network:net@1";' in dot
    mermaid = in_home(home, "nets", "graph", "net@1", "--format", "mermaid").stdout
    assert mermaid.splitlines()[:2] == ["flowchart LR", '  n0[("digits")]']
    bad = in_home(home, "nets", "graph", "net@1", "--format", "svg")
    assert bad.returncode == 2 and "unknown format 'svg'; choose dot or mermaid" in bad.stderr


# 9. only init creates a registry -----------------------------------------------------------

def test_an_empty_registry_file_is_refused_and_gc_removes_nothing(home):
    (home / "registry.db").write_bytes(b"")
    for args in (["nets", "list"], ["gc", "--dry-run", "--grace", "0"]):
        out = in_home(home, *args)
        assert out.returncode == 9
        assert _error(out) == (f"error: registry 'sqlite:///{home}/registry.db' is an empty "
                               "file, not an mfstore registry; run `mfstore init` first (or "
                               "check --registry / MFSTORE_REGISTRY)")
    assert len(list((home / "store").rglob("*.safetensors"))) > 0  # nothing collected


# 10. nothing is built on a damaged block ---------------------------------------------------

@pytest.mark.parametrize("command", [
    ["extend", "net@1", "--kind", "dense", "--width", "8", *QUICK],
    ["compose", "copy", "net.l1@1", "net.l2@1"],
    ["train-layer", "t3", "--data", "digits", "--on", "net.l1@1", "--on", "net.l2@1",
     "--kind", "dense", "--width", "8", *QUICK],
])
def test_nothing_is_built_on_a_damaged_block(home, command):
    ws = Workspace.open(home=str(home))
    layer = ws.registry.layer("net.l2", "1")
    _corrupt(home, block_path(layer.block_sha256))
    before = json_of(home, "nets", "list"), json_of(home, "layers", "list")
    out = in_home(home, *command)
    assert out.returncode == 8
    assert _error(out).startswith("error: layer net.l2@1 is damaged (its block file ")
    assert _error(out).endswith("; run `mfstore repair net@1 --layer 2`")
    after = json_of(home, "nets", "list"), json_of(home, "layers", "list")
    assert after[0] == before[0] and [v["ref"] for v in after[1]] == [v["ref"] for v in before[1]]


# 11. a diverged layer is never registered --------------------------------------------------

@pytest.mark.parametrize("lr,code,message", [
    ("inf", 2, "error: learning rate must be a positive number, got inf"),
    ("nan", 2, "error: learning rate must be a positive number, got nan"),
    ("1e30", 2, "error: training diverged: layer 1 (mf) reached a non-finite loss or weight at "
                "epoch 1 with learning rate 1e+30; nothing was registered; pass --lr 1e+29 "
                "(a tenth of it)"),
])
def test_a_diverging_layer_is_never_registered(home, lr, code, message):
    before = json_of(home, "layers", "list")
    out = in_home(home, "train-layer", "boom", "--data", "digits", "--kind", "dense", "--width",
                  "16", "--epochs", "2", "--device", "cpu", "--lr", lr)
    assert out.returncode == code and _error(out) == message
    assert json_of(home, "layers", "list") == before


def test_a_nan_layer_is_damaged_and_its_repair_does_not_register_nan_again(home):
    ws = Workspace.open(home=str(home))
    row = ws.registry.layer("net.l2", "1")
    block = load_block(ws, row)
    block.tensors["weight"][0, 0] = float("nan")
    (home / "store" / block_path(row.block_sha256)).write_bytes(block.to_bytes())
    report = json.loads(in_home(home, "verify", "net@1", "--json").stdout)
    assert "non-finite values in weight" in report["layers"][1]["problems"]
    repaired = json_of(home, "repair", "net@1", "--auto")  # retrained from its recorded seed
    assert repaired["repaired"] == [{"old": "net.l2@1", "new": "net.l2@2", "identical": True}]
    assert in_home(home, "verify", "net@2").returncode == 0


# 12. read-only registries and a home that is a file ----------------------------------------

@pytest.mark.parametrize("command", [
    ["layers", "alias", "net.l1@1", "prod"],
    ["data", "add", "iris", "sklearn:iris"],
    ["repair", "net@1", "--layer", "2"],
])
def test_writing_to_a_read_only_registry_is_a_one_line_error(home, command):
    db = home / "registry.db"
    listed = in_home(home, "layers", "list")
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    out = in_home(home, "--registry", read_only, *command)
    assert out.returncode == 9
    assert _error(out).startswith(f"error: cannot write to registry '{read_only}': it is "
                                  "read-only (attempt to write a readonly database)")
    assert in_home(home, "layers", "list").stdout == listed.stdout  # nothing changed
    assert in_home(home, "--registry", read_only, "layers", "list").returncode == 0


def test_home_pointing_at_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    for args in (["init"], ["layers", "list"]):
        out = in_home(tmp_path / "f", *args)
        assert out.returncode == 9
        assert _error(out) == f"error: home '{tmp_path}/f' is a file, not a folder; check " \
                              "--home / MFSTORE_HOME"


# 14. inputs that never end -----------------------------------------------------------------

def test_a_device_is_not_read_as_data(home):
    out = in_home(home, "data", "add", "dz", "/dev/zero", "--format", "npz")
    assert out.returncode == 3
    assert _error(out) == ("error: '/dev/zero' is not a regular file (a device, pipe or socket);"
                           " give a data file")


def test_a_data_file_over_the_size_cap(home, tmp_path, monkeypatch):
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np.ones((100, 4)), y=np.arange(100) % 2)
    monkeypatch.setenv("MFSTORE_MAX_READ_BYTES", "1000")
    out = in_home(home, "data", "add", "d", str(tmp_path / "d.npz"))
    assert out.returncode == 4
    assert "more than the 1000 a data file may hold (MFSTORE_MAX_READ_BYTES)" in _error(out)


# review: what gc, repair and the readers must never do ------------------------------------

def test_gc_waits_out_the_grace_period_even_for_damaged_streams(home):
    ws = Workspace.open(home=str(home))
    dataset = ws.registry.dataset("digits")
    layer = ws.registry.layer("net.l1", "1")
    from mfstore.manifest import stream_id

    derived = stream_id(dataset.fingerprint, [layer.digest])
    for sid in (dataset.stream_id, derived):
        shard = read_manifest(ws.store, sid).splits["val"].shards[0]
        _corrupt(home, shard.path)
    assert in_home(home, "verify").returncode == 8  # both marked damaged
    assert json_of(home, "gc")["streams"] == []  # young files: a repair may be writing them
    collected = json_of(home, "gc", "--grace", "0")
    assert [sid for sid, _ in collected["streams"]] == [derived]  # never the examples
    assert read_manifest(ws.store, dataset.stream_id) is not None


def test_a_store_belongs_to_one_registry(home, tmp_path):
    other = f"sqlite:///{tmp_path}/other.db"
    for args in (["init"], ["gc", "--dry-run"], ["verify"]):
        out = in_home(home, "--registry", other, *args)
        assert out.returncode == 9
        assert _error(out).startswith(f"error: the store '{home}/store' belongs to another "
                                      "registry (its marker names ")
    assert json_of(home, "gc", "--grace", "0")["bytes"] == 0  # its own registry is fine


def test_a_whole_store_repair_after_an_earlier_repair(home):
    ws = Workspace.open(home=str(home))
    for name in ("net.l1", "net.l2"):
        layer = ws.registry.layer(name, "1")
        _corrupt(home, block_path(layer.block_sha256))
        repaired = json_of(home, "repair", "--auto")
        assert [r["old"] for r in repaired["repaired"]] == [f"{name}@1"]
        assert repaired["repaired"][0]["identical"] and repaired["left"] == {}
    report = json.loads(in_home(home, "verify", "--json").stdout)
    assert report["damaged"] == 0  # the damaged versions are repaired (and say by what)
    assert sorted(c["repaired_by"] for c in report["layers"] if c["repaired_by"]) == [
        "net.l1@2", "net.l2@2"]


def test_a_dataset_imported_from_a_relative_path_is_rebuilt_from_anywhere(home, tmp_path,
                                                                          monkeypatch):
    import numpy as np

    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "d.npz", x=np.arange(200.0).reshape(100, 2), y=np.arange(100) % 2)
    monkeypatch.chdir(folder)
    assert in_home(home, "data", "add", "d", "d.npz").returncode == 0
    assert json_of(home, "data", "show", "d")["source"] == str(folder / "d.npz")
    monkeypatch.chdir(tmp_path)
    ws = Workspace.open(home=str(home))
    sid = ws.registry.dataset("d").stream_id
    (home / "store" / "streams" / sid / "manifest.json").unlink()
    assert json_of(home, "repair", "--auto")["streams"] == [sid]
    (folder / "d.npz").unlink()
    (home / "store" / "streams" / sid / "manifest.json").unlink()
    out = in_home(home, "repair", "--auto")
    assert out.returncode == 8
    assert out.stderr.strip() == (
        f"not repaired: stream {sid[:12]}: the examples of dataset 'd' cannot be read again "
        f"from its recorded source '{folder}/d.npz' (cannot reach '{folder}/d.npz': no such "
        "file or folder; check the path); import it with `mfstore data add d URL` (replace URL "
        "with where the data is now: a path, an fsspec URL or sklearn:DATASET)")


def test_an_npz_that_unpacks_beyond_the_cap_is_refused(home, tmp_path, monkeypatch):
    import numpy as np

    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((1000, 1000)), y=np.zeros(1000))
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    monkeypatch.setenv("MFSTORE_MAX_READ_BYTES", "1000000")
    out = in_home(home, "data", "add", "b", str(tmp_path / "bomb.npz"))
    assert out.returncode == 4
    assert _error(out).startswith(f"error: {tmp_path}/bomb.npz: its arrays unpack to 8008")
    assert "more than the 1000000 a data file may hold (MFSTORE_MAX_READ_BYTES)" in _error(out)


def test_a_parquet_file_that_unpacks_beyond_the_cap_is_refused(home, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [0.0] * 200_000, "label": [0, 1] * 100_000}),
                   tmp_path / "t.parquet")
    monkeypatch.setenv("MFSTORE_MAX_READ_BYTES", "1000000")
    out = in_home(home, "data", "add", "t", str(tmp_path / "t.parquet"))
    assert out.returncode == 4 and "its columns unpack to" in _error(out)


def test_a_network_name_whose_layer_names_would_be_too_long(home):
    name = "n" * 198
    out = in_home(home, "train", name, "--data", "digits", "--arch", "dense:8,dense:8", *QUICK)
    assert out.returncode == 2
    assert _error(out).startswith(f"error: invalid layer name '{name}.l2'")
    assert not [v for v in json_of(home, "layers", "list") if v["name"].startswith("nnn")]


# a full disk: reads still answer ---------------------------------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A 16 MiB file system of the test's own (tmpfs), to be filled."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_still_answers_reads_and_says_why_writes_fail(full_disk):
    """Each command a process of its own, as a user runs them: on a full disk SQLite cannot
    make the shared-memory file a reader needs ("disk I/O error"); reads then open the file
    immutable, and a write says the disk is full."""
    from tests.cli_run import mfstore

    home = full_disk / "home"
    env = {"MFSTORE_HOME": str(home)}
    for args in (["init"], ["data", "add", "iris", "sklearn:iris"],
                 ["train-layer", "l", "--data", "iris", "--kind", "dense", "--width", "4",
                  "--epochs", "1", "--device", "cpu"]):
        assert mfstore(*args, env=env).returncode == 0
    with open(full_disk / "filler", "wb", buffering=0) as f, \
            contextlib.suppress(OSError):  # every byte left
        while True:
            f.write(b"\0" * 4096)
    listed = mfstore("layers", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [v["ref"] for v in json.loads(listed.stdout)] == ["l@1"]
    assert mfstore("data", "list", env=env).returncode == 0
    alias = mfstore("layers", "alias", "l@1", "prod", env=env)  # a registry write
    assert alias.returncode == 9
    assert _error(alias) == (f"error: cannot write to registry 'sqlite:///{home}/registry.db': "
                             "the disk holding it is full; free some space")
    wrote = mfstore("data", "add", "wine", "sklearn:wine", env=env)  # the store's write first
    assert wrote.returncode == 9 and "No space left on device" in _error(wrote)
