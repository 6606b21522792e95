"""`Registry`: datasets, layer versions, aliases, networks and streams, as plain records.

Versions are integers 1, 2, … per name, allocated inside the write transaction (SQLite takes
the write lock at BEGIN) and retried on a unique-key conflict, so concurrent writers get
distinct versions and lose nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mfstore.block import InputSignature
from mfstore.errors import ConflictError, NotFoundError, RegistryError
from mfstore.registry import rows as r
from mfstore.registry.engine import open_engine
from mfstore.registry.records import (
    LAYER_STATUSES,
    DatasetRecord,
    ExportRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
)
from mfstore.spec import LayerSpec

T = TypeVar("T")
KINDS: dict[str, Any] = {"layer": r.LayerRow, "network": r.NetworkRow}


class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _retry(self, fn: Callable[[], T], attempts: int = 20) -> T:
        for attempt in range(attempts):
            try:
                return fn()
            except (SqlIntegrityError, OperationalError) as err:
                if attempt == attempts - 1:
                    raise RegistryError(f"registry {self.url!r} stayed busy: {err.orig}") from err
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    # datasets -----------------------------------------------------------------------------

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Register a dataset; the same name with the same fingerprint is a no-op."""
        with self._write() as s:
            row = s.get(r.DatasetRow, record.name)
            if row is not None:
                if row.fingerprint != record.fingerprint:
                    raise ConflictError(
                        f"dataset {record.name!r} already exists with other content "
                        f"(fingerprint {row.fingerprint[:12]}); choose another name")
                return _dataset(row)
            row = r.DatasetRow(
                name=record.name, fingerprint=record.fingerprint, source=record.source,
                format=record.format, input_shape=list(record.input_shape),
                classes=record.classes, counts=record.counts, normalizer=record.normalizer,
                stream_id=record.stream_id, options=record.options,
                class_names=record.class_names)
            s.add(row)
            s.flush()
            return _dataset(row)

    def dataset(self, name: str) -> DatasetRecord:
        with Session(self.engine) as s:
            row = s.get(r.DatasetRow, name)
            if row is None:
                raise NotFoundError(f"no dataset {name!r}; see `mfstore data list`, or import "
                                    f"it with `mfstore data add {name} URL`")
            return _dataset(row)

    def datasets(self) -> list[DatasetRecord]:
        with Session(self.engine) as s:
            rows = s.scalars(select(r.DatasetRow).order_by(r.DatasetRow.name))
            return [_dataset(x) for x in rows]

    # layers -------------------------------------------------------------------------------

    def add_layer(self, name: str, block_sha256: str, digest: str, spec: LayerSpec,
                  signature: InputSignature, dataset: str, config: dict[str, Any],
                  metrics: dict[str, Any], repairs: int | None = None,
                  note: str = "") -> LayerVersion:
        """Register the next version of layer `name`. Its block must already be stored."""
        def attempt() -> LayerVersion:
            with self._write() as s:
                row = r.LayerRow(
                    name=name, version=_next_version(s, r.LayerRow, name),
                    block_sha256=block_sha256, digest=digest, spec=spec.to_dict(),
                    signature=signature.to_dict(), dataset=dataset, config=config,
                    metrics=metrics, status="ok", repairs=repairs, note=note)
                s.add(row)
                s.flush()
                return _layer(row)
        return self._retry(attempt)

    def layer(self, name: str, selector: str | None = None) -> LayerVersion:
        """`selector`: a version number, an alias, or None for the newest live version."""
        with Session(self.engine) as s:
            return _layer(_resolve(s, "layer", name, selector))

    def layers(self, name: str | None = None) -> list[LayerVersion]:
        with Session(self.engine) as s:
            q = select(r.LayerRow).order_by(r.LayerRow.name, r.LayerRow.version)
            if name is not None:
                q = q.where(r.LayerRow.name == name)
            return [_layer(x) for x in s.scalars(q)]

    def set_layer_status(self, name: str, version: int, status: str) -> None:
        if status not in LAYER_STATUSES:
            raise ValueError(status)
        with self._write() as s:
            _resolve(s, "layer", name, str(version), live_only=False).status = status

    # aliases ------------------------------------------------------------------------------

    def set_alias(self, kind: str, name: str, alias: str, version: int) -> None:
        if alias.isdigit():
            raise ConflictError(f"alias {alias!r} looks like a version; use a name like prod")
        with self._write() as s:
            _resolve(s, kind, name, str(version))
            row = s.get(r.AliasRow, (kind, name, alias))
            if row is None:
                s.add(r.AliasRow(kind=kind, name=name, alias=alias, version=version))
            else:
                row.version = version

    def aliases(self, kind: str, name: str) -> dict[str, int]:
        with Session(self.engine) as s:
            q = select(r.AliasRow).where(r.AliasRow.kind == kind, r.AliasRow.name == name)
            return {a.alias: a.version for a in s.scalars(q)}

    # networks -----------------------------------------------------------------------------

    def add_network(self, name: str, layers: list[tuple[str, int]], mode: str, dataset: str,
                    forced: bool = False, note: str = "") -> NetworkVersion:
        def attempt() -> NetworkVersion:
            with self._write() as s:
                row = r.NetworkRow(name=name, version=_next_version(s, r.NetworkRow, name),
                                   layers=[list(x) for x in layers], mode=mode, dataset=dataset,
                                   forced=forced, note=note, status="ok")
                s.add(row)
                s.flush()
                return _network(row)
        return self._retry(attempt)

    def network(self, name: str, selector: str | None = None) -> NetworkVersion:
        with Session(self.engine) as s:
            return _network(_resolve(s, "network", name, selector))

    def networks(self, name: str | None = None) -> list[NetworkVersion]:
        with Session(self.engine) as s:
            q = select(r.NetworkRow).order_by(r.NetworkRow.name, r.NetworkRow.version)
            if name is not None:
                q = q.where(r.NetworkRow.name == name)
            return [_network(x) for x in s.scalars(q)]

    def set_network_status(self, name: str, version: int, status: str) -> None:
        with self._write() as s:
            _resolve(s, "network", name, str(version), live_only=False).status = status

    # exports ------------------------------------------------------------------------------

    def add_export(self, record: ExportRecord) -> ExportRecord:
        with self._write() as s:
            row = r.ExportRow(network=record.network, version=record.version, mode=record.mode,
                              upto=record.upto, sha256=record.sha256, path=record.path,
                              target=record.target)
            s.add(row)
            s.flush()
            return _export(row)

    def exports(self, network: str | None = None) -> list[ExportRecord]:
        with Session(self.engine) as s:
            q = select(r.ExportRow).order_by(r.ExportRow.id)
            if network is not None:
                q = q.where(r.ExportRow.network == network)
            return [_export(x) for x in s.scalars(q)]

    # streams ------------------------------------------------------------------------------

    def add_stream(self, record: StreamRecord) -> None:
        """Record a complete stream (its manifest is already stored)."""
        with self._write() as s:
            if s.get(r.StreamRow, record.id) is None:
                s.add(r.StreamRow(id=record.id, dataset_fingerprint=record.dataset_fingerprint,
                                  chain=list(record.chain), bytes=record.bytes))

    def stream(self, stream_id: str) -> StreamRecord | None:
        with Session(self.engine) as s:
            row = s.get(r.StreamRow, stream_id)
            return None if row is None else _stream(row)

    def streams(self) -> list[StreamRecord]:
        with Session(self.engine) as s:
            return [_stream(x) for x in s.scalars(select(r.StreamRow).order_by(r.StreamRow.id))]

    def delete_stream(self, stream_id: str) -> None:
        with self._write() as s:
            s.execute(delete(r.StreamRow).where(r.StreamRow.id == stream_id))


def _next_version(s: Session, table: Any, name: str) -> int:
    return int(s.scalar(select(func.max(table.version)).where(table.name == name)) or 0) + 1


def _resolve(s: Session, kind: str, name: str, selector: str | None,
             live_only: bool = True) -> Any:
    table = KINDS[kind]
    what = "layer" if kind == "layer" else "network"
    listing = "mfstore layers list" if kind == "layer" else "mfstore nets list"
    if selector is None:
        q = select(table).where(table.name == name, table.status != "deleted")
        row = s.scalars(q.order_by(table.version.desc()).limit(1)).first()
        if row is None:
            raise NotFoundError(f"no {what} named {name!r}; see `{listing}`")
        return row
    if selector.isdigit():
        version = int(selector)
    else:
        alias = s.get(r.AliasRow, (kind, name, selector))
        if alias is None:
            raise NotFoundError(f"{what} {name!r} has no version or alias {selector!r}; "
                                f"see `{listing}`")
        version = alias.version
    row = s.scalars(select(table).where(table.name == name, table.version == version)).first()
    if row is None or (live_only and row.status == "deleted"):
        raise NotFoundError(f"{what} {name!r} has no version {version}; see `{listing}`")
    return row


def _utc(when: datetime | None) -> datetime | None:
    """SQLite drops the zone; every stored time is UTC."""
    return when.replace(tzinfo=timezone.utc) if when and when.tzinfo is None else when


def _dataset(x: r.DatasetRow) -> DatasetRecord:
    return DatasetRecord(x.name, x.fingerprint, x.source, x.format, tuple(x.input_shape),
                         x.classes, dict(x.counts), dict(x.normalizer), x.stream_id,
                         dict(x.options), x.class_names, _utc(x.created))


def _layer(x: r.LayerRow) -> LayerVersion:
    return LayerVersion(x.name, x.version, x.block_sha256, x.digest, LayerSpec.from_dict(x.spec),
                        InputSignature.from_dict(x.signature), x.dataset, dict(x.config),
                        dict(x.metrics), x.status, x.repairs, x.note, _utc(x.created))


def _network(x: r.NetworkRow) -> NetworkVersion:
    return NetworkVersion(x.name, x.version, tuple((n, int(v)) for n, v in x.layers), x.mode,
                          x.dataset, x.forced, x.note, x.status, _utc(x.created))


def _export(x: r.ExportRow) -> ExportRecord:
    return ExportRecord(x.network, x.version, x.mode, x.upto, x.sha256, x.path, x.target,
                        _utc(x.created))


def _stream(x: r.StreamRow) -> StreamRecord:
    return StreamRecord(x.id, x.dataset_fingerprint, tuple(x.chain), x.bytes, _utc(x.created))
