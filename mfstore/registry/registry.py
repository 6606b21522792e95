"""`Registry`: datasets, layer versions, aliases, networks, streams and exports, as plain
records.

Every write is one transaction that is either idempotent or retried on a conflict: versions
are allocated inside the transaction (SQLite takes the write lock at BEGIN IMMEDIATE;
PostgreSQL raises a unique violation that the retry resolves), and a row another process
inserted first is read back instead of failing. Database errors become one-line
`RegistryError`s that never show the password.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from mfstore.block_header import InputSignature
from mfstore.config import TrainingRun
from mfstore.errors import ConflictError, NotFoundError, RegistryError
from mfstore.fixes import Fix, ImportFix, ListFix
from mfstore.names import check_alias
from mfstore.registry import rows as r
from mfstore.registry.convert import (
    dataset_record,
    export_record,
    layer_record,
    network_record,
    resolve,
    stream_record,
)
from mfstore.registry.engine import (
    WRITE,
    disk_full,
    display_url,
    make_engine,
    registry_error,
    snapshot_engine,
)
from mfstore.registry.records import (
    LAYER_STATUSES,
    STREAM_STATUSES,
    DatasetRecord,
    ExportRecord,
    LayerVersion,
    NetworkVersion,
    StreamRecord,
    parse_ref,
)
from mfstore.registry.schema import ensure_schema
from mfstore.spec import LayerSpec

T = TypeVar("T")
RETRIES = 30
LINEAGE_LOCK = 0x6D66_6C69_6E65  # pg_advisory_xact_lock key: registrations vs deletions


def _transient(err: OperationalError) -> bool:
    """A lock or serialisation conflict that a retry resolves (not a read-only or gone DB)."""
    text = str(err.orig).lower()
    return any(w in text for w in ("locked", "busy", "deadlock", "could not serialize"))


def _conflict(err: SqlIntegrityError) -> bool:
    """A unique-key conflict with a concurrent writer (a retry re-reads and resolves it), as
    opposed to a row that breaks another constraint."""
    orig = err.orig
    return type(orig).__name__ == "UniqueViolation" or "UNIQUE constraint" in str(orig)


def _lineage_lock(s: Session) -> None:
    """Serialise registrations and deletions of layers and networks: what a deletion finds
    unused is not used by a registration committing meanwhile. SQLite's writers are
    serialised already (BEGIN IMMEDIATE)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LINEAGE_LOCK})


class Registry:
    def __init__(self, url: str, create: bool = False) -> None:
        """Open the registry at `url` (any SQLAlchemy URL). Only `create=True` makes one in an
        empty database; the schema is brought up to date under a lock."""
        self.url, self.shown = url, display_url(url)
        self.engine, self.snapshot = make_engine(url, create), False
        try:
            ensure_schema(self.engine, url, create)
        except RegistryError as err:
            snapshot = None if create or not disk_full(err) else snapshot_engine(url)
            if snapshot is None:
                raise
            self.engine, self.snapshot = snapshot, True  # a full disk: reads answer, writes
            # say why not
        self._writer = self.engine.execution_options(**WRITE)
        with self._read() as s:
            self.id = str(s.scalar(select(r.MetaRow.value).where(r.MetaRow.key == "registry_id")))

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self.engine) as session:
                yield session
        except SQLAlchemyError as err:
            raise registry_error(self.url, err, "read") from err

    def _write(self, fn: Callable[[Session], T], lineage: bool = False) -> T:
        """Run `fn` in one write transaction, retried on conflicts and busy locks; with
        `lineage`, under the lock that orders registrations and deletions."""
        if self.snapshot:
            raise RegistryError(f"cannot write to registry {self.shown!r}: the disk holding it "
                                "is full; free some space")
        for attempt in range(RETRIES):
            try:
                with Session(self._writer, expire_on_commit=False) as s, s.begin():
                    if lineage:
                        _lineage_lock(s)
                    return fn(s)
            except SqlIntegrityError as err:
                if not _conflict(err):
                    raise registry_error(self.url, err, "write to") from err
                last: SQLAlchemyError = err
            except OperationalError as err:
                if not _transient(err):
                    raise registry_error(self.url, err, "write to") from err
                last = err
            except SQLAlchemyError as err:
                raise registry_error(self.url, err, "write to") from err
            time.sleep(0.01 * (attempt + 1))
        reason = str(getattr(last, "orig", last)).splitlines()[0]
        raise RegistryError(f"registry {self.shown!r} stayed busy: {reason}") from last

    # datasets -----------------------------------------------------------------------------

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Register a dataset; the same name with the same fingerprint is a no-op."""
        def attempt(s: Session) -> DatasetRecord:
            row = s.get(r.DatasetRow, record.name)
            if row is not None:
                if row.fingerprint != record.fingerprint:
                    raise _dataset_taken(record.name, row.fingerprint)
                return dataset_record(row)
            row = r.DatasetRow(
                name=record.name, fingerprint=record.fingerprint, source=record.source,
                format=record.format, input_shape=list(record.input_shape),
                classes=record.classes, counts=record.counts, normalizer=record.normalizer,
                stream_id=record.stream_id, options=record.options,
                class_names=record.class_names)
            s.add(row)
            s.flush()
            return dataset_record(row)
        return self._write(attempt)

    def check_dataset_name(self, name: str, fingerprint: str) -> None:
        """Refuse `name` for content `fingerprint` when a dataset of other content holds it
        (before anything is written for it; `add_dataset` checks again)."""
        with self._read() as s:
            row = s.get(r.DatasetRow, name)
            if row is not None and row.fingerprint != fingerprint:
                raise _dataset_taken(name, row.fingerprint)

    def dataset(self, name: str) -> DatasetRecord:
        with self._read() as s:
            row = s.get(r.DatasetRow, name)
            if row is None:
                raise _missing(f"no dataset {name!r}", "datasets",
                               ImportFix(name))
            return dataset_record(row)

    def datasets(self) -> list[DatasetRecord]:
        with self._read() as s:
            rows = s.scalars(select(r.DatasetRow).order_by(r.DatasetRow.name))
            return [dataset_record(x) for x in rows]

    # layers -------------------------------------------------------------------------------

    def add_layer(self, name: str, block_sha256: str, digest: str, spec: LayerSpec,
                  signature: InputSignature, dataset: str, config: dict[str, Any],
                  metrics: dict[str, Any], repairs: int | None = None,
                  note: str = "", run: TrainingRun | None = None) -> LayerVersion:
        """Register the next version of layer `name`. Its block must already be stored, and the
        layers it was trained over (`signature.chain`) must still be live."""
        def attempt(s: Session) -> LayerVersion:
            _require_live_digests(s, signature.chain, name)
            row = r.LayerRow(
                name=name, version=_next_version(s, r.LayerRow, name),
                block_sha256=block_sha256, digest=digest, spec=spec.to_dict(),
                signature=signature.to_dict(), dataset=dataset, config=config,
                metrics=metrics, status="ok", repairs=repairs, note=note,
                run=None if run is None else run.to_dict())
            s.add(row)
            s.flush()
            return layer_record(row)
        return self._write(attempt, lineage=True)

    def layer(self, name: str, selector: str | None = None) -> LayerVersion:
        """`selector`: a version number, an alias, or None for the newest live version."""
        with self._read() as s:
            return layer_record(resolve(s, "layer", name, selector))

    def layers(self, name: str | None = None) -> list[LayerVersion]:
        with self._read() as s:
            q = select(r.LayerRow).order_by(r.LayerRow.name, r.LayerRow.version)
            if name is not None:
                q = q.where(r.LayerRow.name == name)
            return [layer_record(x) for x in s.scalars(q)]

    def set_layer_status(self, name: str, version: int, status: str) -> None:
        if status not in LAYER_STATUSES:
            raise ValueError(status)

        def attempt(s: Session) -> None:
            resolve(s, "layer", name, str(version), live_only=False).status = status
        self._write(attempt)

    # aliases ------------------------------------------------------------------------------

    def set_alias(self, kind: str, name: str, alias: str, version: int) -> None:
        check_alias(alias)

        def attempt(s: Session) -> None:
            resolve(s, kind, name, str(version))
            row = s.get(r.AliasRow, (kind, name, alias))
            if row is None:
                s.add(r.AliasRow(kind=kind, name=name, alias=alias, version=version))
            else:
                row.version = version
        self._write(attempt)

    def aliases(self, kind: str, name: str) -> dict[str, int]:
        with self._read() as s:
            q = select(r.AliasRow).where(r.AliasRow.kind == kind, r.AliasRow.name == name)
            return {a.alias: a.version for a in s.scalars(q)}

    def all_aliases(self, kind: str) -> dict[str, dict[str, int]]:
        """Every alias of every `kind` name in one query: {name: {alias: version}}."""
        out: dict[str, dict[str, int]] = {}
        with self._read() as s:
            for a in s.scalars(select(r.AliasRow).where(r.AliasRow.kind == kind)):
                out.setdefault(a.name, {})[a.alias] = a.version
        return out

    # networks -----------------------------------------------------------------------------

    def add_network(self, name: str, layers: list[tuple[str, int]], mode: str, dataset: str,
                    forced: bool = False, note: str = "") -> NetworkVersion:
        def attempt(s: Session) -> NetworkVersion:
            for layer, version in layers:
                resolve(s, "layer", layer, str(version))  # each must still be live
            row = r.NetworkRow(name=name, version=_next_version(s, r.NetworkRow, name),
                               layers=[list(x) for x in layers], mode=mode, dataset=dataset,
                               forced=forced, note=note, status="ok")
            s.add(row)
            s.flush()
            return network_record(row)
        return self._write(attempt, lineage=True)

    def network(self, name: str, selector: str | None = None) -> NetworkVersion:
        with self._read() as s:
            return network_record(resolve(s, "network", name, selector))

    def resolve_network(self, ref: str) -> NetworkVersion:
        """`NET`, `NET@3` or `NET@prod` (the newest live version for `NET`)."""
        return self.network(*parse_ref(ref))

    def network_layers(self, network: NetworkVersion) -> list[LayerVersion]:
        """The layer versions a network holds, input side first."""
        return [self.layer(name, str(version)) for name, version in network.layers]

    def networks(self, name: str | None = None) -> list[NetworkVersion]:
        with self._read() as s:
            q = select(r.NetworkRow).order_by(r.NetworkRow.name, r.NetworkRow.version)
            if name is not None:
                q = q.where(r.NetworkRow.name == name)
            return [network_record(x) for x in s.scalars(q)]

    def delete_unneeded(self, networks: list[tuple[str, int]], layers: list[tuple[str, int]],
                        keep: KeepRule) -> dict[str, str]:
        """In one transaction under the lineage lock: mark `networks` deleted, then those of
        `layers` that `keep` does not keep. `keep(live layers, live networks, leaving)` sees
        the live rows after the networks went and returns {layer ref: why it stays}."""
        def attempt(s: Session) -> dict[str, str]:
            for name, version in networks:
                resolve(s, "network", name, str(version), live_only=False).status = "deleted"
            s.flush()
            live = [layer_record(x) for x in s.scalars(
                select(r.LayerRow).where(r.LayerRow.status != "deleted"))]
            nets = [network_record(x) for x in s.scalars(
                select(r.NetworkRow).where(r.NetworkRow.status != "deleted"))]
            kept = keep(live, nets, {f"{n}@{v}" for n, v in layers})
            for name, version in layers:
                if f"{name}@{version}" not in kept:
                    resolve(s, "layer", name, str(version), live_only=False).status = "deleted"
            return kept
        return self._write(attempt, lineage=True)

    # exports ------------------------------------------------------------------------------

    def add_export(self, record: ExportRecord) -> ExportRecord:
        def attempt(s: Session) -> ExportRecord:
            row = r.ExportRow(network=record.network, version=record.version, mode=record.mode,
                              upto=record.upto, sha256=record.sha256, path=record.path,
                              target=record.target)
            s.add(row)
            s.flush()
            return export_record(row)
        return self._write(attempt)

    def exports(self, network: str | None = None) -> list[ExportRecord]:
        with self._read() as s:
            q = select(r.ExportRow).order_by(r.ExportRow.id)
            if network is not None:
                q = q.where(r.ExportRow.network == network)
            return [export_record(x) for x in s.scalars(q)]

    # streams ------------------------------------------------------------------------------

    def add_stream(self, record: StreamRecord) -> None:
        """Record a complete stream (its manifest is already stored); recording it again marks
        it intact."""
        def attempt(s: Session) -> None:
            row = s.get(r.StreamRow, record.id)
            if row is None:
                s.add(r.StreamRow(id=record.id, dataset_fingerprint=record.dataset_fingerprint,
                                  chain=list(record.chain), bytes=record.bytes, status="ok"))
            elif row.status != "ok" or row.bytes != record.bytes:
                row.status, row.bytes = "ok", record.bytes
        self._write(attempt)

    def stream(self, stream_id: str) -> StreamRecord | None:
        with self._read() as s:
            row = s.get(r.StreamRow, stream_id)
            return None if row is None else stream_record(row)

    def streams(self) -> list[StreamRecord]:
        with self._read() as s:
            return [stream_record(x)
                    for x in s.scalars(select(r.StreamRow).order_by(r.StreamRow.id))]

    def set_stream_status(self, stream_id: str, status: str) -> None:
        if status not in STREAM_STATUSES:
            raise ValueError(status)

        def attempt(s: Session) -> None:
            row = s.get(r.StreamRow, stream_id)
            if row is not None:
                row.status = status
        self._write(attempt)

    def delete_stream(self, stream_id: str, only_if: str | None = None) -> None:
        """Forget a stream (`only_if` a status: unless a writer marked it otherwise since)."""
        q = delete(r.StreamRow).where(r.StreamRow.id == stream_id)
        if only_if is not None:
            q = q.where(r.StreamRow.status == only_if)
        self._write(lambda s: s.execute(q))


KeepRule = Callable[[list[LayerVersion], list[NetworkVersion], set[str]], dict[str, str]]


def _require_live_digests(s: Session, chain: tuple[str, ...], name: str) -> None:
    for digest in dict.fromkeys(chain):
        live = s.scalar(select(func.count()).select_from(r.LayerRow).where(
            r.LayerRow.digest == digest, r.LayerRow.status != "deleted"))
        if not live:
            raise ConflictError(f"a layer {name!r} was trained over (weights {digest[:12]}) "
                                "was deleted meanwhile; nothing was registered")


def _next_version(s: Session, table: Any, name: str) -> int:
    return int(s.scalar(select(func.max(table.version)).where(table.name == name)) or 0) + 1


def _missing(message: str, listing: str, *more: Fix) -> NotFoundError:
    return NotFoundError(message, ListFix(listing), *more)


def _dataset_taken(name: str, fingerprint: str) -> ConflictError:
    return ConflictError(f"dataset {name!r} already exists with other content (fingerprint "
                         f"{fingerprint[:12]}); choose another name")
