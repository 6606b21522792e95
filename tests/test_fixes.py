"""Every fix the command line suggests is a command that runs and does what it says: each test
provokes the real error, takes the suggested command from the one-line message (the text
between backticks), runs it as a user would, and checks that what was wrong is mended.

A retrain carries the whole recipe (spec and recorded training configuration): a lost layer
comes back bit for bit from the command alone."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cli.fixes import render_fix
from mfstore.config import TrainConfig, TrainingRun
from mfstore.errors import LineageError
from mfstore.lineage import retrain_fix
from mfstore.registry import LayerVersion
from mfstore.registry.schema import HEAD
from mfstore.run_context import RunContext
from mfstore.store_training import train_registered_layer
from mfstore.usage import first_by_digest
from mfstore.workspace import Workspace, block_path
from tests.cli_run import QUICK, cli, in_home, json_of
from tests.formats import digits_as_tokens
from tests.test_schema import ROUND1

QUICK_TEXT = " ".join(QUICK)  # as a suggested command repeats it (options in field order)
ONE_EPOCH = ["--kind", "dense", "--width", "8", "--epochs", "1"]


def suggested(message: str) -> list[list[str]]:
    """The commands a one-line message suggests, as words."""
    return [shlex.split(text) for text in message.split("`")[1::2]]


def run_suggested(home: Path, words: list[str], *more: str):
    """A suggested `mfstore …` command, run where the failed one was."""
    assert words[0] == "mfstore", words
    return in_home(home, *words[1:], *more)


def listed(home: Path) -> tuple[object, ...]:
    return tuple(json_of(home, what, "list") for what in ("data", "layers", "nets"))


def train(home: Path, name: str, *args: str) -> None:
    out = in_home(home, "train-layer", name, *args)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    ids, y = digits_as_tokens()
    path = tmp_path_factory.mktemp("tokens") / "words.npz"
    np.savez(path, x=ids, y=y)
    return path


# A retrain that carries the whole recipe --------------------------------------------------

def replaced_by_other_weights(ws: Workspace, layer: LayerVersion) -> None:
    """What a repair on other hardware leaves behind: a newer version that repairs `layer`
    with other weights (here: another seed), and `layer`'s own block lost."""
    producers = first_by_digest(ws.registry.layers())
    config = TrainConfig.from_dict({**layer.config, "seed": layer.config["seed"] + 1})
    other = train_registered_layer(
        ws, layer.name, ws.registry.dataset(layer.dataset),
        [producers[d] for d in layer.signature.chain], layer.spec, config,
        RunContext.alone("cpu"),
        repairs=layer.version, note=f"repairs {layer.ref} with other weights")
    assert other.digest != layer.digest
    ws.store.delete(block_path(layer.block_sha256))


def recovered_from_the_suggestion(home: Path, lost_ref: str, above_ref: str,
                                  command: str) -> None:
    """Lose `lost_ref` for good and damage `above_ref` (trained over it): `repair --auto`
    cannot mend `above_ref` and says to retrain `lost_ref` with `command`, then repair again;
    doing so gives `lost_ref`'s digest back bit for bit, and then `above_ref`'s."""
    ws = Workspace.open(home=str(home))
    lost, above = (ws.registry.layer(*ref.split("@")) for ref in (lost_ref, above_ref))
    replaced_by_other_weights(ws, lost)
    ws.store.delete(block_path(above.block_sha256))
    before = [v["ref"] for v in json_of(home, "layers", "list")]
    holding = [(n["ref"], n["layers"].index([above.name, above.version]) + 1)
               for n in json_of(home, "nets", "list")
               if [above.name, above.version] in n["layers"]]  # networks it leaves broken
    out = in_home(home, "repair", "--auto")
    assert out.returncode == 8
    assert out.stderr.strip().splitlines() == [
        f"not repaired: {above_ref}: no intact version of {lost_ref}, which it was trained "
        "over, is left (that layer was retrained with other weights, or lost); retrain "
        f"{lost_ref} with `{command}`, then run `mfstore repair --auto`",
        *[f"not repaired: {net}: its layer {k} {above_ref} was not repaired (said above)"
          for net, k in holding]]
    assert [v["ref"] for v in json_of(home, "layers", "list")] == before  # nothing registered
    retrain, repair = suggested(out.stderr)
    again = json_of(home, *retrain[1:])
    assert again["digest"] == lost.digest  # bit for bit
    original = json_of(home, "layers", "show", lost_ref)
    assert (again["spec"], again["config"]) == (original["spec"], original["config"])
    repaired = json_of(home, *repair[1:])
    assert [(r["old"], r["identical"]) for r in repaired["repaired"]] == [(above_ref, True)]
    assert repaired["left"] == {}
    assert in_home(home, "verify").returncode == 0


RECIPES = [  # (dataset, the layer below or None, the layer, its options as suggested)
    pytest.param("digits", ["--kind", "dense", "--width", "16"],
                 ["--kind", "dense", "--width", "12", "--act", "tanh", "--no-bias"],
                 f"--kind dense --width 12 --act tanh --no-bias {QUICK_TEXT}",
                 id="dense-tanh-no-bias"),
    pytest.param("digits", ["--kind", "conv", "--width", "4"],
                 ["--kind", "conv", "--width", "4", "--pool", "max"],
                 f"--kind conv --width 4 --pool max {QUICK_TEXT}", id="conv-max-pool"),
    pytest.param("digits", ["--kind", "conv", "--width", "4"],
                 ["--kind", "local", "--width", "3", "--kernel", "2", "--stride", "2", "--pool",
                  "avg"],
                 f"--kind local --width 3 --pool avg --kernel 2 --stride 2 {QUICK_TEXT}",
                 id="local-kernel-stride-pool"),
    pytest.param("digits", None, ["--kind", "local", "--width", "3", "--kernel", "3"],
                 f"--kind local --width 3 {QUICK_TEXT}", id="local-default-kernel"),
    pytest.param("words", None,
                 ["--kind", "embed", "--width", "8", "--act", "gelu", "--vocab", "1500"],
                 f"--kind embed --width 8 --act gelu --vocab 1500 {QUICK_TEXT}",
                 id="embed-vocab"),
    pytest.param("digits", ["--kind", "dense", "--width", "16"],
                 ["--kind", "dense", "--width", "12", "--optimizer", "adam", "--lr-schedule",
                  "constant", "--weight-decay", "0.001", "--patience", "1", "--monitor",
                  "val_loss", "--seed", "11", "--batch-size", "48", "--epochs", "2", "--lr",
                  "0.003", "--deterministic"],
                 "--kind dense --width 12 --epochs 2 --batch-size 48 --lr 0.003 --weight-decay "
                 "0.001 --optimizer adam --lr-schedule constant --patience 1 --monitor val_loss "
                 "--seed 11 --deterministic --device cpu", id="training-settings"),
]


@pytest.mark.parametrize(("data", "below", "layer", "options"), RECIPES)
@pytest.mark.slow
def test_a_lost_layer_comes_back_bit_for_bit_from_the_suggested_command(
        home, token_file, data, below, layer, options):
    if data == "words":
        out = in_home(home, "data", "add", "words", str(token_file), "--format", "tokens")
        assert out.returncode == 0, out.stderr
    on = []
    if below is not None:
        train(home, "t0", "--data", data, *below, *QUICK, "--epochs", "1")
        on = ["--on", "t0@1"]
    train(home, "t1", "--data", data, *on, *QUICK, *layer)
    train(home, "t2", "--data", data, *on, "--on", "t1@1", *ONE_EPOCH, "--device", "cpu")
    chain = " --on t0@1" if on else ""
    recovered_from_the_suggestion(
        home, "t1@1", "t2@1", f"mfstore train-layer t1 --data {data}{chain} {options}")


def test_a_lost_layer_of_a_trained_network_comes_back_bit_for_bit(home):
    recovered_from_the_suggestion(
        home, "net.l1@1", "net.l2@1",
        f"mfstore train-layer net.l1 --data digits --kind dense --width 32 {QUICK_TEXT}")


def test_what_no_option_sets_is_named_rather_than_dropped(home):
    ws = Workspace.open(home=str(home))
    layer = ws.registry.layer("net.l1", "1")
    config = TrainConfig.from_dict({**layer.config, "betas": [0.8, 0.99], "min_delta": 0.001})
    train_registered_layer(ws, "odd", ws.registry.dataset("digits"), [], layer.spec, config,
                           RunContext.alone("cpu"))
    train(home, "above", "--data", "digits", "--on", "odd@1", *ONE_EPOCH, "--device", "cpu")
    replaced_by_other_weights(ws, ws.registry.layer("odd", "1"))
    ws.store.delete(block_path(ws.registry.layer("above", "1").block_sha256))
    out = in_home(home, "repair", "--auto")
    assert out.returncode == 8
    assert out.stderr.strip() == (
        "not repaired: above@1: no intact version of odd@1, which it was trained over, is left "
        "(that layer was retrained with other weights, or lost); retrain odd@1 with `mfstore "
        f"train-layer odd --data digits --kind dense --width 32 {QUICK_TEXT}` (betas (0.8, "
        "0.99) and min_delta 0.001 cannot be set on the command line: retrain it through the "
        "Python API), then run `mfstore repair --auto`")


# Each kind of fix, run ----------------------------------------------------------------------

def test_train_layer_the_retrain_a_lineage_mismatch_suggests_fits_the_chain(home):
    from mfstore.compose import compose

    train(home, "other", "--data", "digits", "--kind", "dense", "--width", "32", "--seed", "5",
          *QUICK)
    before = listed(home)
    refused = in_home(home, "compose", "mix", "other@1", "net.l2@1")
    assert refused.returncode == 7
    assert refused.stderr.strip() == (
        "error: net.l2@1 was trained on the outputs of [net.l1@1] but here follows [other@1] "
        "of dataset 'digits'; retrain net.l2@1 with `mfstore train-layer net.l2 --data digits "
        f"--on other@1 --kind dense --width 32 {QUICK_TEXT}` (or pass --force to compose it "
        "anyway)")
    assert listed(home) == before
    with pytest.raises(LineageError) as err:  # the same fix, in words for a Python caller
        compose(Workspace.open(home=str(home)), "mix", ["other@1", "net.l2@1"])
    assert str(err.value).endswith(
        "; retrain net.l2@1 on other@1 of dataset 'digits' as LayerPlan(kind='dense', width=32) "
        "with its recorded TrainConfig (or set 'force' to compose it anyway)")
    (retrain,) = suggested(refused.stderr)
    again = json_of(home, *retrain[1:])
    original = json_of(home, "layers", "show", "net.l2@1")
    assert again["ref"] == "net.l2@2"
    assert (again["spec"], again["config"]) == (original["spec"], original["config"])
    composed = json_of(home, "compose", "mix", "other@1", "net.l2@2")
    assert not composed["forced"]


def test_a_lost_layer_trained_beside_others_is_retrained_with_the_layer_above_it(home):
    """The simultaneous schedule trains every layer of a network on each batch: the lost
    layer's recipe, retrained alone, may give other weights, so the fix says so and goes on
    to retrain the layer above over the new version, rather than send `repair --auto` round
    the same error again."""
    out = in_home(home, "train", "sim", "--data", "digits", "--arch", "dense:32,dense:32",
                  "--schedule", "simultaneous", "--baseline", "none", *QUICK, "--seed", "7")
    assert out.returncode == 0, out.stderr
    ws = Workspace.open(home=str(home))
    assert ws.registry.layer("sim.l2", "1").run == TrainingRun("simultaneous", 1, "cpu")
    replaced_by_other_weights(ws, ws.registry.layer("sim.l1", "1"))  # registers sim.l1@2
    ws.store.delete(block_path(ws.registry.layer("sim.l2", "1").block_sha256))
    before = [v["ref"] for v in json_of(home, "layers", "list")]
    out = in_home(home, "repair", "--auto")
    assert out.returncode == 8
    beside = ("(it was trained beside the other layers of its network (simultaneous schedule): "
              "its weights may differ)")
    recipe = "--kind dense --width 32 --epochs 3 --batch-size 64 --lr 0.01 --seed 7 --device cpu"
    assert out.stderr.strip().splitlines() == [
        "not repaired: sim.l2@1: no intact version of sim.l1@1, which it was trained over, is "
        "left (that layer was retrained with other weights, or lost); retrain sim.l1@1 with "
        f"`mfstore train-layer sim.l1 --data digits {recipe}` {beside}, then "
        f"retrain sim.l2@1 with `mfstore train-layer sim.l2 --data digits --on "
        f"sim.l1@3 {recipe}` {beside}",
        "not repaired: sim@1: its layer 2 sim.l2@1 was not repaired (said above)"]
    assert [v["ref"] for v in json_of(home, "layers", "list")] == before  # nothing registered
    retrain, then = suggested(out.stderr)
    assert run_suggested(home, retrain).returncode == 0
    again = json_of(home, *then[1:])
    assert again["ref"] == "sim.l2@2"
    assert again["signature"]["chain"] == [ws.registry.layer("sim.l1", "3").digest]


def test_a_data_parallel_layer_is_retrained_with_as_many_processes(home):
    """The same seed and number of processes give the same block: the retrain says both."""
    ws = Workspace.open(home=str(home))
    layer = replace(ws.registry.layer("net.l1", "1"), run=TrainingRun("sequential", 4, "cpu"))
    fix = retrain_fix(layer, ws.registry.dataset("digits"), [])
    assert render_fix(fix) == (
        "retrain net.l1@1 with `torchrun --nproc-per-node 4 --no-python mfstore train-layer "
        f"net.l1 --data digits --kind dense --width 32 {QUICK_TEXT}`")
    on_gpu = replace(layer, run=TrainingRun("sequential", 1, "cuda"),
                     config={**layer.config, "device": "auto"})
    assert render_fix(retrain_fix(on_gpu, ws.registry.dataset("digits"), [])) == (
        "retrain net.l1@1 with `mfstore train-layer net.l1 --data digits --kind dense --width "
        f"32 {QUICK_TEXT.replace('--device cpu', '--device cuda')}` (it was trained on CUDA, "
        "whose kernels are not deterministic: its weights may differ)")


def test_a_suggested_command_keeps_the_global_options_it_was_run_with(home):
    """`--home` (and --registry, --store) given on the command line are given again, with a
    password masked; those from the environment are inherited anyway."""
    train(home, "other", "--data", "digits", "--kind", "dense", "--width", "32", "--seed", "5",
          *QUICK)
    out = cli("--home", str(home), "compose", "mix", "other@1", "net.l2@1")
    assert out.returncode == 7
    assert f"`mfstore --home {home} train-layer net.l2 --data digits --on other@1 " in out.stderr
    out = cli("compose", "mix", "other@1", "net.l2@1", env={"MFSTORE_HOME": str(home)})
    assert "`mfstore train-layer net.l2 --data digits --on other@1 " in out.stderr
    out = cli("--home", str(home), "--registry", "postgresql://mf:s3cr3t@127.0.0.1:1/x",
              "layers", "list")
    assert out.returncode == 9 and "s3cr3t" not in out.stderr


def test_init_the_suggested_init_makes_a_workspace(tmp_path):
    out = in_home(tmp_path, "data", "list")
    assert out.returncode == 9
    assert out.stderr.strip() == (
        f"error: there is no mfstore registry at 'sqlite:///{tmp_path}/registry.db'; run "
        "`mfstore init` first (or check --registry / MFSTORE_REGISTRY)")
    assert not (tmp_path / "registry.db").exists()
    (init,) = suggested(out.stderr)
    assert run_suggested(tmp_path, init).returncode == 0
    assert json_of(tmp_path, "data", "list") == []


def test_upgrade_the_suggested_init_upgrades_an_old_registry_and_keeps_its_rows(tmp_path):
    from sqlalchemy import create_engine, text

    with create_engine(f"sqlite:///{tmp_path}/registry.db").begin() as conn:
        for statement in ROUND1.format(version="1").split(";\n"):
            conn.execute(text(statement))
    out = in_home(tmp_path, "layers", "list")
    assert out.returncode == 9
    assert out.stderr.strip() == (
        f"error: registry 'sqlite:///{tmp_path}/registry.db' has schema 1, older than this "
        f"mfstore's {HEAD}: upgrade it once, on purpose (machines still on the older mfstore "
        "cannot open it afterwards); upgrade it with `mfstore init`")
    (upgrade,) = suggested(out.stderr)
    assert run_suggested(tmp_path, upgrade).returncode == 0
    assert [v["ref"] for v in json_of(tmp_path, "layers", "list")] == ["l@1"]


def test_list_the_suggested_listing_names_what_there_is(home):
    out = in_home(home, "layers", "show", "ghost")
    assert out.returncode == 6
    assert out.stderr.strip() == "error: no layer named 'ghost'; see `mfstore layers list`"
    (listing,) = suggested(out.stderr)
    names = [v["name"] for v in json_of(home, *listing[1:])]
    assert names == ["net.l1", "net.l2"]
    assert in_home(home, "layers", "show", names[0]).returncode == 0


def test_verify_and_repair_the_suggested_verify_finds_the_damage_and_its_repair_mends_it(home):
    layer2 = json_of(home, "layers", "show", "net.l2@1")
    path = home / "store" / block_path(layer2["block_sha256"])
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01
    path.write_bytes(bytes(data))
    before = listed(home)
    refused = in_home(home, "eval", "net@1")
    assert refused.returncode == 8
    assert refused.stderr.strip().endswith("; run `mfstore verify`")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert json_of(home, "nets", "list") == before[2]
    (verify,) = suggested(refused.stderr)
    found = run_suggested(home, verify)
    assert found.returncode == 8
    line, network_line = [x for x in found.stdout.splitlines() if "repair: " in x]
    assert line.strip() == "repair: run `mfstore repair net@1 --layer 2`"  # the layer's
    assert network_line.strip() == "repair: run `mfstore repair net@1 --auto`"  # net@1's
    (repair,) = suggested(line)
    mended = json_of(home, *repair[1:])
    assert mended["repaired"] == [{"old": "net.l2@1", "new": "net.l2@2", "identical": True}]
    assert run_suggested(home, verify).returncode == 0
    assert in_home(home, "eval", mended["network"]["ref"]).returncode == 0


def test_import_a_dataset_whose_source_moved_is_read_again_from_where_it_is(home, tmp_path):
    source, moved = tmp_path / "d.npz", tmp_path / "moved.npz"
    np.savez(source, x=np.arange(400.0).reshape(200, 2), y=np.arange(200) % 2)
    out = in_home(home, "data", "add", "d", str(source), "--val-fraction", "0.2",
                  "--split-seed", "3", "--format", "npz")
    assert out.returncode == 0, out.stderr
    sid = Workspace.open(home=str(home)).registry.dataset("d").stream_id
    source.rename(moved)
    (home / "store" / "streams" / sid / "manifest.json").unlink()
    before = listed(home)
    out = in_home(home, "repair", "--auto")
    assert out.returncode == 8
    assert out.stderr.strip() == (
        f"not repaired: stream {sid[:12]}: the examples of dataset 'd' cannot be read again "
        f"from its recorded source '{source}' (cannot reach '{source}': no such file or "
        "folder; check the path); import it with `mfstore data add d URL --val-fraction 0.2 "
        "--split-seed 3 --format npz` (replace URL with where the data is now: a path, an "
        "fsspec URL or sklearn:DATASET)")
    assert listed(home) == before
    (again,) = suggested(out.stderr)
    assert run_suggested(home, [str(moved) if w == "URL" else w for w in again]).returncode == 0
    assert listed(home) == before  # the same dataset, whole again
    assert in_home(home, "verify").returncode == 0


def test_import_an_unknown_name_is_imported_with_the_options_given(home, tmp_path):
    np.savez(tmp_path / "e.npz", x=np.arange(400.0).reshape(200, 2), y=np.arange(200) % 2)
    out = in_home(home, "train", "--data", "e", "--arch", "dense:4", "--val-fraction", "0.3",
                  "--baseline", "none", *QUICK)
    assert out.returncode == 3
    assert out.stderr.strip() == (
        "error: there is no registered dataset and no file named 'e'; see `mfstore data list` "
        "(or import it with `mfstore data add e URL --val-fraction 0.3` (replace URL with "
        "where the data is now: a path, an fsspec URL or sklearn:DATASET))")
    _, add = suggested(out.stderr)
    path = str(tmp_path / "e.npz")
    assert run_suggested(home, [path if w == "URL" else w for w in add]).returncode == 0
    assert json_of(home, "data", "show", "e")["options"]["val_fraction"] == 0.3
    again = in_home(home, "train", "--data", "e", "--arch", "dense:4", "--val-fraction", "0.3",
                    "--baseline", "none", *QUICK)
    assert again.returncode == 0, again.stderr


def test_delete_the_suggested_deletions_let_the_refused_one_go(home):
    train(home, "t3", "--data", "digits", "--on", "net.l1@1", "--on", "net.l2@1", *ONE_EPOCH,
          "--device", "cpu")
    assert in_home(home, "nets", "delete", "net@1").returncode == 0
    before = listed(home)
    refused = in_home(home, "layers", "delete", "net.l1@1")
    assert refused.returncode == 10
    assert listed(home) == before
    for words in suggested(refused.stderr):
        out = run_suggested(home, words)
        assert out.returncode == 0, out.stderr
    assert in_home(home, "layers", "delete", "net.l1@1").returncode == 0


def test_launch_the_suggested_torchrun_runs_the_same_command_one_process_per_layer(home):
    args = ["--home", str(home), "train", "x", "--data", "digits", "--arch",
            "dense:8,dense:8,dense:8", "--schedule", "simultaneous", "--layer-parallel",
            "--baseline", "none", *QUICK]
    before = listed(home)
    out = cli(*args)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: layer-parallel training needs one process per layer; start it with `torchrun "
        "--nproc-per-node 3 --no-python mfstore " + " ".join(args) + "`")
    assert listed(home) == before
    assert suggested(out.stderr) == [["torchrun", "--nproc-per-node", "3", "--no-python",
                                      "mfstore", *args]]


def test_every_kind_of_fix_travels_as_plain_data_and_comes_back_equal():
    """`serve --workers` carries errors between processes as JSON: each kind of fix, with a
    fix nested in it, comes back equal."""
    import json

    from mfstore import fixes as f

    examples = [f.InitFix(), f.UpgradeFix(), f.OptionFix("lr", "(a tenth)", 0.001),
                f.SettingFix("store"), f.ListFix("layers"), f.VerifyFix("net@1"),
                f.RepairFix("net@1", 2), f.RepairFix(auto=True),
                f.ImportFix("d", None, {"val_fraction": 0.2}), f.DeleteFix(("n@1",), ("l@2",)),
                f.LaunchFix(3), f.AliasFix("net@2", "prod"),
                f.RetrainFix("l@1", "l", "digits", ("a@1",), {"kind": "dense", "width": 8},
                             {"seed": 3}, 2, "why", f.RepairFix(auto=True))]
    assert {type(x) for x in examples} == set(f.Fix.kinds.values())
    for fix in examples:
        assert f.Fix.from_dict(json.loads(json.dumps(fix.to_dict()))) == fix
        assert render_fix(fix) and fix.describe()
