"""The KServe / Triton v2 inference protocol: JSON tensors and the binary tensor extension.

A binary request is a JSON header of `Inference-Header-Content-Length` bytes followed by the
raw input tensors, each announced by `parameters.binary_data_size`; a binary response is laid
out the same way for the outputs requested with `parameters.binary_data`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import RequestError

DATATYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
             "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
             "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # v2 datatype, e.g. FP32
    shape: tuple[int, ...]  # -1 for the batch (and any dynamic) axis

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str]  # requested, in order
    binary: set[str] = field(default_factory=set)  # outputs to send as binary data


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(400, f"{what} must be a JSON object")
    return value


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        head, rest = body, b""
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise RequestError(400, f"Inference-Header-Content-Length must be a whole number, "
                                    f"got {header_length!r}") from None
        if not 0 < size <= len(body):
            raise RequestError(400, f"Inference-Header-Content-Length is {size} but the body "
                                    f"holds {len(body)} bytes")
        head, rest = body[:size], body[size:]
    try:
        return _object(json.loads(head), "the request"), rest
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"malformed JSON: {err}") from None


def _check_shape(name: str, shape: Any, spec: TensorSpec) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise RequestError(400, f"input {name!r}: shape must be a list of whole numbers >= 0")
    fits = len(shape) == len(spec.shape) and all(
        want in (-1, got) for got, want in zip(shape, spec.shape, strict=True))
    if not fits or (shape and shape[0] == 0):
        raise RequestError(400, f"input {name!r} has shape {shape}, the model expects "
                                f"{list(spec.shape)} (-1: any size >= 1)")
    return tuple(shape)


def _tensor(item: dict[str, Any], spec: TensorSpec, binary: bytes,
            offset: int) -> tuple[np.ndarray, int]:
    name = item["name"]
    if item.get("datatype") != spec.datatype:
        raise RequestError(400, f"input {name!r} has datatype {item.get('datatype')!r}, the "
                                f"model expects {spec.datatype}")
    shape = _check_shape(name, item.get("shape"), spec)
    count, dtype = math.prod(shape), np.dtype(DATATYPES[spec.datatype])
    size = _object(item.get("parameters", {}), "parameters").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize:
            raise RequestError(400, f"input {name!r}: binary_data_size is {size} but shape "
                                    f"{list(shape)} of {spec.datatype} needs "
                                    f"{count * dtype.itemsize} bytes")
        if offset + size > len(binary):
            raise RequestError(400, f"input {name!r}: the body ends {offset + size - len(binary)}"
                                    " bytes before its binary data does")
        return np.frombuffer(binary, dtype, count, offset).reshape(shape), offset + size
    if "data" not in item:
        raise RequestError(400, f"input {name!r} has neither data nor binary_data_size")
    try:
        array = np.asarray(item["data"], dtype=dtype)
    except (ValueError, TypeError):
        raise RequestError(400, f"input {name!r}: data must be (nested lists of) numbers") from None
    if array.size != count:
        raise RequestError(400, f"input {name!r} has {array.size} values, shape {list(shape)} "
                                f"needs {count}")
    return array.reshape(shape), offset


def parse_infer(body: bytes, header_length: str | None, inputs: dict[str, TensorSpec],
                outputs: list[str]) -> InferRequest:
    """Validate an infer request against the model's signature."""
    request, binary = _header(body, header_length)
    items = request.get("inputs")
    if not isinstance(items, list) or not items:
        raise RequestError(400, "the request needs a non-empty list of inputs")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in items:
        item = _object(item, "each input")
        name = item.get("name")
        if name not in inputs:
            raise RequestError(400, f"unknown input {name!r}; the model takes "
                                    f"{', '.join(inputs)}")
        arrays[name], offset = _tensor(item, inputs[name], binary, offset)
    missing = [n for n in inputs if n not in arrays]
    if missing:
        raise RequestError(400, f"missing input {missing[0]!r}")
    if offset != len(binary):
        raise RequestError(400, f"the body holds {len(binary) - offset} bytes after the "
                                "announced binary data")
    params = _object(request.get("parameters", {}), "parameters")
    default_binary = bool(params.get("binary_data_output", False))
    wanted = request.get("outputs")
    if wanted is None:
        return InferRequest(_id(request), arrays, list(outputs),
                            set(outputs) if default_binary else set())
    if not isinstance(wanted, list):
        raise RequestError(400, "outputs must be a list")
    names, binary_out = [], set()
    for out in wanted:
        out = _object(out, "each output")
        if out.get("name") not in outputs:
            raise RequestError(400, f"unknown output {out.get('name')!r}; the model gives "
                                    f"{', '.join(outputs)}")
        names.append(out["name"])
        if _object(out.get("parameters", {}), "parameters").get("binary_data", default_binary):
            binary_out.add(out["name"])
    return InferRequest(_id(request), arrays, names, binary_out)


def _id(request: dict[str, Any]) -> str | None:
    value = request.get("id")
    if value is not None and not isinstance(value, str):
        raise RequestError(400, "id must be a string")
    return value


def encode_response(model: str, version: str, request: InferRequest,
                    results: dict[str, np.ndarray],
                    datatypes: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary outputs after the JSON header)."""
    outputs, chunks = [], []
    for name in request.outputs:
        array = results[name]
        out: dict[str, Any] = {"name": name, "datatype": datatypes[name],
                               "shape": list(array.shape)}
        if name in request.binary:
            raw = np.ascontiguousarray(array).tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = array.reshape(-1).tolist()
        outputs.append(out)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    head = json.dumps(response, separators=(",", ":")).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream",
                                     HEADER_LENGTH: str(len(head))}
