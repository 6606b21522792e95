"""The registry's schema: which one a database holds, and bringing it to this mfstore's.

Alembic migrations (`migrations/`) create and change the tables. Creating and upgrading are
explicit: only `create` (init) makes a registry in an empty database or upgrades an older
one; every other opening refuses an older schema (a team upgrades once, on purpose, since
machines still on the older mfstore cannot open it afterwards). It happens under a lock, so N
processes at once are safe: a PostgreSQL advisory lock held for the migrating transaction, or
SQLite's write lock (BEGIN IMMEDIATE); everyone re-reads the state once they hold the lock,
so the migration runs once. A database holding other tables is refused.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mfstore.errors import RegistryError
from mfstore.fixes import UpgradeFix
from mfstore.registry.engine import CHECK_URL, INIT, WRITE, display_url, registry_error

HEAD = "0005"  # the newest revision under migrations/versions (a test checks it)
REVISIONS = ("0001", "0002", "0003", "0004", "0005")
LEGACY_VERSIONS = ("1", "2")  # round-1 `mfstore_meta.schema_version`s, adopted by 0001
LOCK_KEY = 0x6D6673746F7265  # pg_advisory_xact_lock key: b"mfstore"
MIGRATIONS = Path(__file__).with_name("migrations")


def schema_state(conn: Connection) -> tuple[str, str | None]:
    """(`empty` | `current` | `old` | `legacy` | `newer` | `foreign`, revision or version)."""
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return "empty", None
    if "alembic_version" in tables:
        rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if rev == HEAD:
            return "current", rev
        return ("old" if rev in REVISIONS else "newer"), rev
    if "mfstore_meta" in tables:
        value = conn.execute(text(
            "SELECT value FROM mfstore_meta WHERE key = 'schema_version'")).scalar()
        return ("legacy" if value in LEGACY_VERSIONS else "newer"), value
    return "foreign", None


def _refuse(state: str, found: str | None, shown: str, create: bool) -> None:
    if state == "empty" and not create:
        raise RegistryError(f"there is no mfstore registry at {shown!r} (the database is "
                            "empty)", INIT, CHECK_URL)
    if state in ("old", "legacy") and not create:
        raise RegistryError(f"registry {shown!r} has schema {found}, older than this mfstore's "
                            f"{HEAD}: upgrade it once, on purpose (machines still on the older "
                            "mfstore cannot open it afterwards)", UpgradeFix())
    if state == "foreign":
        raise RegistryError(f"{shown!r} holds tables of something else, not an mfstore "
                            "registry; choose another database", CHECK_URL)
    if state == "newer":
        raise RegistryError(f"registry {shown!r} has schema {found}, newer than this mfstore "
                            f"knows (up to {HEAD}); use the mfstore release that wrote it")


def _upgrade(conn: Connection) -> None:
    from alembic import command  # start-up: Alembic only where a schema is made or upgraded
    from alembic.config import Config  # start-up: Alembic only where a schema is made or upgraded

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def ensure_schema(engine: Engine, url: str, create: bool = False) -> None:
    """Bring the database at `url` to `HEAD`, creating it when `create`; refuse what is not an
    mfstore registry."""
    shown = display_url(url)
    try:
        with engine.connect() as conn:
            state, found = schema_state(conn)
        if state == "current":
            return
        _refuse(state, found, shown, create)
        with engine.execution_options(**WRITE).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            state, found = schema_state(conn)  # again, under the lock
            _refuse(state, found, shown, create)
            if state != "current":
                _upgrade(conn)
    except SQLAlchemyError as err:
        raise registry_error(url, err) from err
