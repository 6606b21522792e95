"""`--mlflow`: one MLflow run per layer version (and one for an export), logged to a real local
MLflow tracking store (SQLite under tmp) and read back through MLflow's own client."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from mfstore.block import load_block
from mfstore.workspace import Workspace, block_path
from tests.cli_run import QUICK, in_home

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A local MLflow tracking store (its tables are made once: ~15 s)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri).search_experiments()
    return {"uri": uri, "folder": folder}


@pytest.fixture
def experiment(tracking, monkeypatch):
    """An experiment of the test's own, its artifacts under tmp (never ./mlruns)."""
    from mlflow.tracking import MlflowClient

    name = f"t-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking["uri"])
    experiment_id = client.create_experiment(
        name, artifact_location=str(tracking["folder"] / name))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return client, experiment_id


def runs(client, experiment_id) -> dict[str, object]:
    return {r.info.run_name: r for r in client.search_runs([experiment_id])}


def layer(home, ref: str):
    ws = Workspace.open(str(home))
    name, version = ref.split("@")
    found = ws.registry.layer(name, version)
    return ws, found, load_block(ws, found)


def test_train_layer_logs_its_run_with_history_lineage_and_block(home, tracking, experiment,
                                                                 tmp_path):
    client, experiment_id = experiment
    out = in_home(home, "train-layer", "extra", "--data", "digits", "--on", "net.l1@1",
                  "--kind", "dense", "--width", "8", *QUICK, "--mlflow", tracking["uri"])
    assert out.returncode == 0, out.stderr
    ws, version, block = layer(home, "extra@1")
    (run,) = runs(client, experiment_id).values()
    assert run.info.run_name == "extra@1" and run.info.status == "FINISHED"
    assert out.stderr.strip().endswith(f"extra@1 ({run.info.run_id})")
    params = run.data.params
    assert (params["spec.kind"], params["spec.width"], params["spec.in_shape"]) == (
        "dense", "8", "[32]")
    assert (params["config.epochs"], params["config.seed"], params["config.lr"]) == (
        "3", "0", "0.01")
    epochs = block.history["epochs"]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in logged] == [(e["epoch"], e[key]) for e in epochs]
    assert run.data.metrics["test_accuracy"] == version.metrics["test_accuracy"]
    assert run.data.metrics["kept_val_accuracy"] == version.metrics["val_accuracy"]
    assert run.data.metrics["best_epoch"] == block.history["best_epoch"]
    tags = run.data.tags
    l1 = ws.registry.layer("net.l1", "1")
    assert tags["mfstore.digest"] == version.digest
    assert tags["mfstore.block_sha256"] == version.block_sha256
    assert json.loads(tags["mfstore.lineage"]) == ["net.l1@1"]
    assert json.loads(tags["mfstore.lineage_digests"]) == [l1.digest]
    assert tags["mfstore.dataset_fingerprint"] == ws.registry.dataset("digits").fingerprint
    local = client.download_artifacts(run.info.run_id, "block/extra-v1.safetensors",
                                      str(tmp_path))
    assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == version.block_sha256


def test_bare_mlflow_uses_the_environment_and_logs_every_layer(home, tracking, experiment,
                                                               monkeypatch):
    client, experiment_id = experiment
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking["uri"])
    out = in_home(home, "train", "deep", "--data", "digits", "--arch", "dense:8,dense:8",
                  "--baseline", "none", *QUICK, "--mlflow")
    assert out.returncode == 0, out.stderr
    assert f"logged 2 MLflow runs to {tracking['uri']}: deep.l1@1 (" in out.stderr
    logged = runs(client, experiment_id)
    assert sorted(logged) == ["deep.l1@1", "deep.l2@1"]
    _, l1, _ = layer(home, "deep.l1@1")
    assert json.loads(logged["deep.l2@1"].data.tags["mfstore.lineage"]) == ["deep.l1@1"]
    assert json.loads(logged["deep.l2@1"].data.tags["mfstore.lineage_digests"]) == [l1.digest]


def test_extend_and_repair_log_the_versions_they_register(home, tracking, experiment):
    client, experiment_id = experiment
    out = in_home(home, "extend", "net@1", "--kind", "dense", "--width", "8", *QUICK,
                  "--mlflow", tracking["uri"])
    assert out.returncode == 0, out.stderr
    ws, damaged, _ = layer(home, "net.l2@1")
    path = Path(ws.where.store) / block_path(damaged.block_sha256)
    path.write_bytes(path.read_bytes()[:-7])
    out = in_home(home, "repair", "net@1", "--layer", "2", "--mlflow", tracking["uri"])
    assert out.returncode == 0, out.stderr
    logged = runs(client, experiment_id)
    assert sorted(logged) == ["net.l2@2", "net.l3@1"]
    assert logged["net.l2@2"].data.tags["mfstore.repairs"] == "net.l2@1"
    assert logged["net.l2@2"].data.tags["mfstore.digest"] == damaged.digest  # bit-identical


def test_export_logs_the_onnx_model(home, tracking, experiment, tmp_path, monkeypatch):
    client, experiment_id = experiment
    out = in_home(home, "export", "net@1", "--out", str(tmp_path / "net.onnx"), "--mlflow",
                  tracking["uri"])
    assert out.returncode == 0, out.stderr
    (run,) = runs(client, experiment_id).values()
    assert run.info.run_name == "export net@1 (bp)" and run.info.status == "FINISHED"
    exported = (tmp_path / "net.onnx").read_bytes()
    assert run.data.tags["mfstore.onnx_sha256"] == hashlib.sha256(exported).hexdigest()
    local = client.download_artifacts(run.info.run_id, "model/model.onnx", str(tmp_path))
    assert Path(local).read_bytes() == exported
    import mlflow.onnx

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking["uri"])
    model = mlflow.onnx.load_model(f"runs:/{run.info.run_id}/model")  # the flavour loads it
    assert model.SerializeToString() == exported


def _registered(home) -> tuple[list[str], list[str], list[str]]:
    ws = Workspace.open(str(home))
    return ([v.ref for v in ws.registry.layers()], [n.ref for n in ws.registry.networks()],
            sorted(p.name for p in (Path(ws.where.store) / "blocks").rglob("*") if p.is_file()))


@pytest.fixture
def unreachable() -> str:
    """The URL of a tracking server that is not there: a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


TRAINING = {  # each command that logs, with arguments that would train
    "train": ["train", "deep", "--data", "digits", "--arch", "dense:8", "--baseline", "none",
              *QUICK],
    "train-layer": ["train-layer", "x", "--data", "digits", "--on", "net.l1@1", "--kind",
                    "dense", "--width", "8", *QUICK],
    "extend": ["extend", "net@1", "--kind", "dense", "--width", "8", *QUICK],
    "repair": ["repair", "net@1", "--layer", "2"],
    "repair --auto": ["repair", "--auto"],
}


@pytest.mark.parametrize("command", sorted(TRAINING))
def test_an_unreachable_tracking_server_fails_before_training(home, unreachable, command):
    """One line, exit code 1, in seconds (MLflow's own retries take minutes), and nothing
    trained or registered."""
    before = _registered(home)
    started = time.monotonic()
    out = in_home(home, *TRAINING[command], "--mlflow", unreachable)
    assert time.monotonic() - started < 60
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: MLflow at '{unreachable}' failed: ")
    assert "Connection refused" in out.stderr and len(out.stderr.splitlines()) == 1
    assert out.stdout == ""
    assert _registered(home) == before


BAD = [  # a wrong argument of each command that logs: its own error and exit code
    (["train", "deep", "--data", "nosuch", "--arch", "dense:8", *QUICK], 6,
     "error: no dataset 'nosuch'; see `mfstore data list` (or import it with `mfstore data "
     "add nosuch URL` (replace URL with where the data is now: a path, an fsspec URL or "
     "sklearn:DATASET))"),
    (["train", "deep", "--data", "digits", "--arch", "dense:8", "--schedule", "later",
      *QUICK], 2, "error: unknown schedule 'later'; choose sequential or simultaneous"),
    (["train-layer", "x", "--data", "digits", "--on", "nosuch@1", "--kind", "dense",
      "--width", "8", *QUICK], 6,
     "error: layer 'nosuch' has no version 1; see `mfstore layers list`"),
    (["extend", "nosuch@1", "--kind", "dense", "--width", "8", *QUICK], 6,
     "error: network 'nosuch' has no version 1; see `mfstore nets list`"),
    (["repair", "net@1", "--layer", "9"], 2,
     "error: the layer to repair must lie in 1..2 for net@1, got 9; pass --layer"),
    (["repair", "--layer", "2"], 2,
     "error: say which network's layer 2 to repair: NET, NET@VERSION or NET@ALIAS"),
    (["repair", "net@1", "--layer", "2", "--tolerance", "5"], 2,
     "error: the accuracy tolerance must lie in [0, 1] (a fraction: 0.02 = 2 points), got 5.0"),
]


@pytest.mark.parametrize("args, code, message", BAD, ids=[" ".join(b[0][:2]) for b in BAD])
@pytest.mark.parametrize("where", ["reachable", "unreachable"])
def test_a_wrong_argument_is_reported_before_mlflow_is_reached(home, tracking, unreachable,
                                                              monkeypatch, args, code,
                                                              message, where):
    """The command's own error and exit code, whether or not MLflow can be reached; MLflow
    is not touched (the experiment is not even made) and nothing is registered."""
    from mlflow.tracking import MlflowClient

    name = f"t-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    before = _registered(home)
    uri = tracking["uri"] if where == "reachable" else unreachable
    out = in_home(home, *args, "--mlflow", uri)
    assert (out.returncode, out.stderr.strip()) == (code, message)
    assert MlflowClient(tracking["uri"]).get_experiment_by_name(name) is None
    assert _registered(home) == before


@pytest.mark.parametrize("args, env, code, message", [
    (["--mlflow"], {"MLFLOW_TRACKING_URI": ""}, 2,
     "error: say where MLflow runs go: give a tracking URI (e.g. sqlite:///mlflow.db or "
     "http://mlflow:5000) or set MLFLOW_TRACKING_URI; pass --mlflow"),
    (["--mlflow", "nosuch://x"], {}, 1, "error: MLflow at 'nosuch://x' failed: "),
    (["--mlflow", "http://[::1"], {}, 2,
     "error: the MLflow tracking URI 'http://[::1' cannot be read (Invalid IPv6 URL); give one "
     "such as sqlite:///mlflow.db or http://mlflow:5000; pass --mlflow"),
])
def test_a_wrong_tracking_uri_fails_before_training(home, args, env, code, message,
                                                    monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = _registered(home)
    out = in_home(home, "train-layer", "x", "--data", "digits", "--kind", "dense", "--width",
                  "8", *QUICK, *args)
    assert out.returncode == code
    assert out.stderr.startswith(message) and len(out.stderr.strip().splitlines()) == 1
    assert _registered(home) == before


def test_without_mlflow_installed_the_error_names_the_extra(home, tracking, monkeypatch):
    """A machine without the `mlflow` extra: mlflow cannot be imported."""
    monkeypatch.setitem(sys.modules, "mlflow", None)
    before = _registered(home)
    out = in_home(home, "train-layer", "x", "--data", "digits", "--kind", "dense", "--width",
                  "8", *QUICK, "--mlflow", tracking["uri"])
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: MLflow logging needs the mlflow package: install "
                                  "mfstore[mlflow]")
    assert _registered(home) == before


def test_in_memory_training_has_nothing_to_log(tracking, tmp_path):
    out = in_home(tmp_path, "train", "--data", "sklearn:iris", "--arch", "dense:4", *QUICK,
                  "--mlflow", tracking["uri"])
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: --mlflow logs registered layer versions; give the "
                                  "network a name (mfstore train NET …) to register them")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_under_torchrun_rank_0_alone_reaches_mlflow_and_logs(home, tracking, experiment,
                                                             unreachable):
    """Two processes train one layer: one run is logged, not one per rank; an unreachable
    server stops every rank before training."""
    from tests.test_distributed import torchrun

    client, experiment_id = experiment
    command = ["--home", str(home), "train-layer", "dp", "--data", "digits", "--kind", "dense",
               "--width", "8", *QUICK]
    out = torchrun(*command, "--mlflow", tracking["uri"])
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = runs(client, experiment_id).values()
    assert run.info.run_name == "dp@1" and out.stderr.count("logged 1 MLflow run") == 1
    before = _registered(home)
    out = torchrun(*command, "--mlflow", unreachable)
    assert out.returncode != 0
    lines = out.stderr.splitlines()  # each rank's line (torchrun's summary repeats them)
    assert sum(x.startswith(f"error: MLflow at '{unreachable}' failed: ") for x in lines) == 2
    assert _registered(home) == before


def test_logging_that_fails_after_registration_says_what_was_registered(home, tracking,
                                                                       tmp_path, monkeypatch):
    """The experiment's artifact folder is a file: MLflow is reachable (checked first), the
    layer trains and is registered, then logging its block fails. The one line says the
    version is registered, so nobody trains it again for nothing."""
    from mlflow.tracking import MlflowClient

    blocked = tmp_path / "artifacts"
    blocked.write_text("not a folder")
    name = f"t-{uuid.uuid4().hex[:8]}"
    MlflowClient(tracking["uri"]).create_experiment(name, artifact_location=str(blocked))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    out = in_home(home, "train-layer", "logged", "--data", "digits", "--kind", "dense",
                  "--width", "8", *QUICK, "--mlflow", tracking["uri"])
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = [x for x in out.stderr.strip().splitlines() if not x.startswith("MF layer")]
    assert line.startswith("error: logged@1 is registered (training again would register "
                           "another version), but logging to MLflow failed: MLflow at "), line
    assert Workspace.open(str(home)).registry.layer("logged", "1").version == 1
