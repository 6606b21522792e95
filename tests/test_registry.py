"""The registry on SQLite and on a real PostgreSQL server: versions, aliases, plain records,
clear errors, concurrent writers, streams."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest

from mfstore.block_header import InputSignature
from mfstore.errors import ConfigError, ConflictError, NotFoundError, RegistryError
from mfstore.fixes import ImportFix, ListFix
from mfstore.registry import Registry, StreamRecord
from mfstore.registry.records import LayerVersion
from mfstore.spec import LayerSpec

SPEC = LayerSpec("dense", 4, (3,), 2)
SIG = InputSignature((3,), (), "fp")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/r.db"
    return request.getfixturevalue("postgres").new_database()


def _add(registry: Registry, name: str = "l", note: str = "") -> LayerVersion:
    return registry.add_layer(name, "sha" * 21 + "a", "digest", SPEC, SIG, "d", {"seed": 1},
                              {"test_accuracy": 0.9}, note=note)


def test_versions_aliases_and_records(url):
    registry = Registry(url, create=True)
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


def test_all_aliases_of_a_kind_in_one_read(url):
    registry = Registry(url, create=True)
    _add(registry), _add(registry), _add(registry, "m")
    registry.set_alias("layer", "l", "prod", 1)
    registry.set_alias("layer", "l", "next", 2)
    registry.set_alias("layer", "m", "prod", 1)
    assert registry.all_aliases("layer") == {"l": {"prod": 1, "next": 2}, "m": {"prod": 1}}
    assert registry.all_aliases("network") == {}
    assert registry.all_aliases("layer")["l"] == registry.aliases("layer", "l")


def test_unknown_names_versions_and_aliases(url):
    registry = Registry(url, create=True)
    _add(registry)
    with pytest.raises(NotFoundError, match=re.escape("no layer named 'nope'")):
        registry.layer("nope")
    with pytest.raises(NotFoundError, match=re.escape("layer 'l' has no version 7")):
        registry.layer("l", "7")
    huge = "9" * 400  # a version no integer column holds
    with pytest.raises(NotFoundError, match=re.escape(f"layer 'l' has no version {huge}")):
        registry.layer("l", huge)
    with pytest.raises(NotFoundError, match=re.escape(
            "layer 'l' has no version or alias 'prod'")) as err:
        registry.layer("l", "prod")
    assert err.value.fixes == (ListFix("layers"),)
    with pytest.raises(NotFoundError, match=re.escape("no dataset 'x'")) as err:
        registry.dataset("x")
    assert [type(f) for f in err.value.fixes] == [ListFix, ImportFix]


@pytest.mark.parametrize("alias,message", [
    ("", "invalid alias name ''"), ("a@b", "invalid alias name 'a@b'"),
    ("x\ny", "invalid alias name 'x\\ny'"), ("../../x", "invalid alias name '../../x'"),
    ("12", "alias '12' looks like a version number"),
])
def test_alias_names_are_checked_like_layer_names(url, alias, message):
    registry = Registry(url, create=True)
    _add(registry)
    with pytest.raises(ConfigError, match=re.escape(message)):
        registry.set_alias("layer", "l", alias, 1)
    assert registry.aliases("layer", "l") == {}


def test_a_dataset_name_taken_by_other_content_is_a_conflict(url):
    from mfstore.registry import DatasetRecord

    registry = Registry(url, create=True)
    record = DatasetRecord("d", "fp1", "src", "npz", (3,), 2, {"train": 1}, {}, "s")
    assert registry.add_dataset(record) == registry.add_dataset(record)  # same: a no-op
    with pytest.raises(ConflictError, match=re.escape(
            "dataset 'd' already exists with other content (fingerprint fp1")):
        registry.add_dataset(DatasetRecord("d", "fp2", "src", "npz", (3,), 2, {}, {}, "s"))


def test_stream_sizes_beyond_32_bits_and_their_status(url):
    registry = Registry(url, create=True)
    big = 3_500_000_000  # a conv:64 stream of Fashion-MNIST
    registry.add_stream(StreamRecord("s1", "fp", ("a", "b"), big))
    registry.add_stream(StreamRecord("s1", "fp", ("a", "b"), big))  # recorded once
    (stream,) = registry.streams()
    assert (stream.bytes, stream.status, stream.chain) == (big, "ok", ("a", "b"))
    registry.set_stream_status("s1", "damaged")
    assert registry.streams()[0].status == "damaged"
    registry.add_stream(StreamRecord("s1", "fp", ("a", "b"), big))  # written again: intact
    assert registry.streams()[0].status == "ok"


def test_registry_url_that_cannot_be_opened(tmp_path):
    with pytest.raises(RegistryError, match=re.escape(
            f"cannot open registry 'sqlite:///{tmp_path}/no/such/dir/r.db': unable to open "
            "database file")):
        Registry(f"sqlite:///{tmp_path}/no/such/dir/r.db", create=True)
    with pytest.raises(RegistryError, match=re.escape("cannot open registry 'nosuchdb://x'")):
        Registry("nosuchdb://x")


def test_unreachable_postgres_never_shows_the_password():
    with pytest.raises(RegistryError) as err:
        Registry("postgresql://me:s3cr3t@127.0.0.1:1/db")
    assert str(err.value).startswith("cannot open registry 'postgresql://me:***@127.0.0.1:1/db'"
                                     ": connection failed")
    assert "s3cr3t" not in str(err.value) and "\n" not in err.value.message


WRITER = textwrap.dedent("""
    import os, sys, time
    from mfstore.block_header import InputSignature
    from mfstore.registry import Registry
    from mfstore.spec import LayerSpec
    url, go, me, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    registry = Registry(url)
    open(go + "." + me, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(count):
        registry.add_layer("shared", "s" * 64, "d", LayerSpec("dense", 4, (3,), 2),
                           InputSignature((3,), (), "fp"), "d", {}, {}, note=f"{me}-{i}")
""")


@pytest.mark.slow
def test_concurrent_writers_get_distinct_versions_and_lose_nothing(url, tmp_path):
    go = tmp_path / "go"
    Registry(url, create=True)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(go), f"p{p}", "10"])
             for p in range(6)]
    while not all((tmp_path / f"go.p{p}").exists() for p in range(6)):  # all imported
        assert all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    rows = Registry(url).layers("shared")
    assert sorted(r.version for r in rows) == list(range(1, 61))
    assert sorted(r.note for r in rows) == sorted(f"p{p}-{i}" for p in range(6) for i in range(10))


def test_nothing_is_registered_over_a_layer_deleted_meanwhile(url):
    registry = Registry(url, create=True)
    base = _add(registry, "base")
    registry.set_layer_status("base", base.version, "deleted")
    on_deleted = InputSignature((4,), (base.digest,), "fp")
    with pytest.raises(ConflictError, match=re.escape(
            "a layer 'top' was trained over (weights digest) was deleted meanwhile; nothing "
            "was registered")):
        registry.add_layer("top", "s" * 64, "d2", LayerSpec("dense", 4, (4,), 2), on_deleted,
                           "d", {}, {})
    with pytest.raises(NotFoundError, match=re.escape("layer 'base' has no version 1")):
        registry.add_network("net", [("base", 1)], "bp", "d")
    assert registry.layers("top") == [] and registry.networks() == []


def test_deletion_keeps_what_the_rule_keeps_in_one_transaction(url):
    registry = Registry(url, create=True)
    _add(registry, "a"), _add(registry, "b")
    registry.add_network("n", [("a", 1), ("b", 1)], "bp", "d")
    kept = registry.delete_unneeded([("n", 1)], [("a", 1), ("b", 1)],
                                    lambda live, nets, leaving: {"a@1": "reason"})
    assert kept == {"a@1": "reason"} and registry.networks()[0].status == "deleted"
    assert {v.ref: v.status for v in registry.layers()} == {"a@1": "ok", "b@1": "deleted"}


@pytest.mark.parametrize("selector", ["²", "١", "9" * 400])
def test_selectors_that_are_not_plain_versions_are_not_found(url, selector):
    registry = Registry(url, create=True)
    _add(registry)
    with pytest.raises(NotFoundError, match=re.escape("layer 'l' has no version")):
        registry.layer("l", selector)


@pytest.mark.parametrize("url,shown", [
    ("postgresql://u:s3cr/3t@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
    ("postgresql://u:p@ss3cr3t@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h:1/db?password=s3cr3t&x=1", "postgresql://u@h:1/db?password=***&x=1"),
    ("s3://key:secret@bucket/x", "s3://key:***@bucket/x"),
    ("sqlite:///file:/tmp/r.db?mode=ro&uri=true", "sqlite:///file:/tmp/r.db?mode=ro&uri=true"),
])
def test_credentials_are_never_shown(url, shown):
    from mfstore.registry.engine import display_url

    assert display_url(url) == shown
    if url.startswith("postgresql"):  # nothing listens on port 1: the error shows the URL
        with pytest.raises(RegistryError) as err:
            Registry(url.replace("@h/", "@127.0.0.1:1/").replace("@h:1/", "@127.0.0.1:1/"))
        assert "s3cr3t" not in str(err.value) and "s3cr/3t" not in str(err.value)
