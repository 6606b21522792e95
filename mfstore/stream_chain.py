"""Streams of a chain: the dataset seen through a chain of layers, written to the store when a
layer is to be trained on it (or asked for), recorded once, and reused by every later reader.

    stream(0) = the imported examples ──layer 1──► stream(l1) ──layer 2──► stream(l1, l2) …

A stream's id is a digest of (dataset fingerprint, the chain's weights digests), so the same
layers over the same data always name the same stream. `StreamInputs` is the store's
`LayerInputs`: training a layer reads its chain's stream, and the next layer's stream is
written when (and only when) a next layer is trained on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mfstore.batches import Part
from mfstore.block import layer_tensors, load_block, weights_digest
from mfstore.config import TrainConfig
from mfstore.errors import IntegrityError
from mfstore.fixes import ImportFix, RepairFix
from mfstore.manifest import (
    SPLITS,
    Manifest,
    count_problems,
    merge_splits,
    read_manifest,
    stream_id,
)
from mfstore.modules import MFLayer
from mfstore.registry import DatasetRecord, LayerVersion, StreamRecord
from mfstore.run_context import RunContext
from mfstore.stream import StreamBatches, StreamWriter, release_freed_memory
from mfstore.training import layer_output_batches
from mfstore.workspace import Workspace


def dataset_stream(ws: Workspace, dataset: DatasetRecord) -> Manifest:
    """The imported examples of `dataset` (stream(0))."""
    manifest = read_manifest(ws.store, dataset.stream_id)
    if manifest is None:
        raise IntegrityError(f"the imported examples of dataset {dataset.name!r} (stream "
                             f"{dataset.stream_id[:12]}) are missing from the store",
                             RepairFix(auto=True),
                             ImportFix(dataset.name, dataset.source, dict(dataset.options)))
    return check_counts(manifest, dataset)


def check_counts(manifest: Manifest, dataset: DatasetRecord) -> Manifest:
    """`manifest`, unless a split does not hold every example of `dataset` (a stream whose
    manifest was edited, say): then the stream is damaged."""
    problems = count_problems(manifest, dataset.counts)
    if problems:
        raise IntegrityError(f"stream {manifest.id[:12]} of dataset {dataset.name!r} is damaged "
                             f"({'; '.join(problems)})", RepairFix(auto=True))
    return manifest


def write_outputs(ws: Workspace, layer: MFLayer, source: Manifest, sid: str, dataset_fp: str,
                  chain: Sequence[str], ctx: RunContext, replace: bool = False) -> Manifest:
    """Every split of `source` through `layer`, written as stream `sid` (bounded memory).
    Several processes write at once, each its share into shards of its own; rank 0 writes
    the manifest naming them all, in order, once every share is written."""
    part = ctx.part
    writer = StreamWriter(ws.store, sid, dataset_fp, chain, ws.stream_options.shard_bytes)
    for split in SPLITS:
        reader = StreamBatches(ws.store, source, split, options=ws.stream_options, part=part)
        writer.write_split(split, layer_output_batches(layer, reader, ctx.device))
    if part.world == 1:
        return writer.finish(replace)
    shares = ctx.gather(writer.manifest.splits)  # every rank's, in rank order

    def finish() -> Manifest:
        writer.manifest.splits = {split: merge_splits([s[split] for s in shares])
                                  for split in SPLITS}
        return writer.finish(replace)
    return ctx.on_main(finish)


def next_stream(ws: Workspace, dataset: DatasetRecord, source: Manifest, digest: str,
                module: MFLayer | None, ctx: RunContext, rewrite: bool = False,
                version: LayerVersion | None = None) -> Manifest:
    """The stream the layer with weights `digest` makes of `source`: read if it exists (unless
    `rewrite`), else computed with `module` (or the block of `version`), written and
    recorded."""
    chain = [*source.chain, digest]
    sid = stream_id(dataset.fingerprint, chain)
    found = None if rewrite else ctx.on_main(lambda: read_manifest(ws.store, sid))
    if found is not None:
        check_counts(found, dataset)
    if found is None:
        if module is None:
            assert version is not None
            module = load_block(ws, version).to_layer()
        found = write_outputs(ws, module, source, sid, dataset.fingerprint, chain, ctx,
                              replace=rewrite)
    elif not ctx.main or ws.registry.stream(sid) is not None:
        return found
    if ctx.main:
        ws.registry.add_stream(StreamRecord(sid, dataset.fingerprint, tuple(chain),
                                            found.total_bytes))  # recorded once
    return found


def chain_stream(ws: Workspace, dataset: DatasetRecord, upstream: Sequence[LayerVersion],
                 ctx: RunContext) -> Manifest:
    """The stream of `dataset` through `upstream`; missing prefixes are computed and kept."""
    manifest = dataset_stream(ws, dataset)
    for layer in upstream:
        manifest = next_stream(ws, dataset, manifest, layer.digest, None, ctx, version=layer)
    return manifest


@dataclass
class StreamInputs:
    """`LayerInputs` read from a stream of the store: batched and shuffled as `config` says;
    shards page-locked when training on CUDA."""

    ws: Workspace
    dataset: DatasetRecord
    manifest: Manifest
    config: TrainConfig
    ctx: RunContext
    part: Part | None = None  # this process's share (default: `ctx.part`)
    splits: dict[str, StreamBatches] = field(init=False)

    def __post_init__(self) -> None:
        options, device = self.ws.stream_options, self.ctx.device
        if device.type == "cuda":
            options = replace(options, pin_memory=True)
        part = self.part or self.ctx.part
        held_on = device if device.type == "cuda" else None  # a GPU: held there
        self.splits = {split: StreamBatches(self.ws.store, self.manifest, split,
                                            self.config.batch_size, self.config.seed, options,
                                            self.config.eval_batch_size, part, held_on)
                       for split in SPLITS}

    @classmethod
    def of_chain(cls, ws: Workspace, dataset: DatasetRecord,
                 upstream: Sequence[LayerVersion], config: TrainConfig,
                 ctx: RunContext, part: Part | None = None) -> StreamInputs:
        return cls(ws, dataset, chain_stream(ws, dataset, upstream, ctx), config, ctx, part)

    @property
    def train(self) -> StreamBatches:
        return self.splits["train"]

    @property
    def val(self) -> StreamBatches:
        return self.splits["val"]

    @property
    def test(self) -> StreamBatches:
        return self.splits["test"]

    def after(self, layer: MFLayer) -> StreamInputs:
        digest = weights_digest(layer.spec, layer_tensors(layer))
        for split in self.splits.values():  # what this layer held goes before the next is made
            split.release()
        manifest = next_stream(self.ws, self.dataset, self.manifest, digest, layer, self.ctx)
        release_freed_memory()
        return StreamInputs(self.ws, self.dataset, manifest, self.config, self.ctx, self.part)
