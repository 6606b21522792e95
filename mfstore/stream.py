"""Activation streams: ordered safetensors shards (`x`, `y`) plus a `manifest.json`.

A stream holds the train, validation and test splits of one dataset as seen through one
chain of layers; its id is a digest of (dataset fingerprint, chain). Each writer puts its
shards in a folder of its own (`streams/<id>/<run>/`) and the manifest last, so a stream
without a manifest is incomplete and is never read, and two processes writing the same stream
at once never mix their shards: the last manifest names one writer's complete set. Readers
verify every shard's sha256, prefetch the next shard in the background,
shuffle the shard order and a bounded buffer, and hold memory to a few shards whatever the
dataset size or the depth; a stream under the RAM budget is held in memory instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mfstore.batches import (
    WHOLE,
    Batch,
    Part,
    TensorBatches,
    epoch_generator,
    share,
    training_batch_size,
)
from mfstore.config import StreamOptions
from mfstore.errors import IntegrityError
from mfstore.manifest import (
    REPAIR,
    Manifest,
    Shard,
    SplitInfo,
    manifest_path,
    read_manifest,
)
from mfstore.store import Store, sha256


class StreamWriter:
    """Write splits shard by shard; `finish()` writes the manifest that completes the stream."""

    def __init__(self, store: Store, sid: str, dataset_fingerprint: str, chain: Iterable[str],
                 shard_bytes: int = StreamOptions.shard_bytes) -> None:
        self.store, self.shard_bytes = store, shard_bytes
        self.manifest = Manifest(sid, dataset_fingerprint, list(chain), {})
        self.folder = f"streams/{sid}/{uuid.uuid4().hex[:12]}"  # this writer's shards

    def write_split(self, split: str, batches: Iterable[Batch]) -> SplitInfo:
        """Cut the batches into shards of about `shard_bytes` (whole examples)."""
        info = self.manifest.splits[split] = SplitInfo()
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        pending = 0
        for x, y in batches:
            x, y = x.detach().to("cpu", torch.float32), y.detach().to("cpu", torch.int64)
            info.example_shape = list(x.shape[1:])
            per_shard = max(1, self.shard_bytes // max(1, x[0].numel() * 4))
            while len(y):
                take = per_shard - pending
                xs.append(x[:take])
                ys.append(y[:take])
                pending += len(ys[-1])
                x, y = x[take:], y[take:]
                if pending >= per_shard:
                    self._flush(split, info, xs, ys)
                    pending = 0
        if xs or not info.shards:
            self._flush(split, info, xs, ys)
        return info

    def _flush(self, split: str, info: SplitInfo, xs: list[torch.Tensor],
               ys: list[torch.Tensor]) -> None:
        x = torch.cat(xs) if xs else torch.zeros(0, *info.example_shape)
        y = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.int64)
        data = st_save({"x": x.contiguous(), "y": y.contiguous()})
        path = f"{self.folder}/{split}-{len(info.shards):05d}.safetensors"
        self.store.put(path, data)
        info.shards.append(Shard(path, int(y.shape[0]), sha256(data), len(data)))
        info.count += int(y.shape[0])
        xs.clear()
        ys.clear()

    def finish(self, replace: bool = False) -> Manifest:
        """Complete the stream with its manifest. Another writer may have completed the same
        stream meanwhile: then its manifest stands (written only if none exists, atomically)
        and this writer's shards go; with `replace` (a rebuild), this one's stands."""
        path = manifest_path(self.manifest.id)
        if self.store.put(path, self.manifest.to_json(), exclusive=not replace):
            return self.manifest
        theirs = read_manifest(self.store, self.manifest.id)
        if theirs is None:  # removed again meanwhile: ours will do
            self.store.put(path, self.manifest.to_json())
            return self.manifest
        self.store.delete(self.folder)
        return theirs


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere). Called
    between layers so that each layer's peak starts from what is live, not from what the
    previous layer's shards and buffers left in the allocator."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_shard(store: Store, shard: Shard, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        tensors = st_load(store.get(shard.path, expected_sha256=shard.sha256))
    except IntegrityError as err:
        sid = shard.path.split("/")[1]
        raise IntegrityError(f"stream {sid[:12]} is damaged: {err.message}", REPAIR) from err
    x, y = tensors["x"], tensors["y"]  # (n, *example_shape), (n,)
    if len(x) != shard.count or len(y) != shard.count:
        sid = shard.path.split("/")[1]
        raise IntegrityError(f"stream {sid[:12]} is damaged: shard {shard.path} holds "
                             f"{len(x)} examples, its manifest says {shard.count}", REPAIR)
    return (x.pin_memory(), y.pin_memory()) if pin else (x, y)


def _prefetched(store: Store, shards: list[Shard], depth: int, pin: bool) -> Iterator[Batch]:
    """Shards loaded (and verified) by a background thread, `depth` ahead of the consumer."""
    out: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        try:
            for shard in shards:
                item: object = load_shard(store, shard, pin)
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(None)
        except BaseException as err:  # handed to the consumer, raised there
            out.put(err)

    thread = threading.Thread(target=produce, daemon=True, name="mfstore-prefetch")
    thread.start()
    try:
        while (item := out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class StreamBatches:
    """A `BatchSource` over this process's share of one split of a stream (the whole split
    in a single process): only the shards that hold its share are read. A share that fits
    the RAM budget is read once and held, on `device` when one is given (a GPU)."""

    def __init__(self, store: Store, manifest: Manifest, split: str,
                 batch_size: int | None = None, seed: int = 0,
                 options: StreamOptions | None = None,
                 eval_batch_size: int = 4096, part: Part = WHOLE,
                 device: torch.device | None = None) -> None:
        self.store, self.info = store, manifest.splits[split]
        self.batch_size, self.seed, self.eval_batch_size = batch_size, seed, eval_batch_size
        self.options, self.part, self.device = options or StreamOptions(), part, device
        self.start, self.end = share(self.info.count, batch_size, part)
        self._memory: TensorBatches | None = None

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def in_memory(self) -> bool:
        return self.info.total_bytes * len(self) <= self.options.ram_budget * max(
            self.info.count, 1)

    def release(self) -> None:
        """Let go of the split held in memory (read again on the next use)."""
        self._memory = None

    def _pieces(self) -> list[tuple[Shard, int, int]]:
        """(shard, first, last) of every shard holding part of the share, sliced to it."""
        out, offset = [], 0
        for shard in self.info.shards:
            lo, hi = max(self.start - offset, 0), min(self.end - offset, shard.count)
            if lo < hi:
                out.append((shard, lo, hi))
            offset += shard.count
        return out

    def _read(self, pieces: list[tuple[Shard, int, int]]) -> Iterator[Batch]:
        shards = [shard for shard, _, _ in pieces]
        for (x, y), (_, lo, hi) in zip(_prefetched(self.store, shards, self.options.prefetch,
                                                   self.options.pin_memory), pieces,
                                       strict=True):
            yield x[lo:hi], y[lo:hi]

    def _held(self) -> TensorBatches:
        if self._memory is None:
            parts = list(self._read(self._pieces()))
            shape = tuple(self.info.example_shape)
            x = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, *shape)
            y = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, dtype=torch.int64)
            held = TensorBatches(x, y, self.batch_size, self.seed, self.eval_batch_size,
                                 self.info.count, self.part)
            self._memory = held if self.device is None else held.to(self.device)
        return self._memory

    def ordered(self) -> Iterator[Batch]:
        if self.in_memory:
            yield from self._held().ordered()
            return
        for x, y in self._read(self._pieces()):
            for start in range(0, len(y), self.eval_batch_size):
                yield x[start:start + self.eval_batch_size], y[start:start + self.eval_batch_size]

    def batches(self, epoch: int) -> Iterator[Batch]:
        if self.in_memory:  # the very order TensorBatches gives: streamed == in memory
            yield from self._held().batches(epoch)
            return
        batch_size = training_batch_size(self.batch_size)
        if batch_size >= self.info.count:  # full batch: order is irrelevant
            parts = list(self._read(self._pieces()))
            yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            return
        yield from self._streamed(epoch, batch_size)

    def _streamed(self, epoch: int, batch_size: int) -> Iterator[Batch]:
        """Shards in a shuffled order through a bounded shuffle buffer. Every process yields
        as many batches as a single one would (the last ones may be short or empty)."""
        steps = -(-self.info.count // batch_size)
        b = max(batch_size // self.part.world, -(-len(self) // steps))  # its part of a batch
        gen = epoch_generator(self.seed + 7919 * self.part.rank, epoch)
        pieces = self._pieces()
        order = torch.randperm(len(pieces), generator=gen).tolist()
        shape = tuple(self.info.example_shape)
        pool_x, pool_y = torch.zeros(0, *shape), torch.zeros(0, dtype=torch.int64)
        limit, done = self.options.shuffle_buffer, 0
        for x, y in self._read([pieces[i] for i in order]):
            pool_x, pool_y = torch.cat([pool_x, x]), torch.cat([pool_y, y])
            perm = torch.randperm(len(pool_y), generator=gen)
            pool_x, pool_y = pool_x[perm], pool_y[perm]
            ready = max(len(pool_y) - limit, 0) // b * b  # keep at most `limit` for mixing
            for start in range(0, ready, b):
                yield pool_x[start:start + b], pool_y[start:start + b]
                done += 1
            pool_x, pool_y = pool_x[ready:], pool_y[ready:]
        for start in range(0, max(len(pool_y), 1), b):
            if done < steps:
                yield pool_x[start:start + b], pool_y[start:start + b]
                done += 1
        for _ in range(done, steps):  # equal counts across processes keep them in step
            yield pool_x[:0], pool_y[:0]
