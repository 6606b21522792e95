"""Data readers. `read_source(url)` picks the reader from `format` or from the URL itself."""

from __future__ import annotations

import posixpath

from mfstore.config import FORMATS
from mfstore.errors import DataFormatError, DataSourceError
from mfstore.fixes import option
from mfstore.readers import fs
from mfstore.readers.bundled import read_bundled
from mfstore.readers.cifar import read_cifar
from mfstore.readers.idx import read_idx
from mfstore.readers.raw import RawData
from mfstore.readers.tabular import read_csv, read_npz, read_parquet
from mfstore.readers.tokens import as_tokens

__all__ = ["FORMATS", "RawData", "canonical", "detect_format", "read_source"]


def canonical(url: str) -> str:
    """The source as it is recorded: a local path made absolute, so that it can be read again
    from any folder (repair rebuilds a dataset's stream from it)."""
    return url if url.startswith("sklearn:") else fs.absolute(url)


def _format_from_name(url: str) -> str | None:
    name = posixpath.basename(url.rstrip("/")).lower()
    for suffix, fmt in ((".npz", "npz"), (".csv", "csv"), (".csv.gz", "csv"),
                        (".parquet", "parquet"), (".pq", "parquet"),
                        (".tar.gz", "cifar"), (".tgz", "cifar")):
        if name.endswith(suffix):
            return fmt
    if "-ubyte" in name:
        return "idx"
    return None


def _format_from_folder(url: str) -> str | None:
    names = fs.list_names(url)
    if "data_batch_1" in names or {"train", "test"} <= set(names):
        return "cifar"
    if any("-ubyte" in n for n in names):
        return "idx"
    return None


def detect_format(url: str) -> str:
    """The reader for `url`: from its scheme, its name, or the files in its folder."""
    if url.startswith("sklearn:"):
        return "sklearn"
    fmt = _format_from_name(url)
    if fmt:
        return fmt
    if not fs.exists(url):
        raise DataSourceError(f"cannot reach {url!r}: no such file or folder; check the path")
    fs.check_not_special(url)
    fmt = _format_from_folder(url) if fs.is_dir(url) else None
    if fmt is None:
        raise DataFormatError(f"cannot tell the format of {url!r}",
                              option("format", f"(one of: {', '.join(FORMATS)})"))
    return fmt


def read_source(url: str, fmt: str | None = None, *, label_column: str = "label") -> RawData:
    """Read every example of `url`. `fmt` overrides detection."""
    fmt = fmt or detect_format(url)
    if fmt == "sklearn":
        return read_bundled(url)
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not fs.exists(url):
        raise DataSourceError(f"cannot reach {url!r}: no such file or folder; check the path")
    if fmt == "idx":
        return read_idx(url)
    if fmt == "cifar":
        return read_cifar(url)
    if fmt == "npz":
        return read_npz(url)
    if fmt == "csv":
        return read_csv(url, label_column)
    if fmt == "tokens":
        return _read_tokens(url, label_column)
    return read_parquet(url, label_column)


def _read_tokens(url: str, label_column: str) -> RawData:
    """Token ids from an `.npz` (`x` as ids) or a Parquet file (its list column)."""
    named = _format_from_name(url)
    if named == "npz":
        return as_tokens(read_npz(url), url)
    if named == "parquet":
        raw = read_parquet(url, label_column)
        if not raw.tokens:
            raise DataFormatError(f"{url}: no list column of token ids")
        return raw
    raise DataFormatError(f"{url}: token ids are read from a .npz or a Parquet file")
