"""Token-id sequences: the examples of a text model whose first layer is `embed`.

    .npz     `x` (N, T) integer ids (and optionally `x_test`), `y` labels; read as token ids
             with format `tokens` (a plain `.npz` is read as numeric features)
    Parquet  one list-of-integers feature column beside the label column, found by its type;
             each row's list is padded with 0 to the longest one

Id 0 is padding: an `embed` layer leaves it out of its mean. Ids travel through the store's
streams as float32, which holds every id below 2**24 exactly (the largest vocabulary
`spec.MAX_VOCAB` allows).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa

from mfstore.errors import DataFormatError
from mfstore.readers.raw import RawData


def is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def padded(column: pa.ChunkedArray, url: str, name: str) -> np.ndarray:
    """A list column as (N, T) int64 ids, each row padded with 0 to the longest, T >= 1."""
    if not pa.types.is_integer(column.type.value_type):
        raise DataFormatError(f"{url}: column {name!r} holds lists of {column.type.value_type}; "
                              "token ids must be integers")
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if array.null_count:
        raise DataFormatError(f"{url}: column {name!r} has {array.null_count} empty rows; give "
                              "every example a list of token ids (an empty list is padding)")
    values = array.flatten()
    if values.null_count:
        raise DataFormatError(f"{url}: column {name!r} holds {values.null_count} empty token "
                              "ids")
    offsets = array.offsets.to_numpy().astype(np.int64)  # (N + 1,)
    lengths = np.diff(offsets)
    out = np.zeros((len(lengths), max(int(lengths.max(initial=0)), 1)), np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(rows)) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[rows, cols] = values.to_numpy(zero_copy_only=False)
    return out


def table_tokens(table: pa.Table, url: str, label_column: str, features: list[str],
                 y: np.ndarray, names: list[str] | None, fmt: str) -> RawData:
    """A table whose one feature column is a list of token ids."""
    if len(features) != 1:
        raise DataFormatError(f"{url}: a list column holds token ids, and then it must be the "
                              f"only feature column beside {label_column!r}; found "
                              f"{features[:12]}")
    x = padded(table.column(features[0]), url, features[0])
    return RawData(x, y, None, None, format=fmt, class_names=names, tokens=True)


def as_tokens(raw: RawData, url: str) -> RawData:
    """Arrays read from an `.npz`, taken as token ids."""
    if raw.x_train.ndim != 2:
        raise DataFormatError(f"{url}: token ids must be shaped (examples, length), got "
                              f"{raw.x_train.shape}")
    return replace(raw, tokens=True, format="tokens")
