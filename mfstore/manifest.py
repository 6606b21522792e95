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
    incomplete. A manifest that does not hold together (another stream's id, a split's count
    that is not the sum of its shards', a shard outside the stream) is damaged."""
    try:
        data = store.get_optional(manifest_path(sid))
    except FileNotFoundError:
        return None
    try:
        manifest = Manifest.from_json(data)
        wrong = _inconsistency(manifest, sid)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        wrong = str(err)
    if wrong:
        raise IntegrityError(f"the manifest of stream {sid[:12]} "
                             f"({store.url_of(manifest_path(sid))}) is damaged ({wrong})",
                             REPAIR)
    return manifest


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _inconsistency(manifest: Manifest, sid: str) -> str:
    """What in `manifest` contradicts itself or its place, or ''."""
    if manifest.id != sid:
        return f"it names stream {str(manifest.id)[:12]}"
    if set(manifest.splits) - set(SPLITS):
        return f"unknown splits {sorted(set(manifest.splits) - set(SPLITS))}"
    for name, split in manifest.splits.items():
        if not _count(split.count) or not all(_count(s.count) for s in split.shards):
            return f"split {name} has a count that is not a whole number"
        held = sum(s.count for s in split.shards)
        if split.count != held:
            return f"split {name} says {split.count} examples, its shards hold {held}"
        if not all(type(n) is int and n > 0 for n in split.example_shape):
            return f"split {name} has an example shape that is not one"
        for shard in split.shards:
            if not shard.path.startswith(f"streams/{sid}/") or ".." in shard.path:
                return f"shard {shard.path!r} is not in the stream's folder"
    return ""


def count_problems(manifest: Manifest, counts: dict[str, int]) -> list[str]:
    """Each split whose number of examples is not the dataset's (`DatasetRecord.counts`):
    a stream holds every example of its dataset, through its chain."""
    return [f"split {name} holds {manifest.splits[name].count if name in manifest.splits else 0}"
            f" examples, its dataset {expected}"
            for name, expected in sorted(counts.items())
            if (manifest.splits[name].count if name in manifest.splits else 0) != expected]


def shard_problems(shard: Shard, data: bytes, example_shape: list[int]) -> list[str]:
    """What a shard's own header says against its manifest entry: `x` of shape (count,
    *example_shape) and `y` of (count,), read from the safetensors header (no tensor)."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        x, y = header["x"]["shape"], header["y"]["shape"]
    except (ValueError, KeyError, TypeError):
        return [f"shard {shard.path} is not a stream shard"]
    if x != [shard.count, *example_shape] or y != [shard.count]:
        return [f"shard {shard.path} holds x {x} and y {y}, its manifest says {shard.count} "
                f"examples of shape {example_shape}"]
    return []


def stream_problems(store: Store, sid: str, counts: dict[str, int] | None = None) -> list[str]:
    """What is wrong with a stream that should be complete: its manifest (against itself and,
    given, the dataset's `counts`), and every shard's presence, sha256 and shapes (every byte
    is read)."""
    try:
        manifest = read_manifest(store, sid)
    except IntegrityError as err:
        return [err.message]
    if manifest is None:
        return [f"its manifest {store.url_of(manifest_path(sid))} is missing"]
    problems = count_problems(manifest, counts) if counts is not None else []
    for split in manifest.splits.values():
        for shard in split.shards:
            try:
                data = store.get(shard.path, expected_sha256=shard.sha256)
            except IntegrityError as err:
                problems.append(err.message)
                continue
            problems += shard_problems(shard, data, split.example_shape)
    return problems
