"""`Workspace`: where things live. Resolves home, registry URL and store URL from arguments,
then `MFSTORE_HOME` / `MFSTORE_REGISTRY` / `MFSTORE_STORE`, then defaults (`./.mfstore`,
SQLite in home, `<home>/store`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mfstore.block import LayerBlock
from mfstore.registry import LayerVersion, Registry
from mfstore.store import Store, sha256
from mfstore.stream import StreamOptions

DEFAULT_HOME = ".mfstore"


def block_path(sha: str) -> str:
    return f"blocks/{sha[:2]}/{sha}.safetensors"


@dataclass
class Workspace:
    home: str
    registry: Registry
    store: Store
    stream_options: StreamOptions = field(default_factory=StreamOptions)

    @classmethod
    def open(cls, home: str | None = None, registry: str | None = None,
             store: str | None = None, stream_options: StreamOptions | None = None) -> Workspace:
        home = home or os.environ.get("MFSTORE_HOME") or DEFAULT_HOME
        registry = registry or os.environ.get("MFSTORE_REGISTRY")
        store = store or os.environ.get("MFSTORE_STORE")
        if registry is None or store is None:
            Path(home).mkdir(parents=True, exist_ok=True)
        registry = registry or f"sqlite:///{Path(home).resolve() / 'registry.db'}"
        store = store or str(Path(home).resolve() / "store")
        if stream_options is None:
            stream_options = StreamOptions(
                shard_bytes=int(os.environ.get("MFSTORE_SHARD_BYTES", StreamOptions.shard_bytes)),
                ram_budget=int(os.environ.get("MFSTORE_RAM_BUDGET", StreamOptions.ram_budget)))
        return cls(home, Registry(registry), Store(store), stream_options)

    def put_block(self, block: LayerBlock) -> str:
        """Store a block (durably) and return its address, the sha256 of its bytes."""
        data = block.to_bytes()
        sha = sha256(data)
        if not self.store.exists(block_path(sha)):
            self.store.put(block_path(sha), data)
        return sha

    def load_block(self, layer: LayerVersion) -> LayerBlock:
        """The block of a layer version, verified against its sha256."""
        path = block_path(layer.block_sha256)
        data = self.store.get(path, expected_sha256=layer.block_sha256)
        return LayerBlock.from_bytes(data, name=f"{self.store.url_of(path)} ({layer.ref})")
