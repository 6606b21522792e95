"""What is intact now, computed without writing anything: the checks `mfstore verify` runs
(block readable, sha256 unchanged, finite; stream manifest and every shard's sha256) and each
network's accuracy measured on its dataset's test split, remembered per file state.

`verify` records what it finds in the registry; the UI must never write, so it calls the same
read-only checks (`block_problems`, `check_streams`) and keeps the answers here. An answer is
reused while the files it read keep their size and modification time, and a measured accuracy
while the blocks (content-addressed) and the dataset's stream are the same.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from mfstore.errors import MFStoreError
from mfstore.evaluation import Accuracy, evaluate
from mfstore.registry import LayerVersion, NetworkVersion
from mfstore.stream import Manifest, StreamBatches, read_manifest
from mfstore.verify import StreamCheck, block_problems, check_streams
from mfstore.workspace import Workspace, block_path


@dataclass(frozen=True)
class Measured:
    """A network's test accuracy measured now, or why it was not."""

    accuracy: Accuracy | None
    reason: str = ""


@dataclass
class Checks:
    """Read-only checks with a memory; one per server (or per report)."""

    ws: Workspace
    _memory: dict[Hashable, tuple[Hashable, Any]] = field(default_factory=dict)
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

    def _remembered(self, key: Hashable, state: Hashable | None) -> Any:
        with self._lock:
            found = self._memory.get(key)
        return found[1] if found is not None and state is not None and found[0] == state else None

    def _remember(self, key: Hashable, state: Hashable | None, value: Any) -> None:
        if state is not None:
            with self._lock:
                self._memory[key] = (state, value)

    def block(self, layer: LayerVersion) -> list[str]:
        """What is wrong with the layer's block file now (empty when intact)."""
        state = self._state([block_path(layer.block_sha256)])
        found = self._remembered(("block", layer.block_sha256), state)
        if found is None:
            found = block_problems(self.ws, layer)[0]
            self._remember(("block", layer.block_sha256), state, found)
        return list(found)

    def layer_problems(self, layer: LayerVersion) -> list[str]:
        """Its block's problems, and the mark an earlier `verify` left in the registry."""
        marked = ["marked damaged by an earlier verify"] if layer.status == "damaged" else []
        return [*self.block(layer), *marked]

    def streams(self, network: NetworkVersion, layers: list[LayerVersion]) -> list[StreamCheck]:
        """Every stream the network reads (its dataset's examples and each recorded prefix of
        its chain) with what is wrong with it now; every shard is read, so the answer is kept
        while no file under `streams/` changes."""
        try:
            state = self._state(self.ws.store.list("streams"))
        except MFStoreError:
            state = None
        key = ("streams", network.ref)
        found = self._remembered(key, state)
        if found is None:
            found = check_streams(self.ws, network, layers)
            self._remember(key, state, found)
        return list(found)

    def accuracy(self, network: NetworkVersion, layers: list[LayerVersion],
                 damaged: bool) -> Measured:
        """Per-layer, FF and BP accuracy on the test split of the network's dataset."""
        if damaged:
            return Measured(None, "a block or stream it reads is damaged")
        try:
            dataset = self.ws.registry.dataset(network.dataset)
            manifest = read_manifest(self.ws.store, dataset.stream_id)
        except MFStoreError as err:
            return Measured(None, err.message)
        if manifest is None:
            return Measured(None, "its dataset's examples are missing from the store")
        key = ("accuracy", tuple(v.block_sha256 for v in layers), dataset.stream_id)
        found = self._remembered(key, "content-addressed")
        if found is None:
            found = _measure(self.ws, layers, manifest)
            if found.accuracy is not None:
                self._remember(key, "content-addressed", found)
        return found


def _measure(ws: Workspace, layers: list[LayerVersion], manifest: Manifest) -> Measured:
    try:
        modules = [ws.load_block(v).to_layer() for v in layers]
        source = StreamBatches(ws.store, manifest, "test", options=ws.stream_options)
        return Measured(evaluate(modules, source, torch.device("cpu")))
    except MFStoreError as err:
        return Measured(None, err.message)
