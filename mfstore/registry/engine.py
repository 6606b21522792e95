"""Opening a registry database: the URL (driver chosen, password never shown), SQLite's
settings, and errors that name the URL and the fix."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from mfstore.errors import RegistryError
from mfstore.fixes import InitFix, SettingFix
from mfstore.urls import mask_credentials, scrub

WRITE = {"mfstore_write": True}  # execution option: a transaction that will write
CHECK_URL = SettingFix("registry")
INIT = InitFix()


def display_url(url: str | URL) -> str:
    """`url` as it may be shown: as written, with the password masked (in the authority and
    in a `password=` query parameter)."""
    return mask_credentials(url.render_as_string(hide_password=False)
                            if isinstance(url, URL) else url)


def engine_url(url: str) -> URL:
    """The URL to connect with: `postgresql://` means psycopg 3 (the `postgres` extra)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise RegistryError(f"cannot open registry {display_url(url)!r}: not a database URL "
                            f"({err})", CHECK_URL) from err
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_file(url: URL) -> str | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = str(url.database)
    if url.query.get("uri") == "true" and database.startswith("file:"):  # sqlite:///file:…?uri=true
        database = database[len("file:"):].split("?", 1)[0]
        return None if database.startswith(":memory:") or database == "" else database
    return database


def check_sqlite_file(path: str, shown: str, create: bool) -> None:
    """Refuse what is not a registry before SQLite creates or misreads it."""
    if os.path.isdir(path):
        raise RegistryError(f"registry {shown!r} is a folder, not a database file", CHECK_URL)
    if not os.path.exists(path):
        if not create:
            raise RegistryError(f"there is no mfstore registry at {shown!r}", INIT, CHECK_URL)
        return
    if os.path.getsize(path) == 0 and not create:  # init may be making it right now
        raise RegistryError(f"registry {shown!r} is an empty file, not an mfstore registry",
                            INIT, CHECK_URL)


def _sqlite_settings(engine: Engine, snapshot: bool = False) -> None:
    """WAL and a busy timeout; writers BEGIN IMMEDIATE so they queue instead of deadlocking,
    readers BEGIN plainly (and work on a read-only file). A `snapshot` (the file opened
    immutable) changes nothing."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        if snapshot:
            cursor.close()
            return
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("mfstore_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, create: bool = False) -> Engine:
    """An engine on `url`; for SQLite the file must exist unless `create`."""
    parsed, shown = engine_url(url), display_url(url)
    path = sqlite_file(parsed)
    if path is not None:
        check_sqlite_file(path, shown, create)
    try:
        engine = create_engine(parsed, pool_pre_ping=path is None)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as err:
        hint = " (install mfstore[postgres] for PostgreSQL)" if (
            parsed.drivername in ("postgresql", "postgresql+psycopg")) else ""
        raise RegistryError(f"cannot open registry {shown!r}: {scrub(str(err), url)}{hint}",
                            CHECK_URL) from err
    if parsed.get_backend_name() == "sqlite":
        _sqlite_settings(engine)
    return engine


def snapshot_engine(url: str) -> Engine | None:
    """A read-only engine on a SQLite registry's file opened immutable (no journal, no
    shared memory: nothing written), for reading where the disk is full; None for other
    databases."""
    path = sqlite_file(engine_url(url))
    if path is None:
        return None
    engine = create_engine(f"sqlite:///file:{path}?immutable=1&uri=true")
    _sqlite_settings(engine, snapshot=True)
    return engine


def disk_full(err: BaseException) -> bool:
    """Whether a database error says its disk is full (SQLite says "disk I/O error" when it
    cannot make the shared-memory file a reader needs)."""
    text = str(getattr(err, "orig", None) or err)
    return "disk I/O error" in text or "database or disk is full" in text


def registry_error(url: str, err: SQLAlchemyError, doing: str = "open") -> RegistryError:
    """One line for a database error: the driver's first line, never the SQL or the password."""
    orig = getattr(err, "orig", None) or err
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    first, shown = scrub(first, url), display_url(url)
    if "readonly" in first or "read-only" in first:
        return RegistryError(f"cannot {doing} registry {shown!r}: it is read-only ({first})",
                             CHECK_URL)
    if disk_full(err):
        return RegistryError(f"cannot {doing} registry {shown!r}: the disk holding it is full "
                             f"({first}); free some space")
    return RegistryError(f"cannot {doing} registry {shown!r}: {first}", CHECK_URL)
