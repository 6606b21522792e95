"""Collecting what nothing live references: blocks, streams, stale shards, temporary files.

A block is live while a layer version that is not deleted points at it (deletion never strands
a live layer's lineage, see `deletion`). A stream is live while its dataset exists, it is not
marked damaged, and every layer of its chain computes what a live layer version computes.
Inside a live stream, shards its manifest does not name (an interrupted write's, or those a
repair replaced) are stale. Anything unreferenced, a derived stream marked damaged by `verify`
included, is garbage once every file of it is older than the grace period, which protects
writes in progress (a repair rewriting it, say). A dataset's own stream(0) is never collected
while its dataset exists, even damaged: it is the only copy of the examples (repair it).
A checkpoint of a training (`checkpoints/`) is removed once it is older than the grace
period: its training was registered (which removes it) or abandoned. Several collectors at once
are fine: a file another one removed first is simply gone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mfstore.errors import ConfigError, ConflictError
from mfstore.fixes import option
from mfstore.manifest import manifest_path, read_manifest
from mfstore.registry import StreamRecord
from mfstore.usage import Snapshot
from mfstore.workspace import CHECKPOINTS, Workspace


@dataclass
class Collection:
    blocks: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    streams: list[tuple[str, int]] = field(default_factory=list)  # (stream id, bytes)
    temporary: list[tuple[str, int]] = field(default_factory=list)  # stale or partial files
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(b for group in (self.blocks, self.streams, self.temporary) for _, b in group)


def _live_streams(ws: Workspace, snap: Snapshot) -> tuple[set[str], set[str]]:
    """(ids of live streams, ids of streams marked damaged)."""
    datasets = ws.registry.datasets()
    fingerprints = {d.fingerprint for d in datasets}
    digests = {v.digest for v in snap.layers}
    records: list[StreamRecord] = ws.registry.streams()
    damaged = {s.id for s in records if s.status == "damaged"}
    live = {d.stream_id for d in datasets} | {
        s.id for s in records if s.dataset_fingerprint in fingerprints
        and all(d in digests for d in s.chain)}
    return live - damaged, damaged


def _guard_against_a_foreign_registry(ws: Workspace, snap: Snapshot, files: list[str]) -> None:
    if not snap.layers and not ws.registry.datasets() and any(
            p.endswith(".safetensors") for p in files):
        raise ConflictError(
            f"the registry {ws.registry.shown!r} holds no dataset and no layer, but the store "
            f"{ws.store.shown!r} holds blocks and streams: is this the registry that wrote them? "
            "Nothing was removed", option("force", "to collect everything anyway"))


def collect(ws: Workspace, dry_run: bool = False, grace_seconds: float = 600,
            force: bool = False) -> Collection:
    """Remove (or with `dry_run`, list) every unreferenced block, stream and stale file."""
    if not (math.isfinite(grace_seconds) and grace_seconds >= 0):
        raise ConfigError(f"the grace period must be a number of seconds >= 0, got "
                          f"{grace_seconds}", option("grace"))
    now, out = time.time(), Collection(dry_run=dry_run)
    snap = Snapshot.read(ws.registry)
    files = ws.store.list("blocks") + ws.store.list("streams")
    if not force:
        _guard_against_a_foreign_registry(ws, snap, files)
    live_blocks = {v.block_sha256 for v in ws.registry.layers() if v.status != "deleted"}
    live_streams, damaged = _live_streams(ws, snap)

    def old(path: str) -> bool:
        modified = ws.store.modified(path)
        return modified is not None and now - modified >= grace_seconds

    by_stream: dict[str, list[str]] = {}
    for path in files:
        name = path.rsplit("/", 1)[-1]
        if path.startswith("streams/"):
            by_stream.setdefault(path.split("/")[1], []).append(path)
        elif name.startswith(".tmp-") and old(path):
            out.temporary.append((path, ws.store.size_or_zero(path)))
        elif not name.startswith(".tmp-") and name.split(".")[0] not in live_blocks and old(path):
            out.blocks.append((path, ws.store.size_or_zero(path)))
    for path in ws.store.list(CHECKPOINTS):  # checkpoints of trainings nobody came back to
        if old(path):
            out.temporary.append((path, ws.store.size_or_zero(path)))
    roots = {d.stream_id for d in ws.registry.datasets()}
    for sid, stream_files in sorted(by_stream.items()):
        if sid in live_streams:
            out.temporary += _stale_shards(ws, sid, stream_files, old)
        elif sid not in roots and all(old(p) for p in stream_files):
            out.streams.append((sid, sum(ws.store.size_or_zero(p) for p in stream_files)))
    if not dry_run:
        _remove(ws, out, damaged)
    return out


def _stale_shards(ws: Workspace, sid: str, files: list[str],
                  old: Callable[[str], bool]) -> list[tuple[str, int]]:
    manifest = read_manifest(ws.store, sid)
    if manifest is None:
        return []
    named = {s.path for split in manifest.splits.values() for s in split.shards}
    named.add(manifest_path(sid))
    return [(p, ws.store.size_or_zero(p)) for p in files if p not in named and old(p)]


def _remove(ws: Workspace, out: Collection, damaged: set[str]) -> None:
    for path, _ in out.blocks + out.temporary:
        ws.store.delete(path)
    for sid, _ in out.streams:
        ws.store.delete(f"streams/{sid}")
        ws.registry.delete_stream(sid, only_if="damaged" if sid in damaged else None)
