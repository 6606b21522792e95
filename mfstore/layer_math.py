"""The math of every layer kind and activation, defined once: each entry holds the PyTorch
computation `MFLayer` runs and the ONNX nodes `onnx_graph` writes for it, side by side, so
the two cannot drift apart. `spec.py` names the kinds and activations (without importing
torch); a name it accepts and this module lacks is an error here, never a silent identity.

    dense: a = act(a_in.flatten(1) W^T + b)                       (B, n)
    conv:  a = pool(act(conv3x3(a_in, W, pad 1) + b))             (B, C, H', W')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mfstore.errors import SpecError
from mfstore.spec import ACTIVATIONS as ACTIVATION_NAMES
from mfstore.spec import KINDS as KIND_NAMES
from mfstore.spec import LayerSpec

if TYPE_CHECKING:
    from mfstore.modules import MFLayer


class GraphBuilder(Protocol):
    """What an ONNX graph under construction offers (`onnx_graph._Graph`)."""

    def const(self, name: str, value: np.ndarray) -> str: ...

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: Any) -> str: ...


@dataclass(frozen=True)
class Activation:
    torch: Callable[[torch.Tensor], torch.Tensor]
    onnx: Callable[[GraphBuilder, str, str], str]  # (graph, input, node prefix) -> output


def _onnx_op(op: str) -> Callable[[GraphBuilder, str, str], str]:
    return lambda g, x, prefix: g.op(op, [x], f"{prefix}/{op.lower()}")


def _onnx_gelu(g: GraphBuilder, x: str, prefix: str) -> str:
    """Exact GELU as F.gelu computes it, 0.5 x (1 + erf(x / sqrt 2)); ONNX Gelu is opset 20."""
    root2 = g.const(f"{prefix}/sqrt2", np.array(math.sqrt(2.0), np.float32))
    half = g.const(f"{prefix}/half", np.array(0.5, np.float32))
    one = g.const(f"{prefix}/one", np.array(1.0, np.float32))
    erf = g.op("Erf", [g.op("Div", [x, root2], f"{prefix}/scaled")], f"{prefix}/erf")
    inner = g.op("Add", [erf, one], f"{prefix}/erf1")
    return g.op("Mul", [g.op("Mul", [x, half], f"{prefix}/halfx"), inner], f"{prefix}/gelu")


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(F.relu, _onnx_op("Relu")),
    "gelu": Activation(F.gelu, _onnx_gelu),
    "tanh": Activation(torch.tanh, _onnx_op("Tanh")),
    "sigmoid": Activation(torch.sigmoid, _onnx_op("Sigmoid")),
    "identity": Activation(lambda z: z, lambda g, x, prefix: x),
}


def activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise SpecError(f"unknown activation {name!r}; choose one of: "
                        f"{', '.join(ACTIVATIONS)}") from None


@dataclass(frozen=True)
class Kind:
    """One layer kind: its weight shape and fan-in, its forward pass in PyTorch and in ONNX."""

    weight_shape: Callable[[LayerSpec], tuple[int, ...]]
    fan_in: Callable[[LayerSpec], int]
    torch: Callable[[MFLayer, torch.Tensor], torch.Tensor]
    onnx: Callable[[GraphBuilder, MFLayer, str, str], str]  # (graph, layer, input, prefix)


def _dense(layer: MFLayer, a_in: torch.Tensor) -> torch.Tensor:
    z = F.linear(a_in.flatten(1), layer.weight, layer.bias)  # (B, n)
    return activation(layer.spec.activation).torch(z)


def _conv(layer: MFLayer, a_in: torch.Tensor) -> torch.Tensor:
    a = activation(layer.spec.activation).torch(
        F.conv2d(a_in, layer.weight, layer.bias, padding=1))  # (B, C, H, W)
    if layer.spec.pool == "avg":
        return F.avg_pool2d(a, 2)  # (B, C, H/2, W/2)
    if layer.spec.pool == "max":
        return F.max_pool2d(a, 2)
    return a


def _parameters(g: GraphBuilder, layer: MFLayer, prefix: str) -> list[str]:
    weight = g.const(f"{prefix}/weight", layer.weight.detach().cpu().numpy())
    if layer.bias is None:
        return [weight]
    return [weight, g.const(f"{prefix}/bias", layer.bias.detach().cpu().numpy())]


def _dense_onnx(g: GraphBuilder, layer: MFLayer, a: str, prefix: str) -> str:
    spec = layer.spec
    flat = g.op("Flatten", [a], f"{prefix}/flatten", axis=1) if len(spec.in_shape) > 1 else a
    z = g.op("Gemm", [flat, *_parameters(g, layer, prefix)], f"{prefix}/gemm", transB=1)
    return activation(spec.activation).onnx(g, z, prefix)  # (B, n)


def _conv_onnx(g: GraphBuilder, layer: MFLayer, a: str, prefix: str) -> str:
    spec = layer.spec
    z = g.op("Conv", [a, *_parameters(g, layer, prefix)], f"{prefix}/conv",
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    act = activation(spec.activation).onnx(g, z, prefix)  # (B, C, H, W)
    if spec.pool == "none":
        return act
    pool = "AveragePool" if spec.pool == "avg" else "MaxPool"
    return g.op(pool, [act], f"{prefix}/pool", kernel_shape=[2, 2], strides=[2, 2])


KINDS: dict[str, Kind] = {
    "dense": Kind(lambda s: (s.width, s.in_features), lambda s: s.in_features, _dense,
                  _dense_onnx),
    "conv": Kind(lambda s: (s.width, s.in_shape[0], 3, 3), lambda s: s.in_shape[0] * 9, _conv,
                 _conv_onnx),
}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise SpecError(f"unknown layer kind {name!r}; choose one of: "
                        f"{', '.join(KINDS)}") from None


assert set(ACTIVATIONS) == set(ACTIVATION_NAMES) and set(KINDS) == set(KIND_NAMES)
