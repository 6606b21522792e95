"""Deleting networks, and collecting what no live row references: blocks and streams.

A block is live while a layer version that is not deleted points at it. A stream is live
while its dataset exists and every layer of its chain is a live layer version. Anything else
in the store (and temporary files left by an interrupted write) is garbage once it is older
than the grace period, which protects writes in progress."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mfstore.network import resolve_network
from mfstore.registry import LayerVersion, NetworkVersion, parse_ref
from mfstore.workspace import Workspace


@dataclass
class Deletion:
    networks: list[NetworkVersion]
    layers: list[LayerVersion]


def delete_network(ws: Workspace, ref: str, keep_layers: bool = False) -> Deletion:
    """Mark NET@V (or every version of NET) deleted, and the layer versions that no other
    live network uses, unless `keep_layers`."""
    name, selector = parse_ref(ref)
    if selector is None:
        doomed = [n for n in ws.registry.networks(name) if n.status != "deleted"]
        if not doomed:
            resolve_network(ws, name)  # raises NotFoundError
    else:
        doomed = [resolve_network(ws, ref)]
    for network in doomed:
        ws.registry.set_network_status(network.name, network.version, "deleted")
    layers: list[LayerVersion] = []
    if not keep_layers:
        used = {ref for n in ws.registry.networks() if n.status != "deleted" for ref in n.layers}
        for pair in dict.fromkeys(p for n in doomed for p in n.layers):
            layer = ws.registry.layer(pair[0], str(pair[1]))
            if pair not in used and layer.status != "deleted":
                ws.registry.set_layer_status(*pair, "deleted")
                layers.append(layer)
    return Deletion(doomed, layers)


@dataclass
class Collection:
    blocks: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    streams: list[tuple[str, int]] = field(default_factory=list)  # (stream id, bytes)
    temporary: list[tuple[str, int]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(b for group in (self.blocks, self.streams, self.temporary) for _, b in group)


def _age(ws: Workspace, path: str, now: float) -> float:
    try:
        return now - ws.store.fs.modified(ws.store.path(path)).timestamp()
    except (NotImplementedError, OSError, AttributeError):
        return float("inf")


def collect(ws: Workspace, dry_run: bool = False, grace_seconds: float = 600) -> Collection:
    """Remove (or with `dry_run`, list) every unreferenced block, stream and temporary file."""
    now, out = time.time(), Collection(dry_run=dry_run)
    live = [v for v in ws.registry.layers() if v.status != "deleted"]
    blocks, digests = {v.block_sha256 for v in live}, {v.digest for v in live}
    datasets = ws.registry.datasets()
    fingerprints, roots = {d.fingerprint for d in datasets}, {d.stream_id for d in datasets}
    known = {s.id: s for s in ws.registry.streams()}
    def old(path: str) -> bool:
        return _age(ws, path, now) >= grace_seconds

    by_stream: dict[str, list[str]] = {}
    for path in ws.store.list("blocks") + ws.store.list("streams"):
        name = path.rsplit("/", 1)[-1]
        files = by_stream.setdefault(path.split("/")[1], []) if path.startswith(
            "streams/") else None
        if name.startswith(".tmp-"):
            if old(path):
                out.temporary.append((path, ws.store.size(path)))
        elif files is not None:
            files.append(path)
        elif name.split(".")[0] not in blocks and old(path):
            out.blocks.append((path, ws.store.size(path)))
    for sid, stream_files in sorted(by_stream.items()):
        record = known.get(sid)
        alive = sid in roots or (record is not None and record.dataset_fingerprint in fingerprints
                                 and all(d in digests for d in record.chain))
        if not alive and all(old(p) for p in stream_files):
            out.streams.append((sid, sum(ws.store.size(p) for p in stream_files)))
    if not dry_run:
        for path, _ in out.blocks + out.temporary:
            ws.store.delete(path)
        for sid, _ in out.streams:
            ws.store.delete(f"streams/{sid}")
            ws.registry.delete_stream(sid)
    return out
