"""Long training survives a kill: `train-layer` and `train` (either schedule) keep a checkpoint
in the store after every epoch; a run killed with SIGKILL at any epoch and started again with
the same command goes on from its last epoch and registers blocks bit-identical to an
uninterrupted run's (on the CPU). Checkpoints go once their training is registered."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from mfstore.checkpoints import read_state, write_state
from mfstore.workspace import Workspace
from tests.cli_run import MFSTORE_COMMAND, in_home, json_of

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True)
def every_epoch(monkeypatch):
    """A checkpoint at every epoch (by default one waits 30 s: these trainings are short)."""
    monkeypatch.setenv("MFSTORE_CHECKPOINT_SECONDS", "0")


SLOW = ["--epochs", "8", "--batch-size", "16", "--lr", "0.003", "--device", "cpu",
        "--patience", "3"]  # ~0.1 s an epoch: a kill lands between epochs or inside one


def _epochs_saved(home: Path, ending: str = ".safetensors") -> int:
    """The most epochs any checkpoint (named `…ending`) in the store holds now (0: none)."""
    most = 0
    for path in (home / "store" / "checkpoints").glob(f"[!.]*{ending}"):  # not a write under way
        try:
            state = read_state(path.read_bytes(), torch.device("cpu"))
        except (OSError, ValueError, SafetensorError):
            continue  # replaced while read
        most = max(most, int(state["epochs"]))
    return most


def _killed_after(home: Path, epochs: int, *args: str) -> None:
    """`mfstore ARGS…` killed with SIGKILL once a checkpoint holds `epochs` epochs."""
    process = subprocess.Popen([*MFSTORE_COMMAND, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE,
                               env={**os.environ, "MFSTORE_HOME": str(home)})
    deadline = time.monotonic() + 120
    while _epochs_saved(home) < epochs:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint came"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _left(home: Path) -> list[str]:
    """Checkpoints left in the store (a write the kill interrupted leaves a temporary file,
    which gc collects like any other)."""
    folder = home / "store" / "checkpoints"
    return [] if not folder.exists() else sorted(
        p.name for p in folder.iterdir() if not p.name.startswith(".tmp-"))


def _digests(home: Path, *names: str) -> list[str]:
    ws = Workspace.open(home=str(home))
    return [ws.registry.layer(name).digest for name in names]


@pytest.mark.parametrize("kill_after", [1, 4])
def test_a_layer_killed_mid_training_resumes_to_the_same_block(home, kill_after):
    args = ["train-layer", "x", "--data", "digits", "--kind", "dense", "--width", "256", *SLOW]
    _killed_after(home, kill_after, *args)
    assert [v.ref for v in Workspace.open(home=str(home)).registry.layers("x")] == []
    (saved,) = (home / "store" / "checkpoints").glob("*.safetensors")
    state = read_state(saved.read_bytes(), torch.device("cpu"))
    assert state["epochs"] >= kill_after
    state["seconds"] = 1e6  # a mark: the rerun's recorded time goes on from the checkpoint's
    saved.write_bytes(write_state(state))
    out = in_home(home, *args)
    assert out.returncode == 0, out.stderr
    history = json_of(home, "layers", "show", "x@1")["history"]
    assert history["seconds"] >= 1e6  # resumed, not trained again from the start
    assert in_home(home, "train-layer", "ref", *args[2:]).returncode == 0  # uninterrupted
    assert _digests(home, "x") == _digests(home, "ref")
    reference = json_of(home, "layers", "show", "ref@1")["history"]
    assert history["epochs"] == reference["epochs"]  # every epoch's figures, before the kill too
    assert history["best_epoch"] == reference["best_epoch"]
    assert [v.ref for v in Workspace.open(home=str(home)).registry.layers("x")] == ["x@1"]
    assert _left(home) == []  # gone once registered


@pytest.mark.parametrize("schedule,kill_after", [("simultaneous", 3), ("sequential", 10)])
def test_a_network_killed_mid_training_resumes_to_the_same_blocks(home, schedule, kill_after):
    """sequential, 10 epochs saved: layer 1 (8 epochs) is registered and layer 2 is two
    epochs in; the rerun takes layer 1 as registered rather than training it again."""
    args = ["--data", "digits", "--arch", "dense:128,dense:128", "--schedule", schedule,
            "--baseline", "none", *SLOW]
    if schedule == "sequential":
        _killed_after_layers(home, ["train", "net2", *args])
    else:
        _killed_after(home, kill_after, "train", "net2", *args)
    out = in_home(home, "train", "net2", *args)
    assert out.returncode == 0, out.stderr
    assert in_home(home, "train", "ref2", *args).returncode == 0
    assert _digests(home, "net2.l1", "net2.l2") == _digests(home, "ref2.l1", "ref2.l2")
    ws = Workspace.open(home=str(home))
    assert [v.ref for v in ws.registry.layers("net2.l1")] == ["net2.l1@1"]  # never twice
    assert [n.ref for n in ws.registry.networks("net2")] == ["net2@1"]
    assert _left(home) == []


def _killed_after_layers(home: Path, args: list[str]) -> None:
    """Killed once layer 1 is registered (and noted) and layer 2 has saved two epochs."""
    process = subprocess.Popen([*MFSTORE_COMMAND, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, "MFSTORE_HOME": str(home)})
    deadline = time.monotonic() + 120
    while not (_layers_noted(home) and _epochs_saved(home, "-l1.safetensors") >= 2):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [v.ref for v in Workspace.open(home=str(home)).registry.layers("net2.l1")] == [
        "net2.l1@1"]
    assert Workspace.open(home=str(home)).registry.networks("net2") == []


def _layers_noted(home: Path) -> int:
    """How many layers the network's progress note says are registered."""
    for path in (home / "store" / "checkpoints").glob("[!.]*.progress.json"):
        with contextlib.suppress(OSError, ValueError):
            return len(json.loads(path.read_text())["registered"])
    return 0


def test_gc_removes_a_checkpoint_nobody_came_back_for(home):
    _killed_after(home, 1, "train-layer", "x", "--data", "digits", "--kind", "dense",
                  "--width", "256", *SLOW)
    left = list((home / "store" / "checkpoints").glob("*.safetensors"))
    assert left
    assert in_home(home, "gc", "--grace", "3600").returncode == 0
    assert list((home / "store" / "checkpoints").glob("*.safetensors")) == left  # young: kept
    assert in_home(home, "gc", "--grace", "0").returncode == 0
    assert list((home / "store" / "checkpoints").glob("*.safetensors")) == []


def test_a_short_training_writes_no_checkpoint(home, monkeypatch):
    """By default a checkpoint waits MFSTORE_CHECKPOINT_SECONDS (30): a training shorter than
    that costs no write (and no request to an object store); a bad value is one line."""
    monkeypatch.delenv("MFSTORE_CHECKPOINT_SECONDS")
    args = ["train-layer", "x", "--data", "digits", "--kind", "dense", "--width", "16",
            "--epochs", "3", "--device", "cpu"]
    assert in_home(home, *args).returncode == 0
    assert not (home / "store" / "checkpoints").exists()
    monkeypatch.setenv("MFSTORE_CHECKPOINT_SECONDS", "soon")
    out = in_home(home, *args)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: MFSTORE_CHECKPOINT_SECONDS must be a whole number, "
                                  "got 'soon' (seconds)")


def test_a_kill_right_after_a_layer_is_registered_does_not_register_it_twice(home,
                                                                           monkeypatch):
    """The narrowest window: a layer-by-layer network dies after registering layer 1 and
    before noting it. The note made just before (name and weights digest) lets the rerun
    take that version up."""
    from mfstore.checkpoints import Checkpoint

    args = ["train", "net3", "--data", "digits", "--arch", "dense:32,dense:32", "--schedule",
            "sequential", "--baseline", "none", "--epochs", "2", "--device", "cpu"]
    record = Checkpoint.record

    def dies_after_registering(self, registered, pending=None):
        if registered and pending is None:  # the note after the registration
            raise RuntimeError("killed")
        record(self, registered, pending)

    monkeypatch.setattr(Checkpoint, "record", dies_after_registering)
    with pytest.raises(RuntimeError, match="killed"):
        in_home(home, *args)
    monkeypatch.setattr(Checkpoint, "record", record)
    ws = Workspace.open(home=str(home))
    assert [v.ref for v in ws.registry.layers("net3.l1")] == ["net3.l1@1"]
    out = in_home(home, *args)
    assert out.returncode == 0, out.stderr
    ws = Workspace.open(home=str(home))
    assert [v.ref for v in ws.registry.layers("net3.l1")] == ["net3.l1@1"]  # not twice
    assert [n.layers for n in ws.registry.networks("net3")] == [
        (("net3.l1", 1), ("net3.l2", 1))]
    assert _left(home) == []


def test_a_damaged_checkpoint_is_one_line_and_is_never_unpickled(home):
    """A checkpoint is safetensors and JSON: bytes that are neither (a pickle, say) are
    refused in one line, and nothing in them runs."""
    args = ["train-layer", "x", "--data", "digits", "--kind", "dense", "--width", "256", *SLOW]
    _killed_after(home, 1, *args)
    (saved,) = (home / "store" / "checkpoints").glob("*.safetensors")
    saved.write_bytes(b"\x80\x04\x95cos\nsystem\n")  # the start of a pickle
    out = in_home(home, *args)
    assert out.returncode == 8 and "Traceback" not in out.stderr
    line = [x for x in out.stderr.strip().splitlines() if not x.startswith("MF layer")]
    assert len(line) == 1 and line[0].startswith(f"error: the checkpoint {saved} is damaged")
    assert line[0].endswith("remove it to train from the start")
