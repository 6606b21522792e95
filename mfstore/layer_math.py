"""The math of every layer kind and activation, defined once: each entry holds the PyTorch
computation `MFLayer` runs and the ONNX nodes `onnx_graph` writes for it, side by side, so
the two cannot drift apart. `spec.py` names the kinds and activations (without importing
torch); a name it accepts and this module lacks is an error here, never a silent identity.

Every kind is `finish(linear(a_in, W) + b)`: a part linear in the weights, then the bias,
the activation and any pooling. Feedback alignment swaps `W` for a fixed random matrix in the
backward pass of the linear part only, so it needs the two parts apart; `forward` may run a
fused form of the same computation.

    dense: a = act(a_in.flatten(1) W^T + b)                       (B, n)
    conv:  a = pool(act(conv3x3(a_in, W, pad 1) + b))             (B, C, H', W')
    local: a = pool(act(Σ_j W[l, :, j] patch_l(a_in)_j + b[:, l]))   (B, C, H', W'); one
           weight matrix W[l] (C, C_in k k) per output position l: no weight sharing
    embed: a = act(mean_{t: id_t > 0} E[id_t] + b)                 (B, D); id 0 is padding,
           a sequence of padding only gives act(b)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mfstore.errors import SpecError
from mfstore.spec import ACTIVATIONS as ACTIVATION_NAMES
from mfstore.spec import KINDS as KIND_NAMES
from mfstore.spec import LayerSpec


class LayerWeights(Protocol):
    """What the math reads of a layer (an `LayerWeights` is one): its spec and parameters."""

    @property
    def spec(self) -> LayerSpec: ...

    @property
    def weight(self) -> torch.Tensor: ...

    @property
    def bias(self) -> torch.Tensor | None: ...


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
    """One layer kind: its weight and bias shapes and fan-in, its forward pass in PyTorch
    (`linear` then `finish`, or `fused`) and in ONNX."""

    weight_shape: Callable[[LayerSpec], tuple[int, ...]]
    fan_in: Callable[[LayerSpec], int]
    linear: Callable[[LayerSpec, torch.Tensor, torch.Tensor], torch.Tensor]  # (spec, a_in, W)
    finish: Callable[[LayerSpec, torch.Tensor, torch.Tensor | None], torch.Tensor]  # z, b -> a
    onnx: Callable[[GraphBuilder, LayerWeights, str, str], str]  # (graph, layer, input, prefix)
    bias_shape: Callable[[LayerSpec], tuple[int, ...]] = lambda s: (s.width,)
    fused: Callable[[LayerWeights, torch.Tensor], torch.Tensor] | None = None
    zero_bias: bool = False  # start the bias at zero (embed: keeps every unit alive)

    def forward(self, layer: LayerWeights, a_in: torch.Tensor) -> torch.Tensor:
        """The layer's activations: (B, *spec.out_shape)."""
        if self.fused is not None:
            return self.fused(layer, a_in)
        return self.finish(layer.spec, self.linear(layer.spec, a_in, layer.weight), layer.bias)


def _pool(spec: LayerSpec, a: torch.Tensor) -> torch.Tensor:
    if spec.pool == "avg":
        return F.avg_pool2d(a, 2)  # (B, C, H/2, W/2)
    if spec.pool == "max":
        return F.max_pool2d(a, 2)
    return a


def _dense_linear(spec: LayerSpec, a_in: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(a_in.flatten(1), weight)  # (B, n)


def _dense_finish(spec: LayerSpec, z: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return activation(spec.activation).torch(z if bias is None else z + bias)


def _dense(layer: LayerWeights, a_in: torch.Tensor) -> torch.Tensor:
    z = F.linear(a_in.flatten(1), layer.weight, layer.bias)  # (B, n)
    return activation(layer.spec.activation).torch(z)


def _conv_linear(spec: LayerSpec, a_in: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(a_in, weight, padding=1)  # (B, C, H, W)


def _conv_finish(spec: LayerSpec, z: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    z = z if bias is None else z + bias.view(-1, 1, 1)
    return _pool(spec, activation(spec.activation).torch(z))


def _conv(layer: LayerWeights, a_in: torch.Tensor) -> torch.Tensor:
    a = activation(layer.spec.activation).torch(
        F.conv2d(a_in, layer.weight, layer.bias, padding=1))  # (B, C, H, W)
    return _pool(layer.spec, a)


def _local_positions(spec: LayerSpec) -> tuple[int, int]:
    """(H', W'): where the patches of a local layer sit, before pooling."""
    assert spec.kernel is not None and spec.stride is not None
    _, h, w = spec.in_shape
    return (h - spec.kernel) // spec.stride + 1, (w - spec.kernel) // spec.stride + 1


def _local_linear(spec: LayerSpec, a_in: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Each patch through its own weights: W (L, C, C_in k k) on patches (B, C_in k k, L)."""
    assert spec.kernel is not None and spec.stride is not None
    patches = F.unfold(a_in, spec.kernel, stride=spec.stride)  # (B, J, L), J = C_in k k
    z = torch.bmm(patches.permute(2, 0, 1), weight.transpose(1, 2))  # (L, B, C)
    return z.permute(1, 2, 0).reshape(a_in.shape[0], spec.width, *_local_positions(spec))


def _local_finish(spec: LayerSpec, z: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    z = z if bias is None else z + bias  # bias (C, H', W'): one per output unit
    return _pool(spec, activation(spec.activation).torch(z))


def _embed_linear(spec: LayerSpec, a_in: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean embedding of each sequence's ids, padding (id 0) left out: (B, D)."""
    ids = a_in.long().clamp(min=0)  # ids travel as float32 in streams: exact below 2**24
    return F.embedding_bag(ids, weight, mode="mean", padding_idx=0)


def _parameters(g: GraphBuilder, layer: LayerWeights, prefix: str) -> list[str]:
    weight = g.const(f"{prefix}/weight", layer.weight.detach().cpu().numpy())
    if layer.bias is None:
        return [weight]
    return [weight, g.const(f"{prefix}/bias", layer.bias.detach().cpu().numpy())]


def _dense_onnx(g: GraphBuilder, layer: LayerWeights, a: str, prefix: str) -> str:
    spec = layer.spec
    flat = g.op("Flatten", [a], f"{prefix}/flatten", axis=1) if len(spec.in_shape) > 1 else a
    z = g.op("Gemm", [flat, *_parameters(g, layer, prefix)], f"{prefix}/gemm", transB=1)
    return activation(spec.activation).onnx(g, z, prefix)  # (B, n)


def _onnx_pool(g: GraphBuilder, spec: LayerSpec, act: str, prefix: str) -> str:
    if spec.pool == "none":
        return act
    pool = "AveragePool" if spec.pool == "avg" else "MaxPool"
    return g.op(pool, [act], f"{prefix}/pool", kernel_shape=[2, 2], strides=[2, 2])


def _conv_onnx(g: GraphBuilder, layer: LayerWeights, a: str, prefix: str) -> str:
    spec = layer.spec
    z = g.op("Conv", [a, *_parameters(g, layer, prefix)], f"{prefix}/conv",
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    act = activation(spec.activation).onnx(g, z, prefix)  # (B, C, H, W)
    return _onnx_pool(g, spec, act, prefix)


def _im2col_kernel(channels: int, k: int) -> np.ndarray:
    """A grouped convolution's one-hot kernels that copy each k x k patch into channels,
    ordered as `F.unfold` orders them (channel, row, column): (C_in k k, 1, k, k)."""
    kernel = np.zeros((channels * k * k, 1, k, k), np.float32)
    for c in range(channels):
        for i in range(k):
            for j in range(k):
                kernel[c * k * k + i * k + j, 0, i, j] = 1.0
    return kernel


def _local_onnx(g: GraphBuilder, layer: LayerWeights, a: str, prefix: str) -> str:
    spec = layer.spec
    assert spec.kernel is not None and spec.stride is not None
    channels, k, (h, w) = spec.in_shape[0], spec.kernel, _local_positions(spec)
    j, positions = channels * k * k, h * w
    patches = g.op("Conv", [a, g.const(f"{prefix}/im2col", _im2col_kernel(channels, k))],
                   f"{prefix}/patches", kernel_shape=[k, k], strides=[spec.stride] * 2,
                   group=channels)  # (B, J, H', W')
    flat = g.op("Reshape", [patches, g.const(f"{prefix}/patch_shape",
                                              np.array([0, j, positions], np.int64))],
                f"{prefix}/patch_rows")  # (B, J, L)
    per_position = g.op("Transpose", [flat], f"{prefix}/by_position", perm=[2, 0, 1])
    weight = layer.weight.detach().cpu().numpy().transpose(0, 2, 1)  # (L, J, C)
    z = g.op("MatMul", [per_position, g.const(f"{prefix}/weight", np.ascontiguousarray(weight))],
             f"{prefix}/matmul")  # (L, B, C)
    z = g.op("Transpose", [z], f"{prefix}/by_unit", perm=[1, 2, 0])  # (B, C, L)
    z = g.op("Reshape", [z, g.const(f"{prefix}/out_shape",
                                    np.array([0, spec.width, h, w], np.int64))],
             f"{prefix}/z")  # (B, C, H', W')
    if layer.bias is not None:
        z = g.op("Add", [z, g.const(f"{prefix}/bias", layer.bias.detach().cpu().numpy())],
                 f"{prefix}/biased")
    return _onnx_pool(g, spec, activation(spec.activation).onnx(g, z, prefix), prefix)


def _embed_onnx(g: GraphBuilder, layer: LayerWeights, ids: str, prefix: str) -> str:
    """ids (B, T) int64 -> act(mean of the embeddings of the ids > 0 + b): (B, D)."""
    zero = g.const(f"{prefix}/zero_id", np.array(0, np.int64))
    rows = g.op("Max", [ids, zero], f"{prefix}/ids")  # negative ids count as padding
    table = g.const(f"{prefix}/weight", layer.weight.detach().cpu().numpy())
    vectors = g.op("Gather", [table, rows], f"{prefix}/vectors", axis=0)  # (B, T, D)
    mask = g.op("Cast", [g.op("Greater", [ids, zero], f"{prefix}/is_token")],
                f"{prefix}/mask", to=1)  # (B, T) float
    axis1 = g.const(f"{prefix}/axis1", np.array([1], np.int64))
    axis2 = g.const(f"{prefix}/axis2", np.array([2], np.int64))
    kept = g.op("Mul", [vectors, g.op("Unsqueeze", [mask, axis2], f"{prefix}/mask3")],
                f"{prefix}/kept")
    total = g.op("ReduceSum", [kept, axis1], f"{prefix}/sum", keepdims=0)  # (B, D)
    count = g.op("ReduceSum", [mask, axis1], f"{prefix}/count", keepdims=1)  # (B, 1)
    one = g.const(f"{prefix}/one", np.array(1.0, np.float32))
    z = g.op("Div", [total, g.op("Max", [count, one], f"{prefix}/count1")], f"{prefix}/mean")
    if layer.bias is not None:
        z = g.op("Add", [z, g.const(f"{prefix}/bias", layer.bias.detach().cpu().numpy())],
                 f"{prefix}/biased")
    return activation(layer.spec.activation).onnx(g, z, prefix)  # (B, D)


KINDS: dict[str, Kind] = {
    "dense": Kind(lambda s: (s.width, s.in_features), lambda s: s.in_features, _dense_linear,
                  _dense_finish, _dense_onnx, fused=_dense),
    "conv": Kind(lambda s: (s.width, s.in_shape[0], 3, 3), lambda s: s.in_shape[0] * 9,
                 _conv_linear, _conv_finish, _conv_onnx, fused=_conv),
    "local": Kind(lambda s: (math.prod(_local_positions(s)), s.width,
                             s.in_shape[0] * (s.kernel or 0) ** 2),
                  lambda s: s.in_shape[0] * (s.kernel or 0) ** 2, _local_linear, _local_finish,
                  _local_onnx, bias_shape=lambda s: (s.width, *_local_positions(s))),
    "embed": Kind(lambda s: (s.vocab or 0, s.width), lambda s: 1, _embed_linear, _dense_finish,
                  _embed_onnx, zero_bias=True),
}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise SpecError(f"unknown layer kind {name!r}; choose one of: "
                        f"{', '.join(KINDS)}") from None


assert set(ACTIVATIONS) == set(ACTIVATION_NAMES) and set(KINDS) == set(KIND_NAMES)
