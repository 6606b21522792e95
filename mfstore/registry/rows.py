"""SQLAlchemy tables. Only the registry package touches them; `migrations/` creates and
changes them (a test checks that the two agree)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "mfstore_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class DatasetRow(Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(2000))
    format: Mapped[str] = mapped_column(String(32))
    input_shape: Mapped[list] = mapped_column(JSON)
    classes: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict] = mapped_column(JSON)
    normalizer: Mapped[dict] = mapped_column(JSON)
    stream_id: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict] = mapped_column(JSON)
    class_names: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LayerRow(Base):
    __tablename__ = "layer_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    block_sha256: Mapped[str] = mapped_column(String(64), index=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict] = mapped_column(JSON)
    signature: Mapped[dict] = mapped_column(JSON)
    dataset: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    repairs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    run: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # TrainingRun; None: unknown


class AliasRow(Base):
    __tablename__ = "aliases"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # layer | network
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class NetworkRow(Base):
    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    layers: Mapped[list] = mapped_column(JSON)  # [[name, version], ...]
    mode: Mapped[str] = mapped_column(String(8))
    dataset: Mapped[str] = mapped_column(String(200))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="ok")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StreamRow(Base):
    __tablename__ = "streams"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    chain: Mapped[list] = mapped_column(JSON)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="ok", server_default="ok")


class ExportRow(Base):
    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(8))
    upto: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(2000))  # in the store
    target: Mapped[str] = mapped_column(String(2000))  # where the user asked for it
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
