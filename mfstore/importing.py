"""`import_dataset`: read a source once, write it as stream(0), register it; and rebuild a
dataset's stream(0) from its recorded source."""

from __future__ import annotations

from mfstore.batches import TensorBatches
from mfstore.dataset import Dataset, DatasetOptions, load_dataset
from mfstore.errors import DataValidationError, Fix
from mfstore.names import check_name
from mfstore.registry import DatasetRecord, StreamRecord
from mfstore.stream import SPLITS, Manifest, StreamWriter, stream_id, stream_problems
from mfstore.workspace import Workspace


def write_examples(ws: Workspace, dataset: Dataset) -> Manifest:
    """Write the dataset's splits as its stream(0) and record the stream."""
    sid = stream_id(dataset.fingerprint, [])
    writer = StreamWriter(ws.store, sid, dataset.fingerprint, [], ws.stream_options.shard_bytes)
    for split in SPLITS:
        part = getattr(dataset, split)
        writer.write_split(split, TensorBatches(part.x, part.y, 1).ordered())
    manifest = writer.finish()
    ws.registry.add_stream(StreamRecord(sid, dataset.fingerprint, (), manifest.total_bytes))
    return manifest


def import_dataset(ws: Workspace, name: str, url: str,
                   options: DatasetOptions | None = None) -> DatasetRecord:
    """Import `url` as dataset `name`. Importing the same content again is a no-op, except
    that a missing or damaged stream(0) is written anew."""
    check_name(name, "dataset")
    dataset = load_dataset(url, options)
    sid = stream_id(dataset.fingerprint, [])
    if stream_problems(ws.store, sid):
        write_examples(ws, dataset)
    return ws.registry.add_dataset(DatasetRecord(
        name=name, fingerprint=dataset.fingerprint, source=url, format=dataset.format,
        input_shape=dataset.input_shape, classes=dataset.classes,
        counts={s: len(getattr(dataset, s)) for s in SPLITS},
        normalizer=dataset.normalizer.to_dict(), stream_id=sid,
        options=dict(vars(dataset.options)), class_names=dataset.class_names))


def reimport(ws: Workspace, record: DatasetRecord) -> Manifest:
    """Rebuild stream(0) of a registered dataset from its recorded source and options; the
    source must still hold the same examples (same fingerprint)."""
    dataset = load_dataset(record.source, DatasetOptions(**record.options))
    if dataset.fingerprint != record.fingerprint:
        raise DataValidationError(
            f"{record.source!r} no longer holds the examples of dataset {record.name!r} "
            f"(fingerprint {dataset.fingerprint[:12]}, recorded {record.fingerprint[:12]})",
            Fix("import", {"name": record.name, "url": "URL"}))
    return write_examples(ws, dataset)
