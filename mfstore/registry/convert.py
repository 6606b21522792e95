"""Rows to plain records, and resolving `name@selector` to a row: the registry's boundary."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfstore.block_header import InputSignature
from mfstore.config import TrainingRun
from mfstore.errors import NotFoundError
from mfstore.fixes import ListFix
from mfstore.registry import rows as r
from mfstore.registry.records import (
    DatasetRecord,
    ExportRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
)
from mfstore.spec import LayerSpec

KINDS: dict[str, Any] = {"layer": r.LayerRow, "network": r.NetworkRow}
LISTINGS = {"layer": "layers", "network": "networks"}
MAX_VERSION = 2**31 - 1  # versions are 32-bit integers on every database


def _not_found(kind: str, message: str) -> NotFoundError:
    return NotFoundError(message, ListFix(LISTINGS[kind]))


def resolve(s: Session, kind: str, name: str, selector: str | None,
            live_only: bool = True) -> Any:
    """The row of `name@selector` (a version number, an alias, or None: the newest live)."""
    table = KINDS[kind]
    if selector is None:
        q = select(table).where(table.name == name, table.status != "deleted")
        row = s.scalars(q.order_by(table.version.desc()).limit(1)).first()
        if row is None:
            raise _not_found(kind, f"no {kind} named {name!r}")
        return row
    if re.fullmatch(r"[0-9]+", selector):
        version = int(selector) if len(selector) < 12 else MAX_VERSION + 1
    else:
        alias = s.get(r.AliasRow, (kind, name, selector))
        if alias is None:
            raise _not_found(kind, f"{kind} {name!r} has no version or alias {selector!r}")
        version = alias.version
    row = None if version > MAX_VERSION else s.scalars(
        select(table).where(table.name == name, table.version == version)).first()
    if row is None or (live_only and row.status == "deleted"):
        shown = selector if version > MAX_VERSION else version
        raise _not_found(kind, f"{kind} {name!r} has no version {shown}")
    return row


def _utc(when: datetime | None) -> datetime | None:
    """SQLite drops the zone; every stored time is UTC."""
    return when.replace(tzinfo=timezone.utc) if when and when.tzinfo is None else when


def dataset_record(x: r.DatasetRow) -> DatasetRecord:
    return DatasetRecord(x.name, x.fingerprint, x.source, x.format, tuple(x.input_shape),
                         x.classes, dict(x.counts), dict(x.normalizer), x.stream_id,
                         dict(x.options), x.class_names, _utc(x.created))


def layer_record(x: r.LayerRow) -> LayerVersion:
    return LayerVersion(x.name, x.version, x.block_sha256, x.digest, LayerSpec.from_dict(x.spec),
                        InputSignature.from_dict(x.signature), x.dataset, dict(x.config),
                        dict(x.metrics), x.status, x.repairs, x.note, _utc(x.created),
                        None if x.run is None else TrainingRun.from_dict(x.run))


def network_record(x: r.NetworkRow) -> NetworkVersion:
    return NetworkVersion(x.name, x.version, tuple((n, int(v)) for n, v in x.layers), x.mode,
                          x.dataset, x.forced, x.note, x.status, _utc(x.created))


def export_record(x: r.ExportRow) -> ExportRecord:
    return ExportRecord(x.network, x.version, x.mode, x.upto, x.sha256, x.path, x.target,
                        _utc(x.created))


def stream_record(x: r.StreamRow) -> StreamRecord:
    return StreamRecord(x.id, x.dataset_fingerprint, tuple(x.chain), x.bytes, x.status,
                        _utc(x.created))
