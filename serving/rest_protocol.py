"""The v2 REST protocol's inference messages: JSON tensors and the binary tensor extension.

A binary request is a JSON header of `Inference-Header-Content-Length` bytes followed by the
raw input tensors, each announced by `parameters.binary_data_size`; a binary response is laid
out the same way for the outputs requested with `parameters.binary_data`. An output requested
with `parameters.classification: k` comes back as BYTES of shape (B, k): the classification
extension.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mfstore.numbers import NumberError, whole_number
from serving.errors import RequestError
from serving.models import ModelVersion
from serving.requests import InferRequest, RequestedOutput, batch_rows, requested_output
from serving.tensors import (
    check_shape,
    clip,
    from_raw,
    from_values,
    json_values,
    raw_size,
    to_raw,
)

HEADER_LENGTH = "inference-header-content-length"


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(400, f"{what} must be a JSON object")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON; send such values as binary data")


def read_json(data: bytes | str, what: str = "the request") -> dict[str, Any]:
    """A JSON object, refused with a 400 when it is not one (NaN literals, nesting deeper
    than Python's recursion limit and all)."""
    try:
        return _object(json.loads(data, parse_constant=_not_json), what)
    except (UnicodeDecodeError, ValueError) as err:
        raise RequestError(400, f"malformed JSON: {err}") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        return read_json(body), memoryview(b"")
    try:
        size = whole_number(header_length)
    except NumberError as err:
        raise RequestError(400, f"Inference-Header-Content-Length {err}") from None
    if not 0 < size <= len(body):
        raise RequestError(400, f"Inference-Header-Content-Length is {size} but the body holds "
                                f"{len(body)} bytes")
    return read_json(body[:size]), memoryview(body)[size:]


def _tensor(item: dict[str, Any], model: ModelVersion, binary: memoryview,
            offset: int) -> tuple[np.ndarray, int]:
    name = item["name"]
    spec = model.inputs[name]
    if item.get("datatype") != spec.datatype:
        raise RequestError(400, f"input {name!r} has datatype "
                                f"{clip(repr(item.get('datatype')))}, the model expects "
                                f"{spec.datatype}")
    shape = check_shape(name, item.get("shape"), spec)
    size = _object(item.get("parameters", {}), "parameters").get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise RequestError(400, f"input {name!r} has neither data nor binary_data_size")
        return from_values(name, item["data"], spec, shape, finite=True), offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or (
            spec.datatype != "BYTES" and size != raw_size(spec, shape)):
        raise RequestError(400, f"input {name!r}: binary_data_size is {clip(repr(size))} but "
                                f"shape {list(shape)} of {spec.datatype} needs "
                                f"{raw_size(spec, shape)} bytes")
    if offset + size > len(binary):
        raise RequestError(400, f"input {name!r}: the body ends {offset + size - len(binary)} "
                                "bytes before its binary data does")
    return from_raw(name, binary[offset:offset + size], spec, shape), offset + size


def _inputs(request: dict[str, Any], model: ModelVersion,
            binary: memoryview) -> dict[str, np.ndarray]:
    items = request.get("inputs")
    if not isinstance(items, list) or not items:
        raise RequestError(400, "the request needs a non-empty list of inputs")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in items:
        item = _object(item, "each input")
        name = item.get("name")
        if not isinstance(name, str) or name not in model.inputs:
            raise RequestError(400, f"unknown input {clip(repr(name))}; the model takes "
                                    f"{', '.join(model.inputs)}")
        if name in arrays:
            raise RequestError(400, f"input {name!r} is given twice")
        arrays[name], offset = _tensor(item, model, binary, offset)
    missing = [n for n in model.inputs if n not in arrays]
    if missing:
        raise RequestError(400, f"missing input {missing[0]!r}")
    if offset != len(binary):
        raise RequestError(400, f"the body holds {len(binary) - offset} bytes after the "
                                "announced binary data")
    return arrays


def _outputs(request: dict[str, Any], model: ModelVersion) -> list[RequestedOutput]:
    params = _object(request.get("parameters", {}), "parameters")
    default_binary = params.get("binary_data_output", False) is True
    wanted = request.get("outputs")
    if wanted is None:
        return [RequestedOutput(n, default_binary) for n in model.outputs]
    if not isinstance(wanted, list):
        raise RequestError(400, "outputs must be a list")
    outputs = []
    for out in wanted:
        out = _object(out, "each output")
        outputs.append(requested_output(out.get("name"), _object(
            out.get("parameters", {}), "parameters"), default_binary, model))
    return outputs


def parse_infer(body: bytes, header_length: str | None, model: ModelVersion) -> InferRequest:
    """Validate an infer request against the model's configuration."""
    request, binary = _header(body, header_length)
    arrays = _inputs(request, model, binary)
    rows = batch_rows(arrays, model)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, "id must be a string")
    return InferRequest(request_id, arrays, _outputs(request, model), rows)


def encode_response(model: ModelVersion, request: InferRequest,
                    results: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary outputs after the JSON header)."""
    outputs, chunks = [], []
    for requested in request.outputs:
        array = results[requested.name]
        out: dict[str, Any] = {"name": requested.name,
                               "datatype": model.output_datatype(requested),
                               "shape": list(array.shape)}
        if requested.binary:
            raw = to_raw(array)
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = json_values(array)
        outputs.append(out)
    response: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version),
                                "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    head = json.dumps(response, separators=(",", ":")).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream",
                                     HEADER_LENGTH: str(len(head))}
