"""The registry schema: made by Alembic migrations that match the ORM, adopted from round 1,
created once however many processes meet an empty database, and refused where the database
is not an mfstore registry."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

from mfstore.errors import RegistryError
from mfstore.fixes import InitFix, SettingFix, UpgradeFix
from mfstore.registry import Registry, StreamRecord
from mfstore.registry.engine import engine_url
from mfstore.registry.rows import Base
from mfstore.registry.schema import HEAD, MIGRATIONS, REVISIONS


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/r.db"
    return request.getfixturevalue("postgres").new_database()


def test_head_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    assert script.get_current_head() == HEAD
    assert [r.revision for r in reversed(list(script.walk_revisions()))] == list(REVISIONS)


def test_migrations_build_exactly_the_tables_the_code_maps(url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    Registry(url, create=True)
    with create_engine(engine_url(url)).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD


ROUND1 = """
CREATE TABLE mfstore_meta (key VARCHAR(64) PRIMARY KEY, value VARCHAR(256) NOT NULL);
INSERT INTO mfstore_meta VALUES ('schema_version', '{version}');
CREATE TABLE layer_versions (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL,
  version INTEGER NOT NULL, block_sha256 VARCHAR(64) NOT NULL, digest VARCHAR(64) NOT NULL,
  spec JSON NOT NULL, signature JSON NOT NULL, dataset VARCHAR(200) NOT NULL,
  config JSON NOT NULL, metrics JSON NOT NULL, status VARCHAR(16) NOT NULL, repairs INTEGER,
  note VARCHAR(2000) NOT NULL, created TIMESTAMP NOT NULL, UNIQUE (name, version));
CREATE TABLE streams (id VARCHAR(64) PRIMARY KEY, dataset_fingerprint VARCHAR(64) NOT NULL,
  chain JSON NOT NULL, bytes INTEGER NOT NULL, created TIMESTAMP NOT NULL);
CREATE TABLE aliases (kind VARCHAR(16), name VARCHAR(200), alias VARCHAR(100),
  version INTEGER NOT NULL, PRIMARY KEY (kind, name, alias));
INSERT INTO layer_versions VALUES (1, 'l', 1, 'sha', 'dig',
  '{{"kind": "dense", "width": 4, "in_shape": [3], "classes": 2}}',
  '{{"input_shape": [3], "chain": [], "dataset_fingerprint": "fp"}}', 'd', '{{}}', '{{}}',
  'ok', NULL, '', '2026-01-01 00:00:00');
INSERT INTO streams VALUES ('s', 'fp', '[]', 123, '2026-01-01 00:00:00');
INSERT INTO aliases VALUES ('layer', 'l', 'prod', 1)
"""
EXPORTS = """CREATE TABLE exports (id INTEGER PRIMARY KEY, network VARCHAR(200) NOT NULL,
  version INTEGER NOT NULL, mode VARCHAR(8) NOT NULL, upto INTEGER, sha256 VARCHAR(64) NOT NULL,
  path VARCHAR(2000) NOT NULL, target VARCHAR(2000) NOT NULL, created TIMESTAMP NOT NULL)"""


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_round1_registry_is_upgraded_on_purpose_and_keeps_its_rows(url, version):
    with create_engine(engine_url(url)).begin() as conn:
        for statement in ROUND1.format(version=version).split(";\n"):
            conn.execute(text(statement))
        if version == "2":  # version 2 added the exports table
            conn.execute(text(EXPORTS))
    with pytest.raises(RegistryError, match=re.escape(
            f"has schema {version}, older than this mfstore's {HEAD}: upgrade it once, on "
            "purpose")) as err:
        Registry(url)
    assert err.value.fixes == (UpgradeFix(),)
    registry = Registry(url, create=True)  # init upgrades
    assert registry.layer("l", "prod").version == 1 and registry.exports() == []
    assert [(s.id, s.bytes, s.status) for s in registry.streams()] == [("s", 123, "ok")]
    registry.add_stream(StreamRecord("big", "fp", (), 3_500_000_000))  # sizes are 64-bit now
    registry.set_alias("layer", "l", "a" * 150, 1)  # aliases as long as names
    with create_engine(engine_url(url)).connect() as conn:
        assert conn.execute(text("SELECT value FROM mfstore_meta WHERE key = 'schema_version'")
                            ).scalar() == "3"  # a round-1 mfstore refuses it now
    assert len(registry.id) == 32 and Registry(url).id == registry.id


def test_a_newer_schema_is_refused(url):
    Registry(url, create=True)
    with create_engine(engine_url(url)).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(RegistryError, match=re.escape(
            "has schema 0999, newer than this mfstore knows (up to 0005); use the mfstore "
            "release that wrote it")):
        Registry(url)


def test_only_init_creates_a_registry(url):
    with pytest.raises(RegistryError, match="there is no mfstore registry at") as err:
        Registry(url)
    assert err.value.fixes == (InitFix(), SettingFix("registry"))
    Registry(url, create=True)
    Registry(url)  # now it exists


def test_a_database_of_something_else_is_refused(url):
    with create_engine(engine_url(url)).begin() as conn:
        conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY)"))
    for create in (False, True):
        with pytest.raises(RegistryError, match="holds tables of something else, not an mfstore "
                                                "registry; choose another database"):
            Registry(url, create=create)


def test_an_empty_file_is_refused_except_by_init(tmp_path):
    path = tmp_path / "registry.db"
    path.write_bytes(b"")
    with pytest.raises(RegistryError, match=re.escape("is an empty file, not an mfstore "
                                                      "registry; initialise the registry")):
        Registry(f"sqlite:///{path}")
    assert path.read_bytes() == b""
    Registry(f"sqlite:///{path}", create=True)  # init treats it as none (another init may
    Registry(f"sqlite:///{path}")  # be creating it at this very moment)


@pytest.mark.parametrize("content,message", [
    (b"SQLite format 3\x00" + b"\x10\x00" + b"\x00" * 80, "file is not a database"),
    (b"hello, not a database at all" * 100, "file is not a database"),
])
def test_an_empty_truncated_or_foreign_file_is_refused(tmp_path, content, message):
    path = tmp_path / "registry.db"
    path.write_bytes(content)
    for create in (False, True):
        with pytest.raises(RegistryError, match=re.escape(message)):
            Registry(f"sqlite:///{path}", create=create)
    assert path.read_bytes() == content  # nothing written


INIT = "from mfstore.registry import Registry; import sys; Registry(sys.argv[1], create=True)"


@pytest.mark.slow
def test_first_use_of_an_empty_database_by_many_processes_at_once(url):
    procs = [subprocess.Popen([sys.executable, "-c", INIT, url], stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with create_engine(engine_url(url)).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
