"""The command line through its entry point: in-process, except where the process itself is
what is tested (start-up, exit codes of a real process, aborts at exit)."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields

import pytest
from typer.main import get_command

from cli.flags import option_flag
from cli.main import app
from mfstore.config import DatasetOptions, TrainConfig
from mfstore.spec import LayerPlan
from tests.cli_run import QUICK, cli, in_home, mfstore


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """The command runs in an empty folder of the test's own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_json_reports_every_layer_ff_bp_and_baseline(cwd):
    tmp_path = cwd
    out = cli("train", "--data", "sklearn:digits", "--arch", "dense:64,dense:64",
              "--epochs", "8", "--batch-size", "64", "--seed", "1", "--device", "cpu", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert len(report["test"]["per_layer"]) == 2
    assert report["test"]["ff"] > 0.9 and report["test"]["bp"] > 0.9
    assert report["baseline"]["test"] > 0.9
    assert report["config"]["seed"] == 1 and report["schedule"] == "simultaneous"  # default
    assert len(report["fingerprint"]) == 64
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_train_with_every_baseline(cwd):
    out = cli("train", "--data", "sklearn:breast_cancer", "--arch", "dense:16,dense:16",
              "--epochs", "2", "--baseline", "ff,bp,dfa,fa")
    assert out.returncode == 0, out.stderr
    rows = [line.strip("│ ").split()[0] for line in out.stdout.splitlines() if "baseline" in line]
    assert rows == ["FF", "BP", "DFA", "FA"]  # in the order asked for
    out = cli("train", "--data", "sklearn:breast_cancer", "--arch", "dense:16",
              "--epochs", "1", "--baseline", "dfa", "--json")
    report = json.loads(out.stdout)
    assert [b["algorithm"] for b in report["baselines"]] == ["dfa"]
    assert report["baseline"]["algorithm"] == "dfa"


def test_train_table_and_progress(cwd):
    out = cli("train", "--data", "sklearn:breast_cancer", "--arch", "dense:32",
              "--epochs", "3", "--schedule", "simultaneous", "--baseline", "none")
    assert out.returncode == 0, out.stderr
    for row in ("MF layer 1", "MF FF mode", "MF BP mode"):
        assert row in out.stdout
    assert "BP baseline" not in out.stdout
    assert "MF layer 1" in out.stderr  # the progress bar


@pytest.mark.parametrize("args,code,message", [
    (["--data", "sklearn:digits", "--arch", "dense:x"], 2,
     "error: cannot read layer 'dense:x'; write KIND:WIDTH[:key=value…], e.g. dense:1000 or "
     "conv:64:pool=max"),
    (["--data", "missing.npz", "--arch", "dense:8"], 3,
     "error: cannot reach 'missing.npz': no such file or folder; check the path"),
    (["--data", "sklearn:digits", "--arch", "dense:8", "--schedule", "async"], 2,
     "error: unknown schedule 'async'; choose sequential or simultaneous"),
    (["--data", "sklearn:digits", "--arch", "dense:8", "--epochs", "0"], 2,
     "error: epochs must be at least 1, got 0"),
    (["--data", "sklearn:digits", "--arch", "dense:8", "--baseline", "bp,sgd"], 2,
     "error: unknown baseline 'sgd'; choose any of bp, fa, dfa, ff (comma-separated), or none"),
    (["--data", "sklearn:digits", "--arch", "embed:8"], 2,
     "error: an embed layer reads token ids: it must be the first layer, on token-id data "
     "(format 'tokens', or a Parquet list column)"),
    # a value that is not a device or a format is a bad option (2), not data or a device
    (["--data", "sklearn:digits", "--arch", "dense:8", "--device", "tpu"], 2,
     "error: unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    (["--data", "sklearn:digits", "--arch", "dense:8", "--format", "foo"], 2,
     "error: unknown format 'foo'; choose one of: idx, cifar, npz, csv, parquet, sklearn, "
     "tokens"),
    (["--data", "sklearn:digits", "--arch", "dense:8", "--max-examples", "-1"], 2,
     "error: max examples must lie in 1..1099511627776 (or be unset: all), got -1"),
    (["--data", "sklearn:digits", "--arch", "dense:8", "--layer-parallel"], 2,
     "error: layer-parallel training goes through the store: name the network to register "
     "(mfstore train NET --data DATASET …)"),
])
def test_train_errors_are_one_line_with_an_exit_code(cwd, args, code, message):
    out = cli("train", *args)
    assert out.returncode == code
    assert out.stderr.strip() == message
    assert "Traceback" not in out.stderr


def test_bad_data_file_exit_code(cwd):
    tmp_path = cwd
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    out = cli("train", "--data", str(tmp_path / "x.csv"), "--arch", "dense:8")
    assert out.returncode == 4
    assert out.stderr.strip() == (f"error: {tmp_path}/x.csv: no label column 'label'; columns "
                                  "are ['a', 'b']; pass --label-column naming the label column")


def test_max_examples_reads_the_first_examples_of_each_split_and_is_fingerprinted(cwd):
    whole = json.loads(cli("train", "--data", "sklearn:digits", "--arch", "dense:8",
                           "--epochs", "1", "--baseline", "none", "--json").stdout)
    cut = cli("train", "--data", "sklearn:digits", "--arch", "dense:8", "--epochs", "1",
              "--baseline", "none", "--json", env={"MFSTORE_MAX_EXAMPLES": "300"})
    assert cut.returncode == 0, cut.stderr
    assert json.loads(cut.stdout)["fingerprint"] != whole["fingerprint"]
    from mfstore import DatasetOptions, load_dataset

    data = load_dataset("sklearn:digits", DatasetOptions(max_examples=300))
    assert len(data.train) + len(data.val) + len(data.test) == 300
    assert data.fingerprint == json.loads(cut.stdout)["fingerprint"]


def test_cuda_without_a_gpu_is_refused(cwd):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = cli("train", "--data", "sklearn:digits", "--arch", "dense:8", "--device", "cuda")
    assert out.returncode == 5
    assert out.stderr.strip() == (
        "error: CUDA was requested but no CUDA device is available; pass --device cpu")


def commands() -> list[tuple[list[str], object]]:
    """Every command as (its words, its click command)."""
    from typer.main import get_command

    from cli.main import app

    def walk(group, prefix):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, [*prefix, name])
            else:
                yield [*prefix, name], command

    return list(walk(get_command(app), []))


def help_of(path: list[str]) -> str:
    from typer.testing import CliRunner

    from cli.main import app

    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, path
    return out.output


def test_every_command_has_help_with_an_example():
    paths = [path for path, _ in commands()]
    assert len(paths) >= 12
    for path in paths:
        assert "Example:" in help_of(path), path


def test_bracketed_words_survive_rich_help():
    """Rich reads `mfstore[mlflow]` as markup and drops `[mlflow]` unless it is escaped."""
    seen = 0
    for path, command in commands():
        texts = [p.help or "" for p in command.params] + [command.help or ""]
        words = {w.replace("\\[", "[") for t in texts
                 for w in re.findall(r"[\w.\-]*\\?\[[\w,.\-]+\]", t)}
        shown = help_of(path)
        for word in words:
            seen += 1
            assert word in shown, (path, word)
    assert seen >= 6  # --mlflow on five commands, --png


def test_demo_runs(cwd):
    tmp_path = cwd
    out = cli("demo", "--epochs", "5")
    assert out.returncode == 0, out.stderr
    for step in ("1. import", "2. train", "3. evaluate", "registered network digits-mlp@1",
                 "layer digits-mlp.l2@1", "FF mode", "BP baseline", "4. export",
                 "5. predict through ONNX Runtime"):
        assert step in out.stdout
    home = tmp_path / ".mfstore"
    assert (home / "registry.db").exists() and (home / "exports" / "digits-mlp.onnx").exists()
    assert (home / "triton" / "digits-mlp" / "config.pbtxt").exists()


@pytest.mark.slow
def test_reading_parquet_never_aborts_at_exit(tmp_path):
    """Arrow threads calling back into Python during shutdown aborted ~half of such runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3, 4]}), tmp_path / "t.parquet")
    codes = [mfstore("train", "--data", str(tmp_path / "t.parquet"), "--arch", "dense:4",
                     cwd=tmp_path).returncode for _ in range(8)]
    assert codes == [4] * 8  # the named error (no label column), never SIGABRT


def test_import_options_unlike_a_registered_datasets_are_refused_not_ignored(home):
    """A registered dataset keeps the options it was imported with: others given on the
    command line are refused (the same ones are fine; the environment's apply to sources)."""
    before = in_home(home, "layers", "list", "--json").stdout
    for args in (["train", "n2", "--data", "digits", "--arch", "dense:8"],
                 ["train", "--data", "digits", "--arch", "dense:8", "--baseline", "none"]):
        out = in_home(home, *args, "--val-fraction", "0.5", "--max-examples", "9", *QUICK)
        assert out.returncode == 2
        assert out.stderr.strip() == (
            "error: --val-fraction, --max-examples differ from what dataset 'digits' was "
            "imported with; import the source again under another name to read it so "
            "(mfstore data add)")
    assert in_home(home, "layers", "list", "--json").stdout == before
    same = in_home(home, "train", "--data", "digits", "--arch", "dense:8", "--baseline", "none",
                   "--val-fraction", "0.1", *QUICK)
    assert same.returncode == 0, same.stderr
    exported = cli("train", "--data", "digits", "--arch", "dense:8", "--baseline", "none",
                   *QUICK, env={"MFSTORE_HOME": str(home), "MFSTORE_MAX_EXAMPLES": "9"})
    assert exported.returncode == 0, exported.stderr


@pytest.mark.parametrize(("command", "kinds"), [
    ("train", ["train", "import"]), ("train-layer", ["train", "layer"]),
    ("extend", ["train", "layer"]), ("data add", ["import"])])
def test_commands_take_every_setting_of_their_dataclasses_with_its_default(command, kinds):
    """The options are declared in each command; they stay the dataclasses' fields: every
    field with a help is an option of the command, with the field's default (`none_is`
    for a field whose None means 'not set', e.g. --patience 0)."""
    group = get_command(app)
    found = group
    for word in command.split():
        found = found.commands[word]  # type: ignore[attr-defined]
    options = {opt: p for p in found.params for opt in p.opts}
    classes = {"train": TrainConfig, "layer": LayerPlan, "import": DatasetOptions}
    for kind in kinds:
        for f in fields(classes[kind]):
            if "help" not in f.metadata or (command == "train" and f.name == "seed"
                                            and kind == "import"):
                continue
            param = options[option_flag(f)]
            default = f.metadata.get("none_is") if f.default is None and "none_is" in \
                f.metadata else (None if f.default is MISSING else f.default)
            assert param.default == default or (param.required and f.default is MISSING), (
                command, f.name, param.default, default)
