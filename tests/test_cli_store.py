"""The layer store through the command line, as a user drives it: on SQLite and a local
folder, and on PostgreSQL and S3 (a team's setup)."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import QUICK, cli, mfstore
from tests.conftest import make_backend


@pytest.fixture(scope="module", params=["sqlite+local", "postgres+s3"])
def team(request, tmp_path_factory):
    backend = make_backend(request.param, request, tmp_path_factory.mktemp("home"))
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"],
                 ["train-layer", "l1", "--data", "digits", "--kind", "dense", "--width", "32",
                  *QUICK],
                 ["train-layer", "l2", "--data", "digits", "--on", "l1@1", "--kind", "dense",
                  "--width", "32", *QUICK]):
        out = cli(*backend.args(), *args)
        assert out.returncode == 0, out.stderr
    return backend


def run(backend, *args: str):
    return cli(*args, env=backend.env())


def json_of(backend, *args: str):
    out = run(backend, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_datasets_are_listed_and_shown(team):
    (listed,) = json_of(team, "data", "list")
    shown = json_of(team, "data", "show", "digits")
    assert listed["name"] == shown["name"] == "digits"
    assert shown["counts"] == {"train": 1295, "val": 143, "test": 359}
    assert len(shown["fingerprint"]) == 64 and shown["source"] == "sklearn:digits"
    again = run(team, "data", "add", "digits", "sklearn:digits")  # same content: no-op
    assert again.returncode == 0
    assert again.stdout.startswith("dataset digits: 1295 train / 143 val / 359 test, shape "
                                   "(1, 8, 8), 10 classes, fingerprint ")


def test_layers_list_show_alias(team):
    versions = json_of(team, "layers", "list")
    assert [v["ref"] for v in versions] == ["l1@1", "l2@1"]
    l2 = json_of(team, "layers", "show", "l2@1")
    assert l2["signature"]["chain"] == [versions[0]["digest"]]
    assert l2["metrics"]["test_accuracy"] > 0.8
    assert json_of(team, "layers", "show", "l1@1")["used_by"] == {"networks": [],
                                                                  "layers": ["l2@1"]}
    out = run(team, "layers", "alias", "l1@1", "prod")
    assert out.returncode == 0 and out.stdout.strip() == "l1@prod → l1@1"
    assert json_of(team, "layers", "show", "l1@prod")["aliases"] == {"prod": 1}


def test_train_a_network_through_the_store(team):
    report = json_of(team, "train", "net", "--data", "digits", "--arch", "dense:32,dense:32",
                     *QUICK)
    assert report["network"]["ref"] == "net@1"
    assert [v["ref"] for v in report["layers"]] == ["net.l1@1", "net.l2@1"]
    assert report["test"]["bp"] > 0.8 and report["baseline"]["test"] > 0.8
    (listed,) = json_of(team, "nets", "list")
    assert listed["layers"] == [["net.l1", 1], ["net.l2", 1]]
    shown = json_of(team, "nets", "show", "net")
    assert [v["ref"] for v in shown["layer_versions"]] == ["net.l1@1", "net.l2@1"]
    evaluated = json_of(team, "eval", "net@1", "--data", "digits")
    assert evaluated["per_layer"] == [v["metrics"]["test_accuracy"] for v in report["layers"]]
    table = run(team, "eval", "net@1")
    assert "FF mode" in table.stdout and "layer net.l2@1" in table.stdout
    assert run(team, "verify", "net@1", "--data", "digits").returncode == 0


@pytest.mark.parametrize("args,code,message", [
    (["data", "show", "nope"], 6,
     "error: no dataset 'nope'; see `mfstore data list` (or import it with "
     "`mfstore data add nope URL` (replace URL with where the data is now: a path, an "
     "fsspec URL or sklearn:DATASET))"),
    (["train-layer", "x", "--data", "nope", "--kind", "dense", "--width", "4"], 6,
     "error: no dataset 'nope'; see `mfstore data list` (or import it with "
     "`mfstore data add nope URL` (replace URL with where the data is now: a path, an "
     "fsspec URL or sklearn:DATASET))"),
    (["layers", "show", "l1@9"], 6,
     "error: layer 'l1' has no version 9; see `mfstore layers list`"),
    (["layers", "show", "ghost"], 6, "error: no layer named 'ghost'; see `mfstore layers list`"),
    (["eval", "net@staging"], 6,
     "error: network 'net' has no version or alias 'staging'; see `mfstore nets list`"),
    (["train-layer", "c", "--data", "digits", "--on", "l1@1", "--kind", "conv", "--width", "4"],
     2, "error: a conv layer needs (channels, height, width) input, got shape (32,); put conv "
        "layers before dense ones"),
    (["train-layer", "x", "--data", "digits", "--on", "l2@1", "--kind", "dense", "--width", "4"],
     2, "error: l2@1 takes input of shape (32,) but dataset 'digits' produces (1, 8, 8); give "
        "its whole upstream chain, input side first"),
    (["data", "add", "digits", "sklearn:wine"], 10,
     "error: dataset 'digits' already exists with other content"),
    (["layers", "alias", "l1@1", "a@b"], 2, "error: invalid alias name 'a@b'"),
    (["layers", "alias", "l1@1", "../../x"], 2, "error: invalid alias name '../../x'"),
    (["layers", "alias", "l1@1", "7"], 2, "error: alias '7' looks like a version number"),
])
def test_bad_requests_fail_cleanly_and_lose_nothing(team, args, code, message):
    before = json_of(team, "layers", "list"), json_of(team, "data", "list")
    out = run(team, *args, *QUICK[:2] if args[0] == "train-layer" else [])
    assert out.returncode == code, out.stderr
    assert out.stderr.strip().startswith(message)
    assert len(out.stderr.strip().splitlines()) == 1
    assert (json_of(team, "layers", "list"), json_of(team, "data", "list")) == before


def test_lineage_mismatch_is_refused_unless_forced(team):
    out = run(team, "train-layer", "l1", "--data", "digits", "--kind", "dense", "--width", "32",
              "--seed", "9", *QUICK)
    assert out.returncode == 0, out.stderr
    refused = run(team, "train-layer", "l3", "--data", "digits", "--on", "l1@2", "--on", "l2@1",
                  "--kind", "dense", "--width", "8", *QUICK)
    assert refused.returncode == 7
    assert refused.stderr.strip() == (
        "error: l2@1 was trained on the outputs of [l1@1] but here follows [l1@2] of dataset "
        "'digits'; retrain l2@1 with `mfstore train-layer l2 --data digits --on l1@2 --kind "
        "dense --width 32 --epochs 3 --batch-size 64 --lr 0.01 --device cpu` (or pass --force "
        "to use it anyway)")
    forced = json_of(team, "train-layer", "l3", "--data", "digits", "--on", "l1@2", "--on",
                     "l2@1", "--kind", "dense", "--width", "8", "--force", *QUICK)
    assert forced["note"] == "forced onto a foreign chain"


@pytest.mark.parametrize("command", [["layers", "list"], ["nets", "list"],
                                     ["nets", "show", "net"], ["layers", "show", "net.l1@1"],
                                     ["layers", "show", "net.l1@1", "--json"]])
def test_every_command_refuses_a_store_that_is_not_there(home, tmp_path, command):
    """Even a command that then reads only the registry: a mistyped store URL never looks
    like a store that lost its blocks (`"history": null`)."""
    missing = tmp_path / "nonexistent"
    for given in (["--store", str(missing)], []):  # on the command line, or exported
        out = cli("--home", str(home), *given, *command,
                  env={} if given else {"MFSTORE_STORE": str(missing)})
        assert out.returncode == 9, out.stdout
        again = " ".join(["mfstore", "--home", str(home), *given, "init"])
        assert out.stderr.strip() == (f"error: there is no mfstore store at '{missing}'; run "
                                      f"`{again}` first (or check --store / MFSTORE_STORE)")
        assert out.stdout == "" and not missing.exists()


def test_unreachable_store_and_registry(tmp_path):
    ok = cli("--home", str(tmp_path), "init")
    assert ok.returncode == 0, ok.stderr
    out = cli("--home", str(tmp_path), "--store", "nosuchproto://bucket/s", "data", "add",
              "d", "sklearn:iris")
    assert out.returncode == 9
    assert out.stderr.strip() == (
        "error: cannot reach store 'nosuchproto://bucket/s': Protocol not known: nosuchproto; "
        "check --store / MFSTORE_STORE")
    url = f"sqlite:///{tmp_path}/missing/dir/r.db"
    out = cli("--home", str(tmp_path), "--registry", url, "data", "list")
    assert out.returncode == 9
    assert out.stderr.strip() == (f"error: there is no mfstore registry at '{url}'; run "
                                  f"`mfstore --home {tmp_path} --registry {url} init` first (or "
                                  "check --registry / MFSTORE_REGISTRY)")


def test_environment_variables_choose_the_workspace(tmp_path):
    out = mfstore("init", env={"MFSTORE_HOME": str(tmp_path / "h")}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "h" / "registry.db").exists() and (tmp_path / "h" / "store").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]
