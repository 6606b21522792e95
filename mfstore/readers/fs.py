"""Opening data URLs through fsspec, with errors that say what to check."""

from __future__ import annotations

import gzip
import posixpath

import fsspec
from fsspec.spec import AbstractFileSystem

from mfstore.errors import DataFormatError, DataSourceError


def resolve(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem and path behind `url`; unknown protocols become `DataSourceError`."""
    try:
        return fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as err:
        raise DataSourceError(
            f"cannot reach {url!r}: {err}; check the URL's protocol or install its fsspec backend"
        ) from err


def exists(url: str) -> bool:
    fs, path = resolve(url)
    try:
        return bool(fs.exists(path))
    except OSError as err:
        raise DataSourceError(f"cannot reach {url!r}: {err}") from err


def is_dir(url: str) -> bool:
    fs, path = resolve(url)
    try:
        return bool(fs.isdir(path))
    except OSError as err:
        raise DataSourceError(f"cannot reach {url!r}: {err}") from err


def list_names(url: str) -> list[str]:
    """Base names of the entries of the directory `url`."""
    fs, path = resolve(url)
    try:
        return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    except OSError as err:
        raise DataSourceError(f"cannot list {url!r}: {err}") from err


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def read_bytes(url: str) -> bytes:
    """All bytes of `url`, gunzipped when the name ends in `.gz`."""
    fs, path = resolve(url)
    try:
        with fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as err:
        raise DataSourceError(f"cannot reach {url!r}: no such file; check the path") from err
    except IsADirectoryError as err:
        raise DataSourceError(f"{url!r} is a directory; give a file or a supported folder") from err
    except OSError as err:
        raise DataSourceError(f"cannot reach {url!r}: {err}") from err
    if url.endswith(".gz") and not url.endswith(".tar.gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise DataFormatError(
                f"{url!r} is not a valid gzip file ({err}); re-download it") from err
    return data
