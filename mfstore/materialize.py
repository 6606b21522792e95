"""Streams on demand: the dataset seen through a chain of layers, written once and reused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from mfstore.config import TrainConfig, resolve_device
from mfstore.errors import Fix, IntegrityError
from mfstore.modules import MFLayer
from mfstore.registry import DatasetRecord, LayerVersion, StreamRecord
from mfstore.stream import SPLITS, Manifest, StreamBatches, StreamWriter, read_manifest, stream_id
from mfstore.training import layer_output_batches
from mfstore.workspace import Workspace


def dataset_stream(ws: Workspace, dataset: DatasetRecord) -> Manifest:
    manifest = read_manifest(ws.store, dataset.stream_id)
    if manifest is None:
        raise IntegrityError(f"the imported examples of dataset {dataset.name!r} (stream "
                             f"{dataset.stream_id[:12]}) are missing from the store",
                             Fix("repair", {"auto": True}),
                             Fix("import", {"name": dataset.name, "url": dataset.source}))
    return manifest


def write_outputs(ws: Workspace, layer: MFLayer, source: Manifest, sid: str, dataset_fp: str,
                  chain: Sequence[str], device: torch.device) -> Manifest:
    """Every split of `source` through `layer`, written as stream `sid` (bounded memory)."""
    writer = StreamWriter(ws.store, sid, dataset_fp, chain, ws.stream_options.shard_bytes)
    for split in SPLITS:
        reader = StreamBatches(ws.store, source, split, 1, options=ws.stream_options)
        writer.write_split(split, layer_output_batches(layer, reader, device))
    return writer.finish()


def next_stream(ws: Workspace, dataset: DatasetRecord, source: Manifest, layer: LayerVersion,
                device: str = "auto", trained: MFLayer | None = None,
                rewrite: bool = False) -> Manifest:
    """The stream `layer` makes of `source` (which `source.chain` made of `dataset`), written
    once (or again, with `rewrite`) and reused; `trained` saves reading back a block that is
    already in memory. A stream is recorded when it is written."""
    chain = [*source.chain, layer.digest]
    sid = stream_id(dataset.fingerprint, chain)
    found = None if rewrite else read_manifest(ws.store, sid)
    if found is None:
        module = trained if trained is not None else ws.load_block(layer).to_layer()
        found = write_outputs(ws, module, source, sid, dataset.fingerprint, chain,
                              resolve_device(device))
        ws.registry.add_stream(StreamRecord(sid, dataset.fingerprint, tuple(chain),
                                            found.total_bytes))
    return found


def chain_stream(ws: Workspace, dataset: DatasetRecord, upstream: Sequence[LayerVersion],
                 device: str = "auto") -> Manifest:
    """The stream of `dataset` through `upstream`; missing prefixes are computed and kept."""
    manifest = dataset_stream(ws, dataset)
    for layer in upstream:
        manifest = next_stream(ws, dataset, manifest, layer, device)
    return manifest


def split_sources(ws: Workspace, manifest: Manifest,
                  config: TrainConfig) -> dict[str, StreamBatches]:
    """Readers of every split; shards are page-locked when training on CUDA."""
    options = ws.stream_options
    if resolve_device(config.device).type == "cuda":
        options = replace(options, pin_memory=True)
    return {split: StreamBatches(ws.store, manifest, split, config.batch_size, config.seed,
                                 options, config.eval_batch_size)
            for split in SPLITS}
