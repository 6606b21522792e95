"""Streams: shards and a manifest, verified, prefetched, shuffled within bounded memory."""

from __future__ import annotations

import re

import pytest
import torch

from mfstore.batches import TensorBatches
from mfstore.config import StreamOptions
from mfstore.errors import IntegrityError
from mfstore.fixes import RepairFix
from mfstore.manifest import read_manifest, stream_id
from mfstore.store import Store
from mfstore.stream import StreamBatches, StreamWriter


def _write(store: Store, n: int = 1000, shard_bytes: int = 1000):
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 4)  # example i holds i
    y = torch.arange(n) % 10
    sid = stream_id("fp", ["a"])
    writer = StreamWriter(store, sid, "fp", ["a"], shard_bytes=shard_bytes)
    for split in ("train", "val", "test"):
        writer.write_split(split, TensorBatches(x, y, 1, eval_batch_size=37).ordered())
    assert read_manifest(store, sid) is None  # no manifest yet: incomplete
    return writer.finish(), x, y


@pytest.mark.parametrize("url", ["memory://stream-test", "local"])
def test_round_trip_in_order(tmp_path, url):
    store = Store(str(tmp_path) if url == "local" else url)
    manifest, x, y = _write(store)
    assert read_manifest(store, manifest.id) == manifest
    assert len(manifest.splits["train"].shards) > 10
    reader = StreamBatches(store, manifest, "train", 32, options=StreamOptions(ram_budget=0))
    got = list(reader.ordered())
    assert torch.equal(torch.cat([b[0] for b in got]), x)
    assert torch.equal(torch.cat([b[1] for b in got]), y)


def test_streamed_epochs_are_shuffled_complete_and_seeded(tmp_path):
    store = Store(str(tmp_path))
    manifest, _, _ = _write(store)
    options = StreamOptions(ram_budget=0, shuffle_buffer=100)
    reader = StreamBatches(store, manifest, "train", 64, seed=3, options=options)
    assert not reader.in_memory
    epochs = [[b[0][:, 0].long() for b in reader.batches(e)] for e in (0, 0, 1)]
    ids = [torch.cat(e) for e in epochs]
    assert sorted(ids[0].tolist()) == list(range(1000))
    assert all(len(b) == 64 for b in epochs[0][:-1])
    assert torch.equal(ids[0], ids[1]) and not torch.equal(ids[0], ids[2])
    assert not torch.equal(ids[0], torch.arange(1000))


def test_a_stream_under_the_ram_budget_orders_like_memory(tmp_path):
    store = Store(str(tmp_path))
    manifest, x, y = _write(store)
    reader = StreamBatches(store, manifest, "train", 64, seed=3)
    assert reader.in_memory
    memory = TensorBatches(x, y, 64, seed=3)
    for (a, b), (c, d) in zip(reader.batches(2), memory.batches(2), strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_a_damaged_shard_is_refused(tmp_path):
    store = Store(str(tmp_path))
    manifest, _, _ = _write(store)
    shard = manifest.splits["val"].shards[2]
    path = tmp_path / shard.path
    path.write_bytes(path.read_bytes()[:-4])
    reader = StreamBatches(store, manifest, "val", 64, options=StreamOptions(ram_budget=0))
    with pytest.raises(IntegrityError, match=re.escape(
            f"stream {manifest.id[:12]} is damaged: {path} is damaged: its sha256 is not "
            f"{shard.sha256[:12]}…; repair the store")) as err:
        list(reader.batches(0))
    assert err.value.fixes == (RepairFix(auto=True),)


def test_consumer_stopping_early_ends_the_prefetch_thread(tmp_path):
    import threading

    store = Store(str(tmp_path))
    manifest, _, _ = _write(store)
    reader = StreamBatches(store, manifest, "train", 8, options=StreamOptions(ram_budget=0))
    it = reader.batches(0)
    next(it)
    it.close()
    assert not any(t.name == "mfstore-prefetch" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("url", ["memory://stream-race", "local"])
def test_two_writers_of_one_stream_agree_on_the_first_complete_one(tmp_path, url):
    store = Store(str(tmp_path) if url == "local" else url)
    first, second = (StreamWriter(store, "race", "fp", ["a"], shard_bytes=100) for _ in range(2))
    for writer, offset in ((first, 0), (second, 1000)):
        x = torch.arange(offset, offset + 50, dtype=torch.float32)[:, None]
        writer.write_split("train", TensorBatches(x, torch.zeros(50, dtype=torch.long)).ordered())
    assert first.finish() == first.manifest
    assert second.finish() == first.manifest  # the second adopts the stream that stands
    assert not any(p.startswith(second.folder) for p in store.list("streams"))
    assert read_manifest(store, "race") == first.manifest
