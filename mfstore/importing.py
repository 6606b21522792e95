"""`import_dataset`: read a source once, write it as stream(0), register it; and rebuild a
dataset's stream(0) from its recorded source."""

from __future__ import annotations

from dataclasses import asdict

import torch

from mfstore.batches import TensorBatches
from mfstore.dataset import Dataset, DatasetOptions, Normalizer, Split, load_dataset
from mfstore.errors import (
    DataFormatError,
    DataSourceError,
    DataValidationError,
    IntegrityError,
    NotFoundError,
)
from mfstore.fixes import ImportFix, ListFix
from mfstore.manifest import SPLITS, Manifest, manifest_path, stream_id, stream_problems
from mfstore.names import NAME, check_name
from mfstore.readers import canonical
from mfstore.registry import DatasetRecord, StreamRecord
from mfstore.stream import StreamBatches, StreamWriter
from mfstore.stream_chain import dataset_stream
from mfstore.workspace import Workspace


def write_examples(ws: Workspace, dataset: Dataset, replace: bool = False) -> Manifest:
    """Write the dataset's splits as its stream(0) (`replace`: over a damaged one) and record
    the stream."""
    sid = stream_id(dataset.fingerprint, [])
    writer = StreamWriter(ws.store, sid, dataset.fingerprint, [], ws.stream_options.shard_bytes)
    for split in SPLITS:
        part = getattr(dataset, split)
        writer.write_split(split, TensorBatches(part.x, part.y, 1).ordered())
    manifest = writer.finish(replace)
    ws.registry.add_stream(StreamRecord(sid, dataset.fingerprint, (), manifest.total_bytes))
    return manifest


def import_dataset(ws: Workspace, name: str, url: str,
                   options: DatasetOptions | None = None) -> DatasetRecord:
    """Import `url` as dataset `name`. Importing the same content again is a no-op, except
    that a missing or damaged stream(0) is written anew."""
    check_name(name, "dataset")
    dataset = load_dataset(url, options)
    ws.registry.check_dataset_name(name, dataset.fingerprint)  # before a stream is written
    sid = stream_id(dataset.fingerprint, [])
    counts = {s: len(getattr(dataset, s)) for s in SPLITS}
    if stream_problems(ws.store, sid, counts):
        write_examples(ws, dataset, replace=read_manifest_quietly(ws, sid))
    return ws.registry.add_dataset(DatasetRecord(
        name=name, fingerprint=dataset.fingerprint, source=canonical(url), format=dataset.format,
        input_shape=dataset.input_shape, classes=dataset.classes,
        counts=counts,
        normalizer=dataset.normalizer.to_dict(), stream_id=sid,
        options=dict(vars(dataset.options)), class_names=dataset.class_names))


def reimport(ws: Workspace, record: DatasetRecord) -> Manifest:
    """Rebuild stream(0) of a registered dataset from its recorded source and options; the
    source must still hold the same examples (same fingerprint)."""
    try:
        dataset = load_dataset(record.source, DatasetOptions(**record.options))
    except (DataSourceError, DataFormatError) as err:
        raise IntegrityError(
            f"the examples of dataset {record.name!r} cannot be read again from its recorded "
            f"source {record.source!r} ({err.message})",
            ImportFix(record.name, options=dict(record.options))) from err
    if dataset.fingerprint != record.fingerprint:
        raise DataValidationError(
            f"{record.source!r} no longer holds the examples of dataset {record.name!r} "
            f"(fingerprint {dataset.fingerprint[:12]}, recorded {record.fingerprint[:12]})",
            ImportFix(record.name, options=dict(record.options)))
    return write_examples(ws, dataset, replace=True)


def read_manifest_quietly(ws: Workspace, sid: str) -> bool:
    """Whether stream `sid` has a manifest (readable or not)."""
    return ws.store.exists(manifest_path(sid))


def load_registered(ws: Workspace, record: DatasetRecord) -> Dataset:
    """A registered dataset, read back from its stream(0) into memory (normalised already)."""

    manifest = dataset_stream(ws, record)

    def split(name: str) -> Split:
        parts = list(StreamBatches(ws.store, manifest, name, options=ws.stream_options).ordered())
        return Split(torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]))

    return Dataset(record.source, record.format, split("train"), split("val"), split("test"),
                   tuple(record.input_shape), record.classes,
                   Normalizer.from_dict(record.normalizer), record.fingerprint,
                   record.fingerprint, DatasetOptions(**record.options), record.class_names)


def dataset_for_training(data: str, options: DatasetOptions | None,
                         ws: Workspace | None) -> Dataset:
    """What the data option means to a command that trains in memory: a registered dataset's name
    (when there is a workspace), else a URL or `sklearn:NAME` read on the fly."""
    if ws is not None:
        try:
            return load_registered(ws, ws.registry.dataset(data))
        except NotFoundError:
            pass
    try:
        return load_dataset(data, options)
    except DataSourceError as err:
        if NAME.fullmatch(data) and not any(c in data for c in ".:/"):  # a name, not a path
            raise DataSourceError(f"there is no registered dataset and no file named {data!r}",
                                  ListFix("datasets"),
                                  ImportFix(data, options={} if options is None
                                            else asdict(options))) from err
        raise


def registered_dataset(ws: Workspace, data: str) -> DatasetRecord:
    """What the data option means to a command that registers what it trains: a registered
    dataset's name; a URL must be imported first, under a name."""
    try:
        return ws.registry.dataset(data)
    except NotFoundError as err:
        if not NAME.fullmatch(data):
            raise NotFoundError(f"{data!r} is a data source, not a registered dataset; what is "
                                "registered must be trained on a registered dataset",
                                ImportFix(url=data)) from err
        raise
