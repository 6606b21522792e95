"""Opening a registry database: SQLite pragmas, schema creation and the schema version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from mfstore.errors import RegistryError
from mfstore.registry.rows import Base, MetaRow

SCHEMA_VERSION = 2


def _add_exports(engine: Engine) -> None:
    Base.metadata.create_all(engine)  # creates only the missing `exports` table


MIGRATIONS = {1: _add_exports}  # from version N to N + 1


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so writers queue instead of deadlocking."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str) -> Engine:
    """An engine on `url` with the schema in place; errors name the URL and the fix."""
    hint = "check --registry / MFSTORE_REGISTRY"
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as err:
        raise RegistryError(f"cannot open registry {url!r}: {err}; {hint}") from err
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    try:
        _ensure_schema(engine)
    except OperationalError as err:
        raise RegistryError(f"cannot open registry {url!r}: {err.orig}; {hint}") from err
    except SQLAlchemyError as err:
        raise RegistryError(f"cannot open registry {url!r}: {err}; {hint}") from err
    return engine


def _ensure_schema(engine: Engine) -> None:
    if not inspect(engine).has_table(MetaRow.__tablename__):
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            if session.get(MetaRow, "schema_version") is None:
                session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
    with Session(engine) as session:
        found = session.scalar(select(MetaRow.value).where(MetaRow.key == "schema_version"))
    while found is not None and found.isdigit() and int(found) in MIGRATIONS:
        MIGRATIONS[int(found)](engine)
        with Session(engine) as session, session.begin():
            row = session.get(MetaRow, "schema_version")
            if row is not None and row.value == found:
                row.value = str(int(found) + 1)
            found = row.value if row is not None else None
    if found != str(SCHEMA_VERSION):
        raise RegistryError(
            f"registry schema version {found}, this mfstore expects {SCHEMA_VERSION}; use the "
            "mfstore release that created it, or a new registry"
        )
