"""Checkpoints of a training in progress, so that a killed run goes on where it stopped.

At the end of every epoch the epoch loop (`epochs.run_epochs`) hands its whole state to a
`Checkpoint`: every unit's weights, the optimizers', the learning-rate schedules', early
stopping's (best weights included), the histories, the first active unit and the epoch. The
data order depends on (seed, epoch) alone, so a run resumed from the state after epoch k
computes what the uninterrupted run computed from there, bit for bit on the CPU.

A checkpoint lives in the store (`checkpoints/<key>.pt`, written atomically by rank 0), named
after everything that decides the training (`job_key`): running the same command again finds
it; a different command never does. It is written at the end of an epoch once
`MFSTORE_CHECKPOINT_SECONDS` (default 30; 0: every epoch) have passed since the training began
or was last saved, so a short training writes nothing at all and a long one loses at most that
much. It is removed once what it trains is registered; `gc` removes one nobody came back for
once it is older than its grace period.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any

import torch

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
        return f"{CHECKPOINTS}/{self.key}.pt"

    def load(self) -> dict[str, Any] | None:
        """The state saved last, or None (every process reads the same file)."""
        try:
            data = self.ws.store.get_optional(self.path)
        except FileNotFoundError:
            return None
        self.written = True
        state: dict[str, Any] = torch.load(io.BytesIO(data), map_location=self.ctx.device,
                                           weights_only=True)
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state (rank 0 alone writes; the file is replaced atomically)."""
        if not self.ctx.main or time.monotonic() - self.last < self.every:
            return
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.ws.store.put(self.path, buffer.getvalue())
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
