"""Checkpoints of a training in progress, so that a killed run goes on where it stopped.

At the end of every epoch the epoch loop (`epochs.run_epochs`) hands its whole state to a
`Checkpoint`: every unit's weights, the optimizers', the learning-rate schedules', early
stopping's (best weights included), the histories, the first active unit and the epoch. The
data order depends on (seed, epoch) alone, so a run resumed from the state after epoch k
computes what the uninterrupted run computed from there, bit for bit on the CPU.

A checkpoint lives in the store (`checkpoints/<key>.safetensors`: tensors as safetensors, the
rest as JSON in its metadata, nothing pickled; written atomically by rank 0), named
after everything that decides the training (`job_key`): running the same command again finds
it; a different command never does. It is written at the end of an epoch once
`MFSTORE_CHECKPOINT_SECONDS` (default 30; 0: every epoch) have passed since the training began
or was last saved, so a short training writes nothing at all and a long one loses at most that
much. It is removed once what it trains is registered; `gc` removes one nobody came back for
once it is older than its grace period.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from mfstore.errors import IntegrityError
from mfstore.numbers import env_number
from mfstore.run_context import RunContext
from mfstore.workspace import CHECKPOINTS, Workspace

EVERY = 30  # seconds between checkpoints, by default


def job_key(kind: str, **parts: Any) -> str:
    """A stable name for a training: `kind` and a digest of everything that decides it."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


class Checkpoint:
    """The state of one epoch loop, saved each epoch and read back on a new start."""

    def __init__(self, ws: Workspace, key: str, ctx: RunContext) -> None:
        self.ws, self.key, self.ctx = ws, key, ctx
        self.every = env_number("MFSTORE_CHECKPOINT_SECONDS", EVERY, 0, 10**7, "seconds")
        self.begun = self.last = time.monotonic()
        self.written = False  # a state or a progress record is in the store (to remove)

    @property
    def path(self) -> str:
        return f"{CHECKPOINTS}/{self.key}.safetensors"

    def load(self) -> dict[str, Any] | None:
        """The state saved last, or None (every process reads the same file). Nothing is
        unpickled: tensors are safetensors, the rest JSON."""
        try:
            data = self.ws.store.get_optional(self.path)
        except FileNotFoundError:
            return None
        self.written = True
        try:
            return read_state(data, self.ctx.device)
        except (ValueError, KeyError, TypeError, SafetensorError) as err:
            raise IntegrityError(f"the checkpoint {self.ws.store.url_of(self.path)} is damaged "
                                 f"({err}); remove it to train from the start") from None

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state (rank 0 alone writes; the file is replaced atomically)."""
        if not self.ctx.main or time.monotonic() - self.last < self.every:
            return
        self.ws.store.put(self.path, write_state(state))
        self.last, self.written = time.monotonic(), True

    def remove(self) -> None:
        """The saved state and the progress, once what was trained is registered."""
        if self.ctx.main and self.written:
            self.ws.store.delete(self.path)
            self.ws.store.delete(self._progress_path)

    def clear(self) -> None:
        """Every file of this training, its layers' parts included (once its network is
        registered, a part a rerun did not need is left from the killed run)."""
        if self.ctx.main and self.written:
            for path in self.ws.store.list(CHECKPOINTS):
                if path.split("/")[-1].startswith(self.key):
                    self.ws.store.delete(path)

    @property
    def _progress_path(self) -> str:
        return f"{CHECKPOINTS}/{self.key}.progress.json"

    def progress(self) -> tuple[list[tuple[str, int]], tuple[str, str] | None]:
        """The layer versions this training registered before it was stopped (in order),
        and the (name, weights digest) it was registering then, if any."""
        try:
            data = json.loads(self.ws.store.get_optional(self._progress_path))
        except FileNotFoundError:
            return [], None
        self.written = True
        pending = data.get("pending")
        return ([(str(name), int(version)) for name, version in data["registered"]],
                None if pending is None else (str(pending[0]), str(pending[1])))

    def record(self, registered: list[tuple[str, int]],
               pending: tuple[str, str] | None = None) -> None:
        """Note the layer versions registered so far and, just before registering one, its
        (name, weights digest): a rerun of a layer-by-layer training takes them up rather
        than training (or registering) them again, even if the kill fell between the
        registration and this record."""
        if self.ctx.main and (self.written or time.monotonic() - self.begun >= self.every):
            self.ws.store.put(self._progress_path, json.dumps(
                {"registered": registered, "pending": pending}).encode())
            self.written = True

    def part(self, position: int) -> Checkpoint:
        """The checkpoint of the layer at `position` of a training of several in turn (its
        time counted from the whole training's start)."""
        part = Checkpoint(self.ws, f"{self.key}-l{position}", self.ctx)
        part.begun = part.last = self.last
        return part


def write_state(state: Any) -> bytes:
    """`state` (nested dicts, lists, tuples, numbers, strings, None and tensors) as a
    safetensors file: the tensors as its tensors, the rest as JSON in its metadata."""
    tensors: dict[str, torch.Tensor] = {}

    def plain(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            name = str(len(tensors))
            tensors[name] = value.detach().cpu().contiguous().clone()
            return {"tensor": name}
        if isinstance(value, dict):  # keys kept with their type (an optimizer's are ints)
            return {"dict": [[k, plain(v)] for k, v in value.items()]}
        if isinstance(value, list | tuple):
            return {"list": [plain(v) for v in value], "tuple": isinstance(value, tuple)}
        return {"value": value}

    skeleton = json.dumps(plain(state))
    return bytes(save_tensors(tensors, metadata={"state": skeleton}))


def read_state(data: bytes, device: torch.device) -> Any:
    """What `write_state` wrote, its tensors on `device`."""
    size = int.from_bytes(data[:8], "little")
    skeleton = json.loads(json.loads(data[8:8 + size])["__metadata__"]["state"])
    tensors = load_tensors(data)

    def value(node: dict[str, Any]) -> Any:
        if "tensor" in node:
            return tensors[node["tensor"]].to(device)
        if "dict" in node:
            return {k: value(v) for k, v in node["dict"]}
        if "list" in node:
            items = [value(v) for v in node["list"]]
            return tuple(items) if node["tuple"] else items
        return node["value"]

    return value(skeleton)
