"""The layer store through the console entry point, as a user drives it."""

from __future__ import annotations

import pytest

from tests.cli_run import in_home, json_of, mfstore

QUICK = ["--epochs", "3", "--batch-size", "64", "--lr", "0.01", "--device", "cpu"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = in_home(home, "data", "add", "digits", "sklearn:digits")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dataset digits: 1295 train / 143 val / 359 test, shape (1, 8, 8)")
    for args in (["train-layer", "l1", "--data", "digits", "--kind", "dense", "--width", "32"],
                 ["train-layer", "l2", "--data", "digits", "--on", "l1@1", "--kind", "dense",
                  "--width", "32"]):
        out = in_home(home, *args, *QUICK)
        assert out.returncode == 0, out.stderr
    return home



def test_datasets_are_listed_and_shown(home):
    (listed,) = json_of(home, "data", "list")
    shown = json_of(home, "data", "show", "digits")
    assert listed["name"] == shown["name"] == "digits"
    assert shown["counts"] == {"train": 1295, "val": 143, "test": 359}
    assert len(shown["fingerprint"]) == 64 and shown["source"] == "sklearn:digits"
    again = in_home(home, "data", "add", "digits", "sklearn:digits")  # same content: no-op
    assert again.returncode == 0


def test_layers_list_show_alias(home):
    versions = json_of(home, "layers", "list")
    assert [v["ref"] for v in versions] == ["l1@1", "l2@1"]
    l2 = json_of(home, "layers", "show", "l2@1")
    assert l2["signature"]["chain"] == [versions[0]["digest"]]
    assert l2["metrics"]["test_accuracy"] > 0.8
    out = in_home(home, "layers", "alias", "l1@1", "prod")
    assert out.returncode == 0 and out.stdout.strip() == "l1@prod → l1@1"
    assert json_of(home, "layers", "show", "l1@prod")["aliases"] == {"prod": 1}


def test_train_a_network_through_the_store(home):
    report = json_of(home, "train", "net", "--data", "digits", "--arch", "dense:32,dense:32",
                     *QUICK)
    assert report["network"]["ref"] == "net@1"
    assert [v["ref"] for v in report["layers"]] == ["net.l1@1", "net.l2@1"]
    assert report["test"]["bp"] > 0.8 and report["baseline"]["test"] > 0.8
    (listed,) = json_of(home, "nets", "list")
    assert listed["layers"] == [["net.l1", 1], ["net.l2", 1]]
    shown = json_of(home, "nets", "show", "net")
    assert [v["ref"] for v in shown["layer_versions"]] == ["net.l1@1", "net.l2@1"]
    evaluated = json_of(home, "eval", "net@1", "--data", "digits")
    assert evaluated["per_layer"] == [v["metrics"]["test_accuracy"]
                                      for v in report["layers"]]
    table = in_home(home, "eval", "net@1")
    assert "FF mode" in table.stdout and "layer net.l2@1" in table.stdout


@pytest.mark.parametrize("args,code,message", [
    (["data", "show", "nope"], 6,
     "error: no dataset 'nope'; see `mfstore data list`, or import it with "
     "`mfstore data add nope URL`"),
    (["train-layer", "x", "--data", "nope", "--kind", "dense", "--width", "4"], 6,
     "error: no dataset 'nope'; see `mfstore data list`, or import it with "
     "`mfstore data add nope URL`"),
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
])
def test_bad_requests_fail_cleanly_and_lose_nothing(home, args, code, message):
    before = json_of(home, "layers", "list")
    out = in_home(home, *args, *QUICK[:2] if args[0] == "train-layer" else [])
    assert out.returncode == code, out.stderr
    assert out.stderr.strip().startswith(message)
    assert "Traceback" not in out.stderr
    assert json_of(home, "layers", "list") == before


def test_lineage_mismatch_is_refused_unless_forced(home):
    out = in_home(home, "train-layer", "l1", "--data", "digits", "--kind", "dense", "--width", "32",
              "--seed", "9", *QUICK)
    assert out.returncode == 0, out.stderr
    refused = in_home(home, "train-layer", "l3", "--data", "digits", "--on", "l1@2", "--on", "l2@1",
                  "--kind", "dense", "--width", "8", *QUICK)
    assert refused.returncode == 7
    assert refused.stderr.strip() == (
        "error: l2@1 was trained on the outputs of [l1@1] but here follows [l1@2] of dataset "
        "'digits'; retrain it with `mfstore train-layer l2 --data digits --on l1@2 --kind dense "
        "--width 32` (or pass --force to use it anyway)")
    forced = json_of(home, "train-layer", "l3", "--data", "digits", "--on", "l1@2", "--on",
                     "l2@1", "--kind", "dense", "--width", "8", "--force", *QUICK)
    assert forced["note"] == "forced onto a foreign chain"


def test_unreachable_store_and_registry(tmp_path):
    out = mfstore("--home", str(tmp_path), "--store", "nosuchproto://bucket/s", "data", "list")
    assert out.returncode == 9
    assert out.stderr.strip().startswith(
        "error: cannot reach store 'nosuchproto://bucket/s': Protocol not known: nosuchproto")
    url = f"sqlite:///{tmp_path}/missing/dir/r.db"
    out = mfstore("--home", str(tmp_path), "--registry", url, "data", "list")
    assert out.returncode == 9
    assert out.stderr.strip() == (f"error: cannot open registry '{url}': unable to open "
                                  "database file; check --registry / MFSTORE_REGISTRY")


def test_environment_variables_choose_the_workspace(tmp_path):
    out = mfstore("init", env={"MFSTORE_HOME": str(tmp_path / "h")}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "h" / "registry.db").exists() and (tmp_path / "h" / "store").is_dir()
