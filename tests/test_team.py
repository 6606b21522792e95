"""A team's store: one PostgreSQL registry and one S3 bucket shared by several machines and
processes, on real servers (PostgreSQL, and moto's S3 API on loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import fsspec
import pytest

from mfstore.block import load_block
from mfstore.manifest import read_manifest
from mfstore.workspace import Workspace, block_path
from tests.cli_run import MFSTORE, cli

QUICK = ["--epochs", "2", "--batch-size", "64", "--device", "cpu"]


@pytest.fixture
def team(postgres, s3):
    bucket = s3.new_bucket()
    return postgres.new_database(), f"s3://{bucket}/mf", bucket


def _where(team, home) -> list[str]:
    registry, store, _ = team
    return ["--home", str(home), "--registry", registry, "--store", store]


def test_two_machines_share_one_registry_and_one_bucket(team, tmp_path, s3):
    a, b = _where(team, tmp_path / "a"), _where(team, tmp_path / "b")
    init = cli(*a, "init")
    assert init.returncode == 0, init.stderr
    assert init.stdout.splitlines() == [f"registry  {team[0]}", f"store     {team[1]}"]
    for args in (["data", "add", "digits", "sklearn:digits"],
                 ["train-layer", "l1", "--data", "digits", "--kind", "dense", "--width", "16",
                  *QUICK]):
        assert cli(*a, *args).returncode == 0
    out = cli(*b, "train-layer", "l2", "--data", "digits", "--on", "l1@1", "--kind", "dense",
              "--width", "16", *QUICK)
    assert out.returncode == 0, out.stderr
    assert cli(*a, "compose", "net", "l1@1", "l2@1").returncode == 0
    listed = json.loads(cli(*b, "nets", "list", "--json").stdout)
    assert [n["ref"] for n in listed] == ["net@1"]
    assert cli(*b, "verify", "net@1", "--data", "digits").returncode == 0
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # all in PG and S3


def test_the_password_is_never_printed(postgres, s3, tmp_path):
    registry = postgres.url("postgres", password="s3cr3t")  # trust auth: any password works
    out = cli("--home", str(tmp_path), "--registry", registry, "--store",
              f"s3://{s3.new_bucket()}/x", "init")
    assert out.returncode == 0, out.stderr
    assert "s3cr3t" not in out.stdout and "postgres:***@" in out.stdout


def test_reading_never_creates_the_bucket(team, tmp_path, s3):
    assert cli(*_where(team, tmp_path), "init").returncode == 0
    registry = team[0]
    missing = s3.new_bucket()
    where = ["--home", str(tmp_path), "--registry", registry, "--store", f"s3://{missing}/x"]
    for command in (["layers", "list"], ["nets", "list"], ["verify"]):  # even registry reads
        out = cli(*where, *command)
        assert out.returncode == 9, command
        assert out.stderr.strip() == (
            f"error: there is no mfstore store at 's3://{missing}/x'; run `mfstore "
            f"{' '.join(where)} init` first (or check --store / MFSTORE_STORE)")
    assert not fsspec.filesystem("s3", skip_instance_cache=True).exists(missing)


@pytest.mark.slow
def test_an_unreachable_endpoint_is_one_line(team, tmp_path):
    from tests.cli_run import mfstore

    out = mfstore(*_where(team, tmp_path), "init", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert out.returncode == 9
    line = out.stderr.strip()
    assert line.startswith(f"error: cannot create store '{team[1]}': Could not connect to the "
                           "endpoint URL") and line.endswith("check --store / MFSTORE_STORE")
    assert "\n" not in line


def test_each_object_is_one_put_and_nothing_is_copied(team, tmp_path, s3):
    where = _where(team, tmp_path)
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"]):
        assert cli(*where, *args).returncode == 0
    mark = s3.mark()
    out = cli(*where, "train-layer", "l1", "--data", "digits", "--kind", "dense", "--width",
              "16", *QUICK)
    assert out.returncode == 0, out.stderr
    requests = s3.requests_since(mark, team[2])
    assert requests["POST"] == requests["DELETE"] == 0  # no server-side copy, no rename
    ws = Workspace.open(registry=team[0], store=team[1])
    layer = ws.registry.layer("l1", "1")
    assert requests["PUT"] == 1  # the block; no output stream until a layer trains on it
    assert ws.store.exists(block_path(layer.block_sha256))
    mark = s3.mark()
    out = cli(*where, "train-layer", "l2", "--data", "digits", "--on", "l1@1", "--kind", "dense",
              "--width", "16", *QUICK)
    assert out.returncode == 0, out.stderr
    requests = s3.requests_since(mark, team[2])
    shards = sum(len(s.shards) for s in _layer_stream(ws, layer).splits.values())
    assert requests["POST"] == requests["DELETE"] == 0
    assert requests["PUT"] == shards + 1 + 1  # l1's output shards and manifest, l2's block


def _layer_stream(ws, layer):
    from mfstore.manifest import stream_id

    dataset = ws.registry.dataset("digits")
    return read_manifest(ws.store, stream_id(dataset.fingerprint, [layer.digest]))


WORKER = """
import sys
from typer.testing import CliRunner
from cli.main import app
where = sys.argv[1:]
for args in (["init"], ["data", "add", "iris", "sklearn:iris"],
             ["train-layer", "shared", "--data", "iris", "--kind", "dense", "--width", "8",
              "--epochs", "2", "--device", "cpu", "--json"]):
    out = CliRunner().invoke(app, [*where, *args], catch_exceptions=False)
    if out.exit_code:
        sys.exit(f"{args[0]} exited {out.exit_code}: {out.stderr}")
print(out.stdout)
"""


@pytest.mark.slow
def test_eight_processes_on_an_empty_database(team, tmp_path):
    """Eight machines' first commands at once: each process runs init, data add and
    train-layer (in one interpreter, as a script would) against the empty database."""
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", WORKER, *_where(team, tmp_path / f"p{p}")],
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for p in range(8)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [r[1][-500:] for r in results]
    versions = sorted(json.loads(out)["version"] for out, _ in results)
    assert versions == list(range(1, 9))
    ws = Workspace.open(registry=team[0], store=team[1])
    assert [d.name for d in ws.registry.datasets()] == ["iris"]
    for v in ws.registry.layers("shared"):
        load_block(ws, v)  # every block is there and whole
    assert json.loads(cli(*_where(team, tmp_path), "verify", "--json").stdout)["damaged"] == 0


@pytest.mark.slow
def test_sigkill_during_train_layer_leaves_nothing_half_done(team, tmp_path):
    where = _where(team, tmp_path)
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"],
                 ["train-layer", "wide", "--data", "digits", "--kind", "dense", "--width",
                  "2048", "--epochs", "1", "--device", "cpu"]):
        assert cli(*where, *args).returncode == 0
    command = [MFSTORE, *where, "train-layer", "top", "--data", "digits", "--on", "wide@1",
               "--kind", "dense", "--width", "8", "--epochs", "1", "--device", "cpu"]
    env = {**os.environ, "MFSTORE_SHARD_BYTES": "200000"}
    s3fs = fsspec.filesystem("s3", skip_instance_cache=True)
    streams_before = set(s3fs.ls(f"{team[2]}/mf/streams"))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not set(s3fs.ls(f"{team[2]}/mf/streams", refresh=True)) - streams_before:
        assert proc.poll() is None, "finished before it could be killed mid-write"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ws = Workspace.open(registry=team[0], store=team[1])
    assert ws.registry.layers("top") == []  # killed while writing wide@1's output stream
    recorded = {s.id for s in ws.registry.streams()}
    for folder in set(s3fs.ls(f"{team[2]}/mf/streams", refresh=True)) - streams_before:
        sid = folder.rsplit("/", 1)[-1]
        assert sid not in recorded and read_manifest(ws.store, sid) is None  # never visible
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(cli(*where, "verify", "--json").stdout)["damaged_streams"] == 0


def test_an_invalid_bucket_name_is_one_line(team, tmp_path):
    registry = team[0]
    out = cli("--home", str(tmp_path), "--registry", registry, "--store", "s3://Bad_Bucket!/x",
              "init")
    assert out.returncode == 9
    assert out.stderr.startswith("error: cannot create store 's3://Bad_Bucket!/x': ")
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_data_from_an_unreachable_endpoint_is_one_line(team, tmp_path):
    from tests.cli_run import mfstore

    assert cli("--home", str(tmp_path), "--registry", team[0], "init").returncode == 0
    out = mfstore("--home", str(tmp_path), "--registry", team[0], "data", "add", "x",
                  "s3://somewhere/f.npz", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert out.returncode == 3
    assert out.stderr.startswith("error: cannot reach 's3://somewhere/f.npz': Could not "
                                 "connect to the endpoint URL")
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_collectors_and_writers_at_once_end_cleanly(team, tmp_path):
    where = _where(team, tmp_path)
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"],
                 ["train", "n1", "--data", "digits", "--arch", "dense:16,dense:8",
                  "--baseline", "none", *QUICK], ["nets", "delete", "n1"]):
        assert cli(*where, *args).returncode == 0
    env = {**os.environ, "MFSTORE_SHARD_BYTES": "4000"}
    procs = [subprocess.Popen([MFSTORE, *where, "gc", "--grace", "0"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    procs.append(subprocess.Popen(
        [MFSTORE, *where, "train", "n2", "--data", "digits", "--arch", "dense:16,dense:8",
         "--baseline", "none", *QUICK], env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE))
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [r[1][-400:] for r in results]
    assert json.loads(cli(*where, "verify", "n2", "--json").stdout)["damaged_streams"] == 0
