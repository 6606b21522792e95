"""An inference request whatever protocol carried it, and the checks both protocols share:
the batch size against the model's `max_batch_size`, and each requested output with its
binary_data and classification parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from serving.errors import RequestError
from serving.tensors import clip


class ModelVersion(Protocol):
    """What reading a request needs of the model it is for (a `models.ModelVersion` is
    one): its name, its batch limit (0: no batch axis) and its outputs by name."""

    @property
    def name(self) -> str: ...

    @property
    def max_batch_size(self) -> int: ...

    @property
    def outputs(self) -> Any: ...


@dataclass
class RequestedOutput:
    name: str
    binary: bool = False
    class_count: int = 0  # > 0: the classification extension's top-k strings


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput]
    rows: int  # examples in the request (1 without a batch axis)


def batch_rows(arrays: dict[str, np.ndarray], model: ModelVersion) -> int:
    """The request's batch size, checked against the model's `max_batch_size`."""
    if model.max_batch_size == 0:
        return 1
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) > 1:
        raise RequestError(400, f"the inputs disagree on the batch size: {sorted(sizes)}")
    rows = sizes.pop()
    if rows > model.max_batch_size:
        raise RequestError(400, f"inference request batch-size must be <= "
                                f"{model.max_batch_size} for {model.name!r}, got {rows}")
    return rows


def requested_output(name: Any, parameters: dict[str, Any], default_binary: bool,
                     model: ModelVersion) -> RequestedOutput:
    """One requested output, its binary_data and classification parameters checked."""
    if not isinstance(name, str) or name not in model.outputs:
        raise RequestError(400, f"unknown output {clip(repr(name))}; the model gives "
                                f"{', '.join(model.outputs)}")
    binary = parameters.get("binary_data", default_binary)
    if not isinstance(binary, bool):
        raise RequestError(400, f"output {name!r}: binary_data must be true or false")
    k = parameters.get("classification")
    return RequestedOutput(name, binary, 0 if k is None else class_count(name, k, model))


def class_count(name: str, k: Any, model: ModelVersion) -> int:
    """The classification extension's k for output `name`: 1..values per example."""
    if model.max_batch_size == 0:
        raise RequestError(400, f"output {name!r}: classification needs a model with a batch "
                                "axis (max_batch_size > 0)")
    per_example = math.prod(model.outputs[name].shape[1:])
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= per_example:
        raise RequestError(400, f"output {name!r}: classification must be a whole number in "
                                f"1..{per_example} (its values per example), got "
                                f"{clip(repr(k))}")
    return k
