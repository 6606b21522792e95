"""`.npz` arrays and CSV / Parquet tables with a label column.

Arrow gets a buffer it allocated itself (a copy of the file's bytes) and reads on the calling
thread. Handed Python-owned memory (a file object, or `bytes` wrapped by `py_buffer`), a
reader still alive in one of Arrow's I/O threads must take the GIL to release that memory; if
that happens while the interpreter shuts down, the thread is killed inside C++ code and the
process aborts ("terminate called without an active exception"; about half the runs with
pyarrow 26, apache/arrow#34314).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mfstore.errors import DataFormatError
from mfstore.fixes import option
from mfstore.readers import fs
from mfstore.readers.raw import RawData
from mfstore.readers.tokens import is_list, table_tokens


def arrow_buffer(data: bytes) -> pa.Buffer:
    """`data` copied into memory Arrow owns (see the module's docstring)."""
    buffer = pa.allocate_buffer(len(data))
    np.frombuffer(buffer, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return buffer


def read_npz(url: str) -> RawData:
    """Arrays `x` and `y` (and optionally `x_test`, `y_test`)."""
    data = fs.read_bytes(url)
    _check_unpacked_size(data, url)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            found = {name: arrays[name] for name in arrays.files}
    except ValueError as err:  # object arrays, or not a zip archive
        raise DataFormatError(f"{url}: not a readable .npz of numeric arrays ({err})") from err
    except Exception as err:
        raise DataFormatError(f"{url}: not a readable .npz file ({err})") from err
    if "x" not in found or "y" not in found:
        raise DataFormatError(f"{url}: a .npz must hold arrays 'x' and 'y'; found {sorted(found)}")
    has_test = "x_test" in found and "y_test" in found
    return RawData(
        found["x"], found["y"],
        found["x_test"] if has_test else None, found["y_test"] if has_test else None,
        format="npz",
    )


def _check_unpacked_size(data: bytes, url: str) -> None:
    """A compressed .npz may unpack to far more than the file holds: cap the members' sizes."""
    cap = fs.max_read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as err:
        raise DataFormatError(f"{url}: not a readable .npz file ({err})") from err
    if unpacked > cap:
        raise DataFormatError(f"{url}: its arrays unpack to {unpacked} bytes, more than the "
                              f"{cap} a data file may hold (MFSTORE_MAX_READ_BYTES)")


def _encode_labels(column: pa.ChunkedArray, url: str) -> tuple[np.ndarray, list[str] | None]:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = np.asarray(column.to_pylist(), dtype=object)
        names = sorted({str(v) for v in values})
        lookup = {name: i for i, name in enumerate(names)}
        return np.array([lookup[str(v)] for v in values], dtype=np.int64), names
    if column.null_count:
        raise DataFormatError(f"{url}: the label column has {column.null_count} empty values")
    return column.to_numpy(), None


def table_to_raw(table: pa.Table, url: str, label_column: str, fmt: str) -> RawData:
    if label_column not in table.column_names:
        raise DataFormatError(
            f"{url}: no label column {label_column!r}; columns are {table.column_names[:12]}",
            option("label_column", "naming the label column"))
    features = [c for c in table.column_names if c != label_column]
    if any(is_list(table.schema.field(n).type) for n in features):
        y, names = _encode_labels(table.column(label_column), url)
        return table_tokens(table, url, label_column, features, y, names, fmt)
    for name in features:
        kind = table.schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_null(kind)):
            raise DataFormatError(
                f"{url}: feature column {name!r} is {kind}, not numeric; drop or encode it"
            )
    if not features:
        raise DataFormatError(f"{url}: no feature columns beside the label column")
    x = np.stack(
        [table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in features],
        axis=1,
    )  # (N, F); empty cells become NaN and are refused by validation
    y, names = _encode_labels(table.column(label_column), url)
    return RawData(x, y, None, None, format=fmt, class_names=names)


def read_csv(url: str, label_column: str = "label") -> RawData:
    try:
        table = pa_csv.read_csv(pa.BufferReader(arrow_buffer(fs.read_bytes(url))),
                                read_options=pa_csv.ReadOptions(use_threads=False))
    except pa.ArrowInvalid as err:
        raise DataFormatError(f"{url}: not a readable CSV file with a header row ({err})") from err
    return table_to_raw(table, url, label_column, "csv")


def read_parquet(url: str, label_column: str = "label") -> RawData:
    data = arrow_buffer(fs.read_bytes(url))
    try:
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
        unpacked = meta.num_rows * meta.num_columns * 8  # read as float64 (N, F) features
    except (pa.ArrowInvalid, OSError) as err:
        raise DataFormatError(f"{url}: not a readable Parquet file ({err})") from err
    if unpacked > fs.max_read_bytes():
        raise DataFormatError(f"{url}: its columns unpack to {unpacked} bytes, more than the "
                              f"{fs.max_read_bytes()} a data file may hold "
                              "(MFSTORE_MAX_READ_BYTES)")
    try:
        table = pq.read_table(pa.BufferReader(data), use_threads=False,
                              pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataFormatError(f"{url}: not a readable Parquet file ({err})") from err
    return table_to_raw(table, url, label_column, "parquet")
