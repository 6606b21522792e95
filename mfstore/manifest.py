"""A stream's manifest: what a complete stream holds (its splits, each a list of shards with
their counts and sha256), read and checked without reading a tensor (and without torch), so
`verify`, the UI and `gc` can check streams cheaply. `stream.py` writes and reads the shards.

    streams/<id>/manifest.json   {id, dataset_fingerprint, chain, splits: {train|val|test:
                                  {count, example_shape, shards: [{path, count, sha256, bytes}]}}}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from mfstore.errors import IntegrityError
from mfstore.fixes import RepairFix
from mfstore.store import Store

REPAIR = RepairFix(auto=True)

SPLITS = ("train", "val", "test")


def stream_id(dataset_fingerprint: str, chain: Iterable[str]) -> str:
    key = json.dumps({"dataset": dataset_fingerprint, "chain": list(chain)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Shard:
    path: str  # relative to the store root
    count: int
    sha256: str
    bytes: int


@dataclass
class SplitInfo:
    count: int = 0
    example_shape: list[int] = field(default_factory=list)
    shards: list[Shard] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)


@dataclass
class Manifest:
    id: str
    dataset_fingerprint: str
    chain: list[str]
    splits: dict[str, SplitInfo]

    @property
    def total_bytes(self) -> int:
        return sum(s.total_bytes for s in self.splits.values())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        splits = {name: SplitInfo(s["count"], s["example_shape"],
                                  [Shard(**shard) for shard in s["shards"]])
                  for name, s in raw["splits"].items()}
        return cls(raw["id"], raw["dataset_fingerprint"], raw["chain"], splits)


def merge_splits(parts: list[SplitInfo]) -> SplitInfo:
    """One split written in consecutive parts (by several processes): their shards in order."""
    shape = next((p.example_shape for p in parts if p.example_shape), [])
    return SplitInfo(sum(p.count for p in parts), shape,
                     [shard for p in parts for shard in p.shards if shard.count])


def manifest_path(sid: str) -> str:
    return f"streams/{sid}/manifest.json"


def read_manifest(store: Store, sid: str) -> Manifest | None:
    """The manifest of a complete stream (one request), or None when the stream is absent or
    incomplete."""
    try:
        data = store.get_optional(manifest_path(sid))
    except FileNotFoundError:
        return None
    try:
        return Manifest.from_json(data)
    except (ValueError, KeyError, TypeError) as err:
        raise IntegrityError(f"the manifest of stream {sid[:12]} "
                             f"({store.url_of(manifest_path(sid))}) is damaged ({err})",
                             REPAIR) from err


def stream_problems(store: Store, sid: str) -> list[str]:
    """What is wrong with a stream that should be complete: its manifest, and every shard's
    presence and sha256 (every byte is read)."""
    try:
        manifest = read_manifest(store, sid)
    except IntegrityError as err:
        return [err.message]
    if manifest is None:
        return [f"its manifest {store.url_of(manifest_path(sid))} is missing"]
    problems = []
    for split in manifest.splits.values():
        for shard in split.shards:
            try:
                store.get(shard.path, expected_sha256=shard.sha256)
            except IntegrityError as err:
                problems.append(err.message)
    return problems
