"""`import_dataset`: read a source once, write it as stream(0), register it."""

from __future__ import annotations

import re

from mfstore.batches import TensorBatches
from mfstore.dataset import DatasetOptions, load_dataset
from mfstore.errors import ConfigError
from mfstore.registry import DatasetRecord, StreamRecord
from mfstore.stream import SPLITS, StreamWriter, read_manifest, stream_id
from mfstore.workspace import Workspace

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise ConfigError(f"invalid {what} name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def import_dataset(ws: Workspace, name: str, url: str,
                   options: DatasetOptions | None = None) -> DatasetRecord:
    """Import `url` as dataset `name`. Importing the same content again is a no-op."""
    check_name(name, "dataset")
    dataset = load_dataset(url, options)
    sid = stream_id(dataset.fingerprint, [])
    manifest = read_manifest(ws.store, sid)
    if manifest is None:
        writer = StreamWriter(ws.store, sid, dataset.fingerprint, [],
                              ws.stream_options.shard_bytes)
        for split in SPLITS:
            part = getattr(dataset, split)
            writer.write_split(split, TensorBatches(part.x, part.y, 1).ordered())
        manifest = writer.finish()
    ws.registry.add_stream(StreamRecord(sid, dataset.fingerprint, (), manifest.total_bytes))
    return ws.registry.add_dataset(DatasetRecord(
        name=name, fingerprint=dataset.fingerprint, source=url, format=dataset.format,
        input_shape=dataset.input_shape, classes=dataset.classes,
        counts={s: len(getattr(dataset, s)) for s in SPLITS},
        normalizer=dataset.normalizer.to_dict(), stream_id=sid,
        options={k: v for k, v in vars(dataset.options).items()},
        class_names=dataset.class_names))
