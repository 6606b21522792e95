"""The v2 gRPC protocol's inference messages (`inference.ModelInferRequest` / `Response`):
inputs as typed `contents` or as `raw_input_contents`, outputs always as
`raw_output_contents` (as Triton answers); the same checks as REST."""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from serving.errors import RequestError
from serving.models import ModelVersion
from serving.requests import InferRequest, RequestedOutput, batch_rows, requested_output
from serving.tensors import check_shape, clip, from_raw, from_values, to_raw

CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def parameter(value: pb.InferParameter) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def _tensor(tensor: Any, raw: bytes | None, model: ModelVersion) -> np.ndarray:
    name = tensor.name
    spec = model.inputs[name]
    if tensor.datatype != spec.datatype:
        raise RequestError(400, f"input {name!r} has datatype {clip(repr(tensor.datatype))}, "
                                f"the model expects {spec.datatype}")
    shape = check_shape(name, list(tensor.shape), spec)
    if raw is not None:
        return from_raw(name, raw, spec, shape)
    field = CONTENTS.get(spec.datatype)
    if field is None:
        raise RequestError(400, f"input {name!r}: {spec.datatype} travels in "
                                "raw_input_contents only")
    return from_values(name, list(getattr(tensor.contents, field)), spec, shape)


def _inputs(request: pb.ModelInferRequest, model: ModelVersion) -> dict[str, np.ndarray]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise RequestError(400, f"raw_input_contents holds {len(raw)} tensors for "
                                f"{len(request.inputs)} inputs")
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name not in model.inputs:
            raise RequestError(400, f"unknown input {clip(repr(tensor.name))}; the model takes "
                                    f"{', '.join(model.inputs)}")
        if tensor.name in arrays:
            raise RequestError(400, f"input {tensor.name!r} is given twice")
        arrays[tensor.name] = _tensor(tensor, raw[i] if raw else None, model)
    missing = [n for n in model.inputs if n not in arrays]
    if missing:
        raise RequestError(400, f"missing input {missing[0]!r}")
    return arrays


def parse_infer(request: pb.ModelInferRequest, model: ModelVersion) -> InferRequest:
    """Validate an infer request against the model's configuration."""
    arrays = _inputs(request, model)
    outputs = [requested_output(out.name, {k: parameter(v) for k, v in out.parameters.items()},
                                True, model) for out in request.outputs]
    return InferRequest(request.id or None, arrays,
                        outputs or [RequestedOutput(n, True) for n in model.outputs],
                        batch_rows(arrays, model))


def encode_response(model: ModelVersion, request: InferRequest,
                    results: dict[str, np.ndarray]) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model.name, model_version=str(model.version),
                                     id=request.id or "")
    for out in request.outputs:
        array = results[out.name]
        response.outputs.add(name=out.name, datatype=model.output_datatype(out),
                             shape=array.shape)
        response.raw_output_contents.append(to_raw(array))
    return response
