"""Feedback alignment (FA; Lillicrap et al., 2016): backprop's forward pass and loss, but the
error travels back through fixed random matrices in place of the transposed weights.

    forward:   z_i = linear(a_{i-1}, W_i) + b_i,  a_i = finish(z_i),  G = a_L M^T   (as BP)
    backward:  δa_{i-1} = linear^T(δz_i, B_i),  δa_L = δG B_head   (B fixed, random; BP: W_i, M)
               every weight still gets its own gradient, δW_i from δz_i and a_{i-1}

With autograd: `z = linear(a.detach(), W) + (t - t.detach())`, `t = linear(a, B)`. The second
term is zero going forward and carries the error back to `a` through `B`; the first gives `W`
its gradient and cuts the path back through `W`. It works for every layer kind, because each
kind's `linear` (`layer_math`) is linear in its weights. Layer 1 needs no `B`: its input is
the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfstore import layer_math
from mfstore.backprop import train_end_to_end
from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext


def feedback_generator(seed: int, index: int, salt: int) -> torch.Generator:
    """The RNG of the fixed feedback matrix `index` of an algorithm (`salt`), apart from the
    layers' own initialisation."""
    state = np.random.SeedSequence([seed, index, salt]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def random_matrix(shape: Sequence[int], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform in ±1/sqrt(fan_in): the distribution the layers' own weights start from."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(*shape).uniform_(-bound, bound, generator=gen)


def feedback_matrices(layers: Sequence[MFLayer], seed: int,
                      device: torch.device) -> list[torch.Tensor | None]:
    """`B_i` for every layer (None for layer 1) shaped as its weight, and `B_head` shaped as
    the last projection (classes, n_L), last."""
    out: list[torch.Tensor | None] = [None]
    for k, layer in enumerate(layers[1:], 1):
        kind = layer_math.kind(layer.spec.kind)
        out.append(random_matrix(kind.weight_shape(layer.spec), kind.fan_in(layer.spec),
                                 feedback_generator(seed, k, 0xFA)).to(device))
    head = layers[-1].spec
    out.append(random_matrix((head.classes, head.out_features), head.out_features,
                             feedback_generator(seed, len(layers), 0xFA)).to(device))
    return out


def _through(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`z` going forward; the gradient of `t` going back."""
    return z + (t - t.detach())


def feedback_forward(layers: Sequence[MFLayer], feedback: Sequence[torch.Tensor | None],
                     x: torch.Tensor) -> torch.Tensor:
    """The network's goodness (B, classes), wired so that backward runs feedback alignment."""
    a = x
    for layer, b in zip(layers, feedback, strict=False):
        kind, spec = layer_math.kind(layer.spec.kind), layer.spec
        z = kind.linear(spec, a.detach(), layer.weight)
        if b is not None:
            z = _through(z, kind.linear(spec, a, b))
        a = kind.finish(spec, z, layer.bias)
    flat = a.flatten(1)  # (B, n_L)
    head = feedback[-1]
    assert head is not None
    return _through(F.linear(flat.detach(), layers[-1].projection), F.linear(flat, head))


class FeedbackAlignment(nn.Module):
    """`layers` with their fixed feedback matrices (buffers): the module a data-parallel
    wrapper sees. Its forward is `feedback_forward`."""

    def __init__(self, layers: Sequence[MFLayer], feedback: Sequence[torch.Tensor | None]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.feedback: list[torch.Tensor | None] = []
        for k, b in enumerate(feedback):
            if b is not None:
                self.register_buffer(f"feedback_{k}", b)
            self.feedback.append(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return feedback_forward([cast(MFLayer, m) for m in self.layers], self.feedback, x)


def fa_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            opt: torch.optim.Optimizer, scale: float | torch.Tensor) -> torch.Tensor:
    """One feedback-alignment step of `model` (a `FeedbackAlignment`, or that wrapped for
    data-parallel training); no host sync in one process. Returns the batch's summed loss."""
    loss = F.cross_entropy(model(x), y, reduction="sum")
    opt.zero_grad(set_to_none=True)
    (loss * scale).backward()
    opt.step()
    return loss.detach()


def fit_feedback_alignment(layers: Sequence[MFLayer], train: BatchSource,
                           val: BatchSource | None, config: TrainConfig, ctx: RunContext,
                           callback: ProgressCallback | None = None) -> LayerHistory:
    """`train_feedback_alignment` inside a run, on its context."""
    return train_end_to_end(
        layers, train, val, config, ctx, callback, "fa",
        lambda net, dev: FeedbackAlignment(net.mf_layers, feedback_matrices(
            net.mf_layers, config.seed, dev)), fa_step)


def train_feedback_alignment(layers: Sequence[MFLayer], train: BatchSource,
                             val: BatchSource | None, config: TrainConfig, *,
                             device: str | torch.device | None = None,
                             callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network (the last projection as its head) with feedback
    alignment; its feedback matrices come from `config.seed`. On `device` (default:
    `config.device`; an API call enters here)."""
    return fit_feedback_alignment(layers, train, val, config,
                                  RunContext.enter(device or config.device), callback)
