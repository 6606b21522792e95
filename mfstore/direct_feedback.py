"""Direct feedback alignment (DFA; Nøkland, 2016): the output error goes straight to every
layer through a fixed random matrix of its own; nothing travels from layer to layer.

    forward:   a_i = finish(linear(a_{i-1}, W_i) + b_i)  (input detached),  G = a_L M^T
    error:     e = dL/dG = (softmax(G) - onehot(y)) / B                       (B, classes)
               (the 1/B, over every process's examples, is the step's `batch_scale`)
    backward:  δa_i = e D_i for every layer i (D_i fixed, random, (classes, n_i));
               M gets its true gradient, a_L^T e

With autograd: every layer's input is detached (as in MF), the head reads `a_L` detached,
and the loss gains `Σ_i <a_i, (e D_i) detached>`, whose gradient with respect to `a_i` is
exactly `e D_i`; one backward call serves every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mfstore.backprop import train_end_to_end
from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.feedback_alignment import feedback_generator, random_matrix
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext


def direct_feedback_matrices(layers: Sequence[MFLayer], seed: int,
                             device: torch.device) -> list[torch.Tensor]:
    """`D_i` (classes, n_i) for every layer, drawn as the projections are."""
    return [random_matrix((layer.spec.classes, layer.spec.out_features),
                          layer.spec.out_features,
                          feedback_generator(seed, k, 0xDFA)).to(device)
            for k, layer in enumerate(layers)]


class DirectFeedback(nn.Module):
    """`layers` with their fixed feedback matrices (buffers): the module a data-parallel
    wrapper sees. Its forward gives the batch's summed cross-entropy and the term whose
    gradient sends the error to every layer, both to be scaled by the same `scale`."""

    def __init__(self, layers: Sequence[MFLayer], feedback: Sequence[torch.Tensor]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        for k, d in enumerate(feedback):
            self.register_buffer(f"feedback_{k}", d)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, outputs = x, []
        for layer in self.layers:
            a = layer(a.detach())  # (B, *out_shape)
            outputs.append(a.flatten(1))
        last = cast(MFLayer, self.layers[-1])
        goodness = last.goodness(outputs[-1].detach())  # (B, classes)
        loss = F.cross_entropy(goodness, y, reduction="sum")
        onehot = F.one_hot(y, goodness.shape[1]).to(goodness.dtype)
        error = (torch.softmax(goodness, 1) - onehot).detach()  # d(loss)/dG, (B, classes)
        signal = torch.stack([(out * (error @ getattr(self, f"feedback_{k}"))).sum()
                              for k, out in enumerate(outputs)]).sum()
        return loss, signal


def dfa_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             opt: torch.optim.Optimizer, scale: float | torch.Tensor) -> torch.Tensor:
    """One direct-feedback-alignment step of `model` (a `DirectFeedback`, or that wrapped for
    data-parallel training); no host sync in one process. Returns the summed cross-entropy."""
    loss, signal = model(x, y)
    opt.zero_grad(set_to_none=True)
    ((loss + signal) * scale).backward()
    opt.step()
    return loss.detach()


def fit_direct_feedback(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                        config: TrainConfig, ctx: RunContext,
                        callback: ProgressCallback | None = None) -> LayerHistory:
    """`train_direct_feedback` inside a run, on its context."""
    return train_end_to_end(
        layers, train, val, config, ctx, callback, "dfa",
        lambda net, dev: DirectFeedback(net.mf_layers, direct_feedback_matrices(
            net.mf_layers, config.seed, dev)), dfa_step)


def train_direct_feedback(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                          config: TrainConfig, *, device: str | torch.device | None = None,
                          callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` (the last projection as the head) with direct feedback alignment; its
    feedback matrices come from `config.seed`. On `device` (default: `config.device`; an
    API call enters here)."""
    return fit_direct_feedback(layers, train, val, config,
                               RunContext.enter(device or config.device), callback)
