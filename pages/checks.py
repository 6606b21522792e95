"""What is intact now, computed without writing anything: the checks `mfstore verify` runs
(block readable, sha256 unchanged, finite; stream manifest and every shard's sha256) and each
network's accuracy measured on its dataset's test split.

`verify` records what it finds in the registry; the UI must never write, so it calls the same
read-only checks (`block_problems`, `check_streams`) and keeps some answers here, one `Checks`
per server (or per report):

- a block is read and checked whenever a page shows it (once per page: `facts.Statuses`);
  blocks are small, and only its bytes can say it is intact — a flipped byte that keeps the
  file's size and time would otherwise pass, and some stores report no time at all;
- a stream's answer (every shard read) is reused while its files keep their sizes and times,
  for at most `stream_seconds`, so damage that keeps both is seen within that time;
- a measured accuracy is reused while the blocks (content-addressed, checked intact first)
  and the dataset's stream are the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mfstore.errors import MFStoreError
from mfstore.integrity import Recorded, StreamCheck, block_problems, check_streams
from mfstore.manifest import Manifest, read_manifest, stream_problems
from mfstore.registry import LayerVersion, NetworkVersion
from mfstore.workspace import Workspace

if TYPE_CHECKING:
    from mfstore.evaluation import Accuracy

STREAM_SECONDS = 60.0
CPU = "cpu"  # where pages measure accuracy: a server's GPU is for serving


@dataclass(frozen=True)
class Measured:
    """A network's test accuracy measured now, or why it was not."""

    accuracy: Accuracy | None
    reason: str = ""


@dataclass
class Checks:
    """Read-only checks with a memory; one per server (or per report)."""

    ws: Workspace
    stream_seconds: float = STREAM_SECONDS
    _memory: dict[Hashable, tuple[Hashable, float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _state(self, paths: list[str]) -> Hashable | None:
        """Size and modification time of each file; None where the store cannot say."""
        state = []
        for path in paths:
            try:
                modified = self.ws.store.modified(path)
                size = self.ws.store.size(path)
            except (MFStoreError, OSError):
                return None
            if modified is None:
                return None
            state.append((path, size, modified))
        return tuple(state)

    def _remembered(self, key: Hashable, state: Hashable | None, seconds: float) -> Any:
        """The answer kept for `key` while its files are in `state`, for at most `seconds`."""
        with self._lock:
            found = self._memory.get(key)
        if found is None or state is None or found[0] != state:
            return None
        return found[2] if time.monotonic() - found[1] < seconds else None

    def _remember(self, key: Hashable, state: Hashable | None, value: Any) -> None:
        if state is not None:
            with self._lock:
                self._memory[key] = (state, time.monotonic(), value)

    def layer_problems(self, layer: LayerVersion) -> list[str]:
        """Its block's problems now (the block is read), and the mark an earlier `verify`
        left in the registry."""
        marked = ["marked damaged by an earlier verify"] if layer.status == "damaged" else []
        return [*block_problems(self.ws, layer), *marked]

    def stream_problems(self, sid: str, counts: dict[str, int] | None = None) -> list[str]:
        """What is wrong with one stream (its manifest against itself and its dataset's
        `counts`, every shard's sha256 and shapes)."""
        try:
            state = self._state(self.ws.store.list(f"streams/{sid}"))
        except MFStoreError:
            state = None
        found = self._remembered(("stream", sid), state, self.stream_seconds)
        if found is None:
            found = stream_problems(self.ws.store, sid, counts)
            self._remember(("stream", sid), state, found)
        return list(found)

    def streams(self, network: NetworkVersion, layers: list[LayerVersion],
                recorded: Recorded | None = None) -> list[StreamCheck]:
        """Every stream the network reads (its dataset's examples and each recorded prefix of
        its chain) with what is wrong with it now."""
        return check_streams(self.ws, network, layers, self.stream_problems, recorded)

    def accuracy(self, network: NetworkVersion, layers: list[LayerVersion],
                 status: str) -> Measured:
        """Per-layer, FF and BP accuracy on the test split of the network's dataset, for a
        network whose `status` (as checked now) is ok."""
        if status != "ok":
            return Measured(None, "it is deleted" if status == "deleted" else
                            "a block or stream it reads is damaged")
        try:
            dataset = self.ws.registry.dataset(network.dataset)
            manifest = read_manifest(self.ws.store, dataset.stream_id)
        except MFStoreError as err:
            return Measured(None, err.message)
        if manifest is None:
            return Measured(None, "its dataset's examples are missing from the store")
        key = ("accuracy", tuple(v.block_sha256 for v in layers), dataset.stream_id)
        found = self._remembered(key, "content-addressed", float("inf"))
        if found is None:
            found = _measure(self.ws, layers, manifest)
            if found.accuracy is not None:
                self._remember(key, "content-addressed", found)
        return found


def _measure(ws: Workspace, layers: list[LayerVersion], manifest: Manifest) -> Measured:
    # torch and the layers load on the first network page, not when the UI starts
    from mfstore.devices import resolve_device

    # start-up: torch on the first network page, not when the UI starts
    from mfstore.network import evaluate_layers

    try:
        return Measured(evaluate_layers(ws, layers, manifest, resolve_device(CPU)))
    except MFStoreError as err:
        return Measured(None, err.message)
