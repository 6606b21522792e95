"""Invariants of a workspace that must hold whatever happened to the processes using it."""

from __future__ import annotations

from mfstore.block import load_block
from mfstore.manifest import read_manifest
from mfstore.workspace import Workspace, block_path


def assert_consistent(ws: Workspace) -> set[str]:
    """No row points at a missing or partial block or stream; returns the ids of stream
    folders that exist without a manifest (incomplete, and never read)."""
    for layer in ws.registry.layers():
        ws.store.get(block_path(layer.block_sha256), expected_sha256=layer.block_sha256)
        load_block(ws, layer)
    registered = {s.id for s in ws.registry.streams()}
    folders = {p.split("/")[1] for p in ws.store.list("streams")}
    for sid in registered:
        manifest = read_manifest(ws.store, sid)
        assert manifest is not None, f"stream row {sid} without a manifest"
    for sid in folders:
        manifest = read_manifest(ws.store, sid)
        if manifest is None:
            continue
        for split in manifest.splits.values():
            for shard in split.shards:
                ws.store.get(shard.path, expected_sha256=shard.sha256)
    return {sid for sid in folders if read_manifest(ws.store, sid) is None}
