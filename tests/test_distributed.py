"""Training beyond one process: `torchrun` with the gloo backend on CPU, as a user runs it.

Data-parallel layers (every command that trains), the layer-parallel pipeline (one process
per layer, bit-identical to the single-process simultaneous schedule), two "nodes" on
loopback sharing a registry and a store, a rank killed mid-epoch, and the configurations
that are refused before anything trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from mfstore.batches import Part, local_batches
from mfstore.block import load_block
from mfstore.manifest import read_manifest
from mfstore.workspace import Workspace
from tests.cli_run import MFSTORE, cli
from tests.services import free_port

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
QUICK = ["--epochs", "4", "--batch-size", "64", "--device", "cpu"]


def torchrun(*args: str, nproc: int = 2, launch: tuple[str, ...] = ("--standalone",),
             cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TORCHRUN, *launch, "--nproc-per-node", str(nproc), "--no-python",
                           MFSTORE, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "160", **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def digits_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("dist")
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"],
                 ["data", "add", "cancer", "sklearn:breast_cancer"]):
        assert cli("--home", str(home), *args).returncode == 0
    return home


@pytest.mark.parametrize("total,batch", [(1000, 64), (1797, 128), (100, 100), (37, 8)])
def test_the_batches_of_an_epoch_do_not_depend_on_the_number_of_processes(total, batch):
    def global_batches(world: int) -> list[list[int]]:
        parts = []
        for rank in range(world):
            start = 0 if rank == 0 else sum(  # where this rank's share begins
                len(torch.cat(list(local_batches(total, batch, 3, 5, Part(r, world)))))
                for r in range(rank))
            parts.append([sorted((b + start).tolist())
                          for b in local_batches(total, batch, 3, 5, Part(rank, world))])
        return [sorted(i for p in parts for i in p[t]) for t in range(len(parts[0]))]

    one = global_batches(1)
    assert sorted(i for b in one for i in b) == list(range(total))  # every example once an epoch
    for world in (2, 4):
        if batch % world == 0:
            assert global_batches(world) == one


@pytest.mark.slow
def test_data_parallel_baselines_match_one_process(digits_home):
    """BP, FA and DFA average their gradients over the processes: the same run up to float
    rounding. FF draws each process's negative labels from its own generator, so it is the
    same algorithm on other random negatives: it only has to run (4 epochs teach FF little)."""
    command = ["--home", str(digits_home), "train", "dp-base", "--data", "cancer", "--arch",
               "dense:16,dense:16", "--baseline", "bp,fa,dfa,ff", *QUICK, "--json"]
    one = cli(*command)
    two = torchrun(*command)
    assert (one.returncode, two.returncode) == (0, 0), two.stderr[-2000:]
    single, parallel = ({b["algorithm"]: b["test"] for b in json.loads(r.stdout)["baselines"]}
                        for r in (one, two))
    assert list(parallel) == ["bp", "fa", "dfa", "ff"]
    for name in ("bp", "fa", "dfa"):
        assert abs(single[name] - parallel[name]) <= 0.01, name  # 114 test examples
    assert 0.0 < parallel["ff"] < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("data,arch", [("digits", "32"), ("cancer", "16")])
def test_a_data_parallel_layer_matches_one_process(digits_home, data, arch):
    home = str(digits_home)
    command = ["--home", home, "train-layer", f"dp-{data}", "--data", data, "--kind", "dense",
               "--width", arch, *QUICK, "--json"]
    one = json.loads(cli(*command).stdout)
    two = [torchrun(*command) for _ in range(2)]
    assert [r.returncode for r in two] == [0, 0], two[0].stderr[-2000:]
    runs = [json.loads(r.stdout) for r in two]
    assert [r["version"] for r in runs] == [2, 3]  # one version per run, never one per rank
    assert runs[0]["digest"] == runs[1]["digest"]  # the same seed and N: the same block
    for split in ("val", "test"):
        assert abs(runs[0]["metrics"][f"{split}_accuracy"]
                   - one["metrics"][f"{split}_accuracy"]) <= 0.005
    assert len(Workspace.open(home=home).registry.layers(f"dp-{data}")) == 3


@pytest.mark.slow
def test_the_layer_parallel_pipeline_is_bit_identical_to_one_process(digits_home):
    home = str(digits_home)
    arch = ["--data", "digits", "--arch", "dense:32,dense:24,dense:16", "--schedule",
            "simultaneous", "--baseline", "none", "--patience", "2", *QUICK]
    piped = torchrun("--home", home, "train", "piped", *arch, "--layer-parallel", nproc=3)
    assert piped.returncode == 0, piped.stderr[-2000:]
    single = subprocess.run([MFSTORE, "--home", home, "train", "single", *arch],
                            env={**os.environ, "OMP_NUM_THREADS": "1"},  # as torchrun's ranks
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ws = Workspace.open(home=home)
    for k in (1, 2, 3):
        a, b = ws.registry.layer(f"piped.l{k}"), ws.registry.layer(f"single.l{k}")
        assert a.digest == b.digest, k  # the same tensors, bit for bit
        assert a.metrics == b.metrics
        assert load_block(ws, a).history["epochs"] == load_block(ws, b).history["epochs"]
    assert "layer-parallel" in ws.registry.network("piped").note


@pytest.mark.parametrize("args,nproc,message", [
    (["--arch", "dense:8,dense:8,dense:8"], 2,
     "error: layer-parallel training needs one process per layer: 3 layers, 2 processes"),
    (["--arch", "dense:8,dense:8", "--schedule", "sequential"], 2,
     "error: layer-parallel training is the simultaneous schedule"),
    (["--arch", "dense:8,dense:8", "--baseline", "bp"], 2,
     "error: the backprop baseline cannot run layer-parallel"),
])
@pytest.mark.slow
def test_pipelines_that_cannot_run_are_refused_before_training(digits_home, args, nproc,
                                                                message):
    base = ["--schedule", "simultaneous", "--baseline", "none"]
    out = torchrun("--home", str(digits_home), "train", "refused", "--data", "digits",
                   *base, *args, "--layer-parallel", *QUICK, nproc=nproc)
    assert out.returncode != 0
    assert message in out.stderr
    assert Workspace.open(home=str(digits_home)).registry.layers("refused.l1") == []


@pytest.mark.slow
def test_a_diverging_pipeline_stops_every_rank_with_the_same_error(digits_home):
    """The ranks run the one epoch loop on the same summed losses: a layer that diverges on
    one rank stops every rank (none waits forever for a peer), nothing is registered."""
    out = torchrun("--home", str(digits_home), "train", "boom", "--data", "digits", "--arch",
                   "dense:16,dense:16", "--schedule", "simultaneous", "--baseline", "none",
                   "--layer-parallel", "--lr", "1e30", *QUICK, nproc=2, timeout=120)
    assert out.returncode != 0
    line = ("error: training diverged: layer 1 (mf) reached a non-finite loss or weight at "
            "epoch 1 with learning rate 1e+30; nothing was registered")
    lines = out.stderr.splitlines()
    assert sum(x.startswith(line) for x in lines) == 2, out.stderr[-2000:]  # each rank's
    assert out.stderr.count(f"traceback : {line}") == 2  # and torchrun's summary of each
    assert Workspace.open(home=str(digits_home)).registry.layers("boom.l1") == []


def test_a_pipeline_without_torchrun_and_a_batch_that_does_not_split_are_refused(home):
    out = cli("--home", str(home), "train", "x", "--data", "digits", "--arch", "dense:8",
              "--schedule", "simultaneous", "--layer-parallel", "--baseline", "none", *QUICK)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: layer-parallel training needs one process per layer; start it with `torchrun "
        f"--nproc-per-node 1 --no-python mfstore --home {home} train x --data digits --arch "
        "dense:8 --schedule simultaneous --layer-parallel --baseline none --epochs 4 "
        "--batch-size 64 --device cpu`")


@pytest.mark.slow
def test_a_batch_size_that_does_not_split_over_the_processes(digits_home):
    out = torchrun("--home", str(digits_home), "train-layer", "odd", "--data", "digits",
                   "--kind", "dense", "--width", "8", "--epochs", "1", "--batch-size", "65",
                   "--device", "cpu")
    assert out.returncode != 0
    line = ("error: the batch size (65) must be a multiple of the number of processes (2): "
            "each takes an equal part of a batch")
    assert line in out.stderr
    # each rank's error reaches torchrun's summary, as one line rather than a traceback
    assert out.stderr.count(f"traceback : {line}") == 2, out.stderr[-3000:]
    assert Workspace.open(home=str(digits_home)).registry.layers("odd") == []


@pytest.mark.slow
def test_two_nodes_on_loopback_share_a_registry_and_a_store(postgres, s3, tmp_path):
    registry, store = postgres.new_database(), f"s3://{s3.new_bucket()}/mf"
    where = ["--registry", registry, "--store", store]
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"]):
        assert cli("--home", str(tmp_path / "setup"), *where, *args).returncode == 0
    port = free_port()
    nodes = []
    for rank in (0, 1):
        folder = tmp_path / f"node{rank}"
        folder.mkdir()
        launch = ("--nnodes", "2", "--node-rank", str(rank), "--master-addr", "127.0.0.1",
                  "--master-port", str(port))
        nodes.append(threading.Thread(target=lambda f=folder, la=launch: results.append(
            torchrun(*where, "train", "wide", "--data", "digits", "--arch", "dense:16,dense:8",
                     "--baseline", "none", *QUICK, nproc=1, launch=la, cwd=f))))
    results: list[subprocess.CompletedProcess[str]] = []
    for node in nodes:
        node.start()
    for node in nodes:
        node.join(timeout=400)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1500:] for r in results]
    ws = Workspace.open(registry=registry, store=store)
    assert [n.ref for n in ws.registry.networks()] == ["wide@1"]
    assert [v.ref for v in ws.registry.layers()] == ["wide.l1@1", "wide.l2@1"]
    assert not any(list((tmp_path / f"node{r}").iterdir()) for r in (0, 1))  # nothing local
    assert json.loads(cli(*where, "verify", "wide@1", "--json").stdout)["damaged"] == 0


def _worker_of_rank(launcher: subprocess.Popen[str], rank: int) -> int | None:
    children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                              text=True).stdout.split()
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def _cpu_seconds(pid: int) -> float:
    """User and system time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_a_rank_killed_mid_epoch_fails_the_job_cleanly(digits_home):
    home = str(digits_home)
    command = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "--no-python", MFSTORE,
               "--home", home, "train", "killed", "--data", "digits", "--arch",
               "dense:512,dense:512", "--baseline", "none", "--epochs", "200", "--patience", "0",
               "--batch-size", "16", "--device", "cpu"]
    env = {**os.environ, "MFSTORE_SHARD_BYTES": "100000"}
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 240
    victim = None
    while victim is None or _cpu_seconds(victim) < 10:  # past start-up, into layer 1's epochs
        assert launcher.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
        victim = _worker_of_rank(launcher, 1)
    os.kill(victim, signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0  # torchrun tears the others down and fails
    ws = Workspace.open(home=home)
    assert ws.registry.layers("killed.l1") == [] and ws.registry.networks("killed") == []
    recorded = {s.id for s in ws.registry.streams()}
    for folder in (Path(home) / "store" / "streams").iterdir():
        if folder.name not in recorded:  # a stream cut off mid-write is never visible
            assert read_manifest(ws.store, folder.name) is None
    again = torchrun("--home", home, "train", "killed", "--data", "digits", "--arch",
                     "dense:16,dense:8", "--baseline", "none", *QUICK)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [n.ref for n in Workspace.open(home=home).registry.networks("killed")] == [
        "killed@1"]
