"""The registry: versions, aliases, plain records, clear errors, concurrent writers."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import create_engine, text

from mfstore.block import InputSignature
from mfstore.errors import NotFoundError, RegistryError, StoreError
from mfstore.registry import Registry
from mfstore.registry.records import LayerVersion
from mfstore.spec import LayerSpec
from mfstore.store import Store

SPEC = LayerSpec("dense", 4, (3,), 2)
SIG = InputSignature((3,), (), "fp")


def _add(registry: Registry, name: str = "l", note: str = "") -> LayerVersion:
    return registry.add_layer(name, "sha" * 21 + "a", "digest", SPEC, SIG, "d", {"seed": 1},
                              {"test_accuracy": 0.9}, note=note)


def test_versions_aliases_and_records(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    first, second = _add(registry), _add(registry)
    assert (first.version, second.version) == (1, 2)
    assert isinstance(second, LayerVersion) and second.spec == SPEC and second.signature == SIG
    assert registry.layer("l").version == 2
    registry.set_alias("layer", "l", "prod", 1)
    assert registry.layer("l", "prod").version == 1
    registry.set_alias("layer", "l", "prod", 2)
    assert registry.layer("l", "prod").version == 2
    registry.set_layer_status("l", 2, "deleted")
    assert registry.layer("l").version == 1
    assert _add(registry).version == 3  # versions are never reused


def test_unknown_names_versions_and_aliases(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    _add(registry)
    with pytest.raises(NotFoundError, match=re.escape(
            "no layer named 'nope'; see `mfstore layers list`")):
        registry.layer("nope")
    with pytest.raises(NotFoundError, match=re.escape(
            "layer 'l' has no version 7; see `mfstore layers list`")):
        registry.layer("l", "7")
    with pytest.raises(NotFoundError, match=re.escape(
            "layer 'l' has no version or alias 'prod'; see `mfstore layers list`")):
        registry.layer("l", "prod")
    with pytest.raises(NotFoundError, match=re.escape(
            "no dataset 'x'; see `mfstore data list`, or import it with "
            "`mfstore data add x URL`")):
        registry.dataset("x")


def test_registry_url_that_cannot_be_opened(tmp_path):
    with pytest.raises(RegistryError, match=re.escape(
            f"cannot open registry 'sqlite:///{tmp_path}/no/such/dir/r.db': unable to open "
            "database file; check --registry / MFSTORE_REGISTRY")):
        Registry(f"sqlite:///{tmp_path}/no/such/dir/r.db")
    with pytest.raises(RegistryError, match=re.escape("cannot open registry 'nosuchdb://x'")):
        Registry("nosuchdb://x")


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    Registry(url)
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE mfstore_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(RegistryError, match=re.escape(
            "registry schema version 99, this mfstore expects 2; use the mfstore release that "
            "created it, or a new registry")):
        Registry(url)


def test_unreachable_store_url():
    with pytest.raises(StoreError, match=re.escape(
            "cannot reach store 'nosuchproto://bucket/store': Protocol not known: nosuchproto")):
        Store("nosuchproto://bucket/store")


def test_store_under_a_file_is_unreachable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=re.escape(
            f"cannot reach store '{tmp_path}/file/store'")):
        Store(f"{tmp_path}/file/store")


WRITER = textwrap.dedent("""
    import os, sys, time
    from mfstore.block import InputSignature
    from mfstore.registry import Registry
    from mfstore.spec import LayerSpec
    url, go, me, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    registry = Registry(url)
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(count):
        registry.add_layer("shared", "s" * 64, "d", LayerSpec("dense", 4, (3,), 2),
                           InputSignature((3,), (), "fp"), "d", {}, {}, note=f"{me}-{i}")
""")


def test_concurrent_writers_get_distinct_versions_and_lose_nothing(tmp_path):
    url, go = f"sqlite:///{tmp_path}/r.db", tmp_path / "go"
    Registry(url)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(go), f"p{p}", "10"])
             for p in range(6)]
    time.sleep(1.5)  # every writer imported and waiting
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    rows = Registry(url).layers("shared")
    assert sorted(r.version for r in rows) == list(range(1, 61))
    assert sorted(r.note for r in rows) == sorted(f"p{p}-{i}" for p in range(6) for i in range(10))


def test_a_version_1_registry_is_migrated(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    _add(Registry(url))
    with create_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE exports"))
        conn.execute(text("UPDATE mfstore_meta SET value = '1' WHERE key = 'schema_version'"))
    registry = Registry(url)
    assert registry.layer("l").version == 1 and registry.exports() == []
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SELECT value FROM mfstore_meta")).scalar() == "2"
