"""`Workspace`: where things live. Resolves home, registry URL and store URL from arguments,
then `MFSTORE_HOME` / `MFSTORE_REGISTRY` / `MFSTORE_STORE`, then defaults (`./.mfstore`,
SQLite in home, `<home>/store`).

`Workspace.init` creates what is missing (registry, store); `Workspace.open` creates nothing
and refuses a registry or store that is not there (one request: the store's marker), so a
mistyped store URL is refused by every command, even one that then reads only the registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mfstore.block_header import BlockHeader
from mfstore.config import StreamOptions
from mfstore.errors import IntegrityError, StoreError
from mfstore.fixes import SettingFix
from mfstore.numbers import env_number
from mfstore.registry import LayerVersion, Registry
from mfstore.store import Store, sha256
from mfstore.urls import mask_credentials

DEFAULT_HOME = ".mfstore"


def block_path(sha: str) -> str:
    return f"blocks/{sha[:2]}/{sha}.safetensors"


@dataclass(frozen=True)
class Locations:
    """Where a workspace lives, resolved once where a command or API call enters."""

    home: str
    registry: str
    store: str
    in_home: bool  # the registry or the store defaulted to a place inside home

    @classmethod
    def resolve(cls, home: str | None = None, registry: str | None = None,
                store: str | None = None) -> Locations:
        home = home or os.environ.get("MFSTORE_HOME") or DEFAULT_HOME
        if os.path.exists(home) and not os.path.isdir(home):
            raise StoreError(f"home {home!r} is a file, not a folder",
                             SettingFix("home"))
        absolute = Path(home).resolve()
        registry = registry or os.environ.get("MFSTORE_REGISTRY")
        store = store or os.environ.get("MFSTORE_STORE")
        return cls(home, registry or f"sqlite:///{absolute / 'registry.db'}",
                   store or str(absolute / "store"), registry is None or store is None)

    @property
    def shown(self) -> Locations:
        """These locations as they may be shown (a page, a report, a log): credentials in the
        registry and store URLs masked, as `Registry.shown` and `Store.shown` mask them."""
        return replace(self, registry=mask_credentials(self.registry),
                       store=mask_credentials(self.store))


@dataclass(frozen=True)
class StoredBlock:
    """A layer's block as the store holds it now, read without raising for damage."""

    data: bytes | None  # None: missing or unreadable
    header: BlockHeader | None  # None where the bytes do not parse as a block's header
    intact: bool  # the bytes match the sha256 the registry recorded

    @property
    def history(self) -> dict[str, Any] | None:
        """The learning curve in an intact block's header (`epochs`: train_loss, val_loss,
        val_accuracy per epoch; `best_epoch`, `stopped_early`, `seconds`), else None."""
        return self.header.history if self.header is not None and self.intact else None


CHECKPOINTS = "checkpoints"  # in the store: trainings in progress (`checkpoints.py`)
SHARD_BYTES = (1 << 10, 1 << 40)  # a shard: at least 1 KiB (not a file per example)
RAM_BUDGET = (0, 1 << 50)  # 0: every split is streamed


def stream_options_from_env() -> StreamOptions:
    """`MFSTORE_SHARD_BYTES` and `MFSTORE_RAM_BUDGET`, each a whole number of bytes within its
    bounds (else one line naming the variable)."""
    return StreamOptions(
        shard_bytes=env_number("MFSTORE_SHARD_BYTES", StreamOptions.shard_bytes, *SHARD_BYTES,
                               "bytes"),
        ram_budget=env_number("MFSTORE_RAM_BUDGET", StreamOptions.ram_budget, *RAM_BUDGET,
                              "bytes"))


class Workspace:
    def __init__(self, where: Locations, registry: Registry,
                 stream_options: StreamOptions | None = None) -> None:
        self.where, self.home, self.registry = where, where.home, registry
        self.stream_options = stream_options or stream_options_from_env()
        self._store: Store | None = None

    @classmethod
    def open(cls, home: str | None = None, registry: str | None = None,
             store: str | None = None, stream_options: StreamOptions | None = None,
             check_store: bool = True) -> Workspace:
        """An existing workspace; nothing is created, and a registry or store that is not
        there (or not reachable) is refused. `check_store=False`: the store is checked when
        first used (for a caller that may never need it)."""
        where = Locations.resolve(home, registry, store)
        ws = cls(where, Registry(where.registry), stream_options)
        if check_store:
            ws.store  # noqa: B018 (opened and checked now, not at first use)
        return ws

    @classmethod
    def init(cls, home: str | None = None, registry: str | None = None,
             store: str | None = None, stream_options: StreamOptions | None = None) -> Workspace:
        """Create the registry and the store where they are missing (safe to run again, and
        by several processes at once); an existing registry is brought up to date."""
        where = Locations.resolve(home, registry, store)
        if where.in_home:
            try:
                Path(where.home).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create home {where.home!r}: {err}",
                                 SettingFix("home")) from err
        ws = cls(where, Registry(where.registry, create=True), stream_options)
        store_ = Store(where.store)
        store_.create(ws.registry.id)
        ws._store = store_
        return ws

    @property
    def store(self) -> Store:
        """The store, opened and checked on first use."""
        if self._store is None:
            store = Store(self.where.store)
            store.check(self.registry.id)
            self._store = store
        return self._store

    def read_block(self, layer: LayerVersion) -> StoredBlock:
        """The layer's block as stored now (damaged or missing included): what a page,
        `--json` or `verify` shows of it. A store that cannot be reached is a `StoreError`,
        never taken for a missing block."""
        path = block_path(layer.block_sha256)
        try:
            data = self.store.get(path)
        except IntegrityError:
            return StoredBlock(None, None, False)
        try:
            header: BlockHeader | None = BlockHeader.from_bytes(
                data, name=f"{self.store.url_of(path)} ({layer.ref})")
        except IntegrityError:
            header = None
        return StoredBlock(data, header, sha256(data) == layer.block_sha256)
