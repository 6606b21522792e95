"""PyTorch modules: one Mono-Forward layer (`MFLayer`) and a stack of them (`MFNet`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from mfstore import layer_math
from mfstore.errors import SpecError
from mfstore.spec import LayerSpec

MODES = ("bp", "ff")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise SpecError(f"unknown prediction mode {mode!r}; choose bp or ff")
    return mode


def layer_generator(seed: int, index: int) -> torch.Generator:
    """The init RNG of layer `index`: depends on (seed, index) only, so adding layers after it
    never changes it (hot-plugging)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _uniform(shape: Sequence[int], fan_in: int, gen: torch.Generator) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default (kaiming_uniform, a=sqrt(5))
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound, generator=gen))


class MFLayer(nn.Module):
    """`a = act(a_in W^T + b)` (conv, local, embed: see `layer_math`) and goodness
    `G = a M^T`."""

    def __init__(self, spec: LayerSpec, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.spec = spec
        gen = generator or torch.Generator().manual_seed(0)
        kind = layer_math.kind(spec.kind)
        layer_math.activation(spec.activation)  # an unknown one is an error here already
        fan_in = kind.fan_in(spec)
        self.weight = _uniform(kind.weight_shape(spec), fan_in, gen)  # dense: (n_i, n_{i-1})
        self.bias: nn.Parameter | None = None
        if spec.bias:
            shape = kind.bias_shape(spec)
            self.bias = (nn.Parameter(torch.zeros(*shape)) if kind.zero_bias
                         else _uniform(shape, fan_in, gen))
        self.projection = _uniform((spec.classes, spec.out_features), spec.out_features, gen)
        self._forward = kind.forward

    def forward(self, a_in: torch.Tensor) -> torch.Tensor:
        """Activations of this layer: (B, *spec.out_shape)."""
        return self._forward(self, a_in)

    def goodness(self, a: torch.Tensor) -> torch.Tensor:
        """`G = a M^T`: (B, classes)."""
        return a.flatten(1) @ self.projection.t()


def parameter_count(spec: LayerSpec) -> int:
    """Weights, bias and projection of one layer."""
    kind = layer_math.kind(spec.kind)
    return (math.prod(kind.weight_shape(spec))
            + (math.prod(kind.bias_shape(spec)) if spec.bias else 0)
            + spec.classes * spec.out_features)


def available_memory() -> int | None:
    """Bytes the host can still give (MemAvailable), or None where it cannot say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def activation_elements(spec: LayerSpec) -> int:
    """Values one example's activation holds in a layer (conv and local: before pooling)."""
    unpooled = math.prod(spec.unpooled_shape()) if spec.kind in ("conv", "local") else 0
    return max(unpooled, math.prod(spec.out_shape))


def check_fits(specs: Sequence[LayerSpec], batch_size: int = 0) -> None:
    """Refuse layers whose training state (weights, gradients and Adam's two moments, float32)
    or, for a batch of `batch_size`, activations (kept for backward, with their gradients and
    the pooled output: about three copies) cannot fit in the memory this machine has free,
    before allocating any of it."""
    free = available_memory()
    for k, spec in enumerate(specs, 1):
        state = parameter_count(spec) * 4 * 4
        need = state + batch_size * activation_elements(spec) * 4 * 3
        if free is None or need <= free:
            continue
        layer = f"layer {k} ({spec.kind}:{spec.width} on input {spec.in_shape})"
        if state > free:
            raise SpecError(
                f"{layer} would hold {parameter_count(spec):,} parameters: "
                f"{state / 2**30:,.1f} GiB to train, more than the {free / 2**30:,.1f} GiB "
                "free here; use a smaller width")
        raise SpecError(
            f"{layer} would need {need / 2**30:,.1f} GiB to train on batches of {batch_size} "
            f"({activation_elements(spec):,} activations an example), more than the "
            f"{free / 2**30:,.1f} GiB free here; use a smaller width or batch size")


def build_layers(specs: Sequence[LayerSpec], seed: int, first_index: int = 0,
                 batch_size: int = 0) -> list[MFLayer]:
    """Fresh layers; layer i is initialised from `layer_generator(seed, first_index + i)`.
    Refused first where they (and a batch of `batch_size` through them) would not fit."""
    check_fits(specs, batch_size)
    return [MFLayer(s, layer_generator(seed, first_index + i)) for i, s in enumerate(specs)]


def check_chain(specs: Sequence[LayerSpec]) -> None:
    for i in range(1, len(specs)):
        if specs[i].in_shape != specs[i - 1].out_shape:
            raise SpecError(
                f"layer {i + 1} expects input {specs[i].in_shape} but layer {i} produces "
                f"{specs[i - 1].out_shape}"
            )


class MFNet(nn.Module):
    """A stack of MF layers that predicts in bp mode (last layer's goodness) or ff mode (sum of
    every layer's goodness). `upto=k` uses only the first k layers (degraded mode)."""

    def __init__(self, layers: Sequence[MFLayer], mode: str = "bp", upto: int | None = None):
        super().__init__()
        check_chain([layer.spec for layer in layers])
        check_mode(mode)
        upto = len(layers) if upto is None else upto
        if not 1 <= upto <= len(layers):
            raise SpecError(f"upto must lie in 1..{len(layers)}, got {upto}")
        self.layers = nn.ModuleList(layers[:upto])
        self.mode = mode

    @property
    def mf_layers(self) -> list[MFLayer]:
        return [cast(MFLayer, layer) for layer in self.layers]

    def goodness_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's goodness, each (B, classes)."""
        out = []
        for layer in self.mf_layers:
            x = layer(x)
            out.append(layer.goodness(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Goodness used for prediction in this net's mode: (B, classes)."""
        layers = self.mf_layers
        if self.mode == "bp":
            for layer in layers:
                x = layer(x)
            return layers[-1].goodness(x)
        goodness = self.goodness_all(x)  # each (B, classes)
        total = goodness[0]
        for g in goodness[1:]:
            total = total + g
        return total
