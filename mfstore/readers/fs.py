"""Opening data URLs through fsspec, with errors that say what to check."""

from __future__ import annotations

import os
import posixpath
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from mfstore.errors import DataFormatError, DataSourceError, one_line, transport_error
from mfstore.numbers import env_number


def resolve(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem and path behind `url`; unknown protocols become `DataSourceError`."""
    try:
        return fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as err:
        raise DataSourceError(
            f"cannot reach {url!r}: {err}; check the URL's protocol or install its fsspec backend"
        ) from err


@contextmanager
def reaching(url: str, doing: str = "reach") -> Iterator[None]:
    """Errors of the file system or its network client, as one-line `DataSourceError`s."""
    try:
        yield
    except (DataSourceError, DataFormatError, IsADirectoryError):
        raise
    except FileNotFoundError as err:
        raise DataSourceError(f"cannot {doing} {url!r}: no such file; check the path") from err
    except Exception as err:
        if not transport_error(err):
            raise
        raise DataSourceError(f"cannot {doing} {url!r}: {one_line(err)}") from err


def exists(url: str) -> bool:
    fs, path = resolve(url)
    with reaching(url):
        return bool(fs.exists(path))


def is_dir(url: str) -> bool:
    fs, path = resolve(url)
    with reaching(url):
        return bool(fs.isdir(path))


def check_not_special(url: str) -> None:
    """Refuse a device, pipe or socket (what is neither a file nor a folder), before anything
    reads it."""
    fs, path = resolve(url)
    with reaching(url):
        kind = fs.info(path).get("type")
    if kind not in ("file", "directory"):
        raise DataSourceError(f"{url!r} is not a regular file (a device, pipe or socket); "
                              "give a data file")


def list_names(url: str) -> list[str]:
    """Base names of the entries of the directory `url`."""
    fs, path = resolve(url)
    with reaching(url, "list"):
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def absolute(url: str) -> str:
    """A local path made absolute (so it can be read again from another folder); other URLs
    as they are."""
    fs, _ = resolve(url)
    if isinstance(fs, LocalFileSystem) and "://" not in url:
        return os.path.abspath(url)
    return url


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def max_read_bytes() -> int:
    """The most bytes a data file may hold (or unpack to): `MFSTORE_MAX_READ_BYTES`, 16 GiB
    by default, so a device, a pipe or a runaway archive cannot exhaust memory."""
    return env_number("MFSTORE_MAX_READ_BYTES", 16 << 30, 1, 1 << 50, "bytes")


def _check_regular(fs: AbstractFileSystem, path: str, url: str, cap: int) -> None:
    try:
        info = fs.info(path)
    except FileNotFoundError as err:
        raise DataSourceError(f"cannot reach {url!r}: no such file; check the path") from err
    if info.get("type") == "directory":
        raise DataSourceError(f"{url!r} is a directory; give a file or a supported folder")
    if info.get("type") != "file":
        raise DataSourceError(f"{url!r} is not a regular file (a device, pipe or socket); "
                              "give a data file")
    if (info.get("size") or 0) > cap:
        raise DataFormatError(f"{url!r} holds {info['size']} bytes, more than the "
                              f"{cap} a data file may hold (MFSTORE_MAX_READ_BYTES)")


def _gunzip(data: bytes, url: str, cap: int) -> bytes:
    unpack = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = unpack.decompress(data, cap + 1)
        if len(out) > cap:
            raise DataFormatError(f"{url!r} unpacks to more than the {cap} bytes a data file "
                                  "may hold (MFSTORE_MAX_READ_BYTES)")
        if not unpack.eof:
            raise zlib.error("truncated stream")
        return out
    except zlib.error as err:
        raise DataFormatError(f"{url!r} is not a valid gzip file ({err}); re-download it") from err


def read_bytes(url: str) -> bytes:
    """All bytes of `url` (a regular file, at most `max_read_bytes()`), gunzipped when the
    name ends in `.gz`."""
    fs, path = resolve(url)
    cap = max_read_bytes()
    try:
        with reaching(url):
            _check_regular(fs, path, url, cap)
            with fs.open(path, "rb") as f:
                data = f.read(cap + 1)
    except IsADirectoryError as err:
        raise DataSourceError(f"{url!r} is a directory; give a file or a supported folder") from err
    if len(data) > cap:
        raise DataFormatError(f"{url!r} holds more than the {cap} bytes a data file may "
                              "hold (MFSTORE_MAX_READ_BYTES)")
    if url.endswith(".gz") and not url.endswith(".tar.gz"):
        return _gunzip(data, url, cap)
    return data
