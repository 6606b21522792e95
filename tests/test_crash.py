"""A training process killed with SIGKILL mid-write loses nothing and corrupts nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from mfstore.importing import import_dataset
from mfstore.workspace import Workspace
from tests.cli_run import MFSTORE, cli
from tests.store_checks import assert_consistent

WIDE = ["train-layer", "wide", "--data", "digits", "--kind", "dense", "--width", "2048",
        "--epochs", "1", "--device", "cpu"]
COMMAND = ["train-layer", "top", "--data", "digits", "--on", "wide@1", "--kind", "dense",
           "--width", "8", "--epochs", "1", "--device", "cpu"]  # writes wide@1's outputs first


def _partial_stream(store_dir, known: set[str]) -> bool:
    streams = store_dir / "streams"
    if not streams.exists():
        return False
    return any(d.name not in known and not (d / "manifest.json").exists()
               and any(d.iterdir()) for d in streams.iterdir())


@pytest.mark.slow
def test_sigkill_while_writing_the_output_stream(tmp_path):
    env = {**os.environ, "MFSTORE_SHARD_BYTES": "200000"}
    ws = Workspace.init(home=str(tmp_path))
    import_dataset(ws, "digits", "sklearn:digits")
    assert cli("--home", str(tmp_path), *WIDE).returncode == 0
    known = {p.name for p in (tmp_path / "store" / "streams").iterdir()}
    proc = subprocess.Popen([MFSTORE, "--home", str(tmp_path), *COMMAND], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not _partial_stream(tmp_path / "store", known):
        assert proc.poll() is None, "finished before it could be killed mid-write"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    ws = Workspace.open(home=str(tmp_path))
    incomplete = assert_consistent(ws)
    assert incomplete, "the kill should have left a stream without its manifest"
    assert all(s.id not in incomplete for s in ws.registry.streams())

    again = subprocess.run([MFSTORE, "--home", str(tmp_path), *COMMAND], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "registered top@1" in again.stdout
    assert assert_consistent(Workspace.open(home=str(tmp_path))) == set()
