"""Tensors of the v2 protocol, whatever carries them: datatypes, shapes, values given as JSON
numbers or protobuf fields, raw little-endian bytes, BYTES elements, and the classification
extension's top-k strings.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import RequestError

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_}
ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
              "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
              "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
              "tensor(string)": "BYTES"}
# numpy kinds a JSON or protobuf value list may have for each kind of datatype
ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf", "O": "OSU"}
WORDS = {"b": "true or false", "i": "whole numbers", "u": "whole numbers", "f": "numbers",
         "O": "strings"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # v2 datatype, e.g. FP32
    shape: tuple[int, ...]  # -1 for the batch (and any variable) axis

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def clip(text: str, limit: int = 60) -> str:
    """A value echoed in an error message, cut to `limit` characters."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def check_shape(name: str, shape: Any, spec: TensorSpec) -> tuple[int, ...]:
    """A request's shape for input `name`, checked against the model's."""
    if not isinstance(shape, list | tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 62 for d in shape):
        raise RequestError(400, f"input {name!r}: shape must be a list of whole numbers >= 0")
    fits = len(shape) == len(spec.shape) and all(
        want in (-1, got) for got, want in zip(shape, spec.shape, strict=True))
    if not fits or (shape and shape[0] == 0):
        raise RequestError(400, f"input {name!r} has shape {clip(str(list(shape)))}, the model "
                                f"expects {list(spec.shape)} (-1: any size >= 1)")
    return tuple(shape)


def from_values(name: str, values: Any, spec: TensorSpec, shape: tuple[int, ...],
                finite: bool = False) -> np.ndarray:
    """An array of `shape` from (nested) lists of values; `finite` refuses values that
    overflow the datatype (JSON cannot carry NaN or infinity, so these came from overflow)."""
    dtype = np.dtype(DATATYPES[spec.datatype])
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError(400, f"input {name!r}: data must be (nested lists of) "
                                f"{WORDS[dtype.kind]} of one shape") from None
    count = math.prod(shape)
    if array.size != count:
        raise RequestError(400, f"input {name!r} has {array.size} values, shape {list(shape)} "
                                f"needs {count}")
    if count and array.dtype.kind not in ACCEPTED_KINDS[dtype.kind]:
        if array.dtype.kind == "O" and dtype.kind != "O":
            raise RequestError(400, f"input {name!r}: data holds a number that {spec.datatype} "
                                    "cannot hold")
        raise RequestError(400, f"input {name!r}: data must be (nested lists of) "
                                f"{WORDS[dtype.kind]} for {spec.datatype}")
    return _converted(name, array, dtype, spec.datatype, finite).reshape(shape)


def _converted(name: str, array: np.ndarray, dtype: np.dtype, datatype: str,
               finite: bool) -> np.ndarray:
    """`array` as `dtype`, refused where a value does not fit."""
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise RequestError(400, f"input {name!r}: {bad} lies outside {datatype} "
                                    f"({info.min}..{info.max})")
    if dtype.kind == "O":
        return np.array([v.encode() if isinstance(v, str) else v for v in array.reshape(-1)],
                        dtype=np.object_)
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(dtype, copy=False)
    if finite and dtype.kind == "f" and not np.isfinite(converted).all():
        raise RequestError(400, f"input {name!r}: a value lies outside the range of {datatype}")
    return converted


def raw_size(spec: TensorSpec, shape: tuple[int, ...]) -> int:
    """Bytes of a fixed-size tensor of `shape`."""
    return math.prod(shape) * np.dtype(DATATYPES[spec.datatype]).itemsize


def from_raw(name: str, raw: bytes | memoryview, spec: TensorSpec,
             shape: tuple[int, ...]) -> np.ndarray:
    """An array of `shape` from raw little-endian bytes (BYTES: 4-byte length, then the bytes,
    for each element)."""
    if spec.datatype == "BYTES":
        return _split_bytes(name, bytes(raw), math.prod(shape)).reshape(shape)
    if len(raw) != raw_size(spec, shape):
        raise RequestError(400, f"input {name!r}: {len(raw)} bytes of data, shape "
                                f"{list(shape)} of {spec.datatype} needs {raw_size(spec, shape)}")
    return np.frombuffer(raw, DATATYPES[spec.datatype]).reshape(shape)


def _split_bytes(name: str, raw: bytes, count: int) -> np.ndarray:
    items: list[bytes] = []
    at = 0
    while at + 4 <= len(raw) and len(items) < count:
        size = int.from_bytes(raw[at:at + 4], "little")
        items.append(raw[at + 4:at + 4 + size])
        at += 4 + size
    if len(items) != count or at != len(raw):
        raise RequestError(400, f"input {name!r}: the BYTES data does not hold {count} "
                                "length-prefixed elements")
    return np.array(items, dtype=np.object_)


def to_raw(array: np.ndarray) -> bytes:
    """The raw bytes of an output tensor (BYTES elements length-prefixed)."""
    if array.dtype == np.object_:
        return b"".join(len(b).to_bytes(4, "little") + b
                        for b in (v if isinstance(v, bytes) else str(v).encode()
                                  for v in array.reshape(-1)))
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()  # C order, whatever the array's layout


def json_values(array: np.ndarray) -> list[Any]:
    """The flat values of an output for JSON: NaN and infinities, which JSON has no numbers
    for, become the strings "NaN", "Infinity" and "-Infinity" (what JavaScript's Number() and
    NumPy read back); BYTES become text."""
    flat = array.reshape(-1)
    if flat.dtype == np.object_:
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    if flat.dtype.kind != "f" or np.isfinite(flat).all():
        return flat.tolist()
    return [v if math.isfinite(v) else ("NaN" if math.isnan(v) else
                                         "Infinity" if v > 0 else "-Infinity")
            for v in flat.tolist()]


def classification(array: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """Triton's classification extension: for each example (first axis), its `k` largest
    values as "value:index[:label]" strings, largest first. (B, ...) -> (B, k) BYTES."""
    flat = array.reshape(len(array), -1)  # (B, N)
    top = np.argsort(-flat, axis=1, kind="stable")[:, :k]  # (B, k)
    number = "{:f}" if flat.dtype.kind == "f" else "{}"
    rows = [[(number.format(flat[b, i]) + f":{i}"
              + (f":{labels[i]}" if labels and i < len(labels) else "")).encode()
             for i in top[b]] for b in range(len(flat))]
    return np.array(rows, dtype=np.object_).reshape(len(flat), k)
