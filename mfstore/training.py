"""Mono-Forward training: one layer at a time (`sequential`) or all layers per batch
(`simultaneous`, the paper's Algorithm 1).

Each layer's loss is the cross-entropy of its own goodness `G = a M^T`; its input is
detached, so no gradient crosses a layer boundary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mfstore.batches import Batch, BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import make_optimizer
from mfstore.epochs import Unit, run_epochs
from mfstore.evaluation import validate_stack
from mfstore.graphs import Step
from mfstore.history import (
    LayerHistory,
    ProgressCallback,
)
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext


def goodness_loss(layer: MFLayer, a: torch.Tensor, y: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """A layer's local loss on its activations `a`: the cross-entropy of its goodness."""
    return F.cross_entropy(layer.goodness(a), y, reduction=reduction)  # goodness (B, C)


def local_loss(layer: MFLayer, a_in: torch.Tensor, y: torch.Tensor,
               reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(activations, loss) of one layer on a detached input: the whole of Mono-Forward."""
    a = layer(a_in.detach())  # (B, *out_shape)
    return a, goodness_loss(layer, a, y, reduction)


class LocalLosses(nn.Module):
    """The MF objective of a batch: the summed cross-entropy of every active layer on its own
    goodness, each on a detached input; layers before `first_active` are frozen and only
    carry the input forward. A module, so that data-parallel training can wrap it in
    `DistributedDataParallel`."""

    def __init__(self, layers: Sequence[MFLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.first_active = 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(active layers,) loss sums over the batch."""
        a = x
        with torch.no_grad():
            for layer in self.layers[:self.first_active]:
                a = layer(a)
        sums = []
        for layer in self.layers[self.first_active:]:
            a, loss = local_loss(cast(MFLayer, layer), a, y, reduction="sum")
            sums.append(loss)
        return torch.stack(sums)


class MonoForward:
    """Mono-Forward as the epoch loop's trainee: `layers` on their local losses, the units
    from `first_active` on stepping (the earlier ones only carry the input forward)."""

    algorithm, capturable = "mf", True

    def __init__(self, layers: Sequence[MFLayer], val: BatchSource | None,
                 config: TrainConfig, ctx: RunContext, first_index: int = 0) -> None:
        for layer in layers:
            layer.to(ctx.device).train()
        self.layers, self.val, self.ctx = list(layers), val, ctx
        self.local = LocalLosses(layers)
        self.objective = ctx.data_parallel(self.local, unused=len(layers) > 1)
        self.overlap = config.overlap and ctx.device.type == "cuda" and ctx.cluster is None
        self.units = [Unit(layer, first_index + k) for k, layer in enumerate(layers)]

    def optimizers(self, config: TrainConfig, capturable: bool) -> list[torch.optim.Optimizer]:
        """One optimizer over every layer; with overlap, one per layer (each on its stream)."""
        groups = [list(layer.parameters()) for layer in self.layers]
        if not self.overlap:
            groups = [[p for group in groups for p in group]]
        return [make_optimizer(group, config, self.ctx.device, capturable) for group in groups]

    def step(self, first_active: int, opts: list[torch.optim.Optimizer]) -> Step:
        self.local.first_active = first_active
        if self.overlap:
            return overlapped_mf_step(self.local, opts)
        scale = self.ctx.batch_scale
        return lambda x, y, opt: mf_step(self.objective, x, y, opt, scale(int(y.shape[0])))

    def validate(self) -> tuple[list[float | None], list[float | None]]:
        return validate_stack(self.layers, self.val, self.ctx)


def train_layer(layer: MFLayer, train: BatchSource, val: BatchSource | None, config: TrainConfig,
                *, device: torch.device | None = None, index: int = 0,
                callback: ProgressCallback | None = None) -> LayerHistory:
    """Train one layer on `(x, y)` batches of its input; keep the weights of its best
    validation epoch. `train` may come from memory or from a stream on disk. Without
    `device`, the one `config.device` names (an API call enters here: under torchrun the
    process joins its group)."""
    ctx = RunContext.enter(device or config.device)
    (history,) = run_epochs(MonoForward([layer], val, config, ctx, index), train, config, ctx,
                            keep_best=True, callback=callback)
    return history


def layer_output_batches(layer: MFLayer, source: BatchSource,
                         device: torch.device) -> Iterator[Batch]:
    """Every example of `source` through a trained layer, in order, batch by batch:
    (B, *out_shape) activations on `device` and the labels as they came."""
    layer.to(device).eval()
    for x, y in source.ordered():
        with torch.no_grad():
            yield layer(x.to(device, non_blocking=True)), y


def layer_outputs(layer: MFLayer, source: BatchSource,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every example of `source` through a trained layer, in memory: (N, *out_shape), (N,)."""
    batches = list(layer_output_batches(layer, source, device))
    return (torch.cat([a for a, _ in batches]),
            torch.cat([y.to(device, non_blocking=True) for _, y in batches]))


def mf_step(objective: nn.Module, x: torch.Tensor, y: torch.Tensor,
            opt: torch.optim.Optimizer, scale: float | torch.Tensor) -> torch.Tensor:
    """One batch of Algorithm 1: through every layer, the active ones each stepping on its
    own loss (`LocalLosses`, or that wrapped for data-parallel training). The losses are
    summed so one backward call serves every layer; gradients stay layer-local because every
    input is detached. In a single process there is no host sync, so the step can be captured
    as a CUDA graph. `scale`: the run's `batch_scale` of this batch. Returns the loss sums
    over the batch (active layers,)."""
    sums = objective(x, y)  # (active layers,)
    opt.zero_grad(set_to_none=True)
    (sums.sum() * scale).backward()
    opt.step()
    return sums.detach()


def overlapped_mf_step(local: LocalLosses, opts: Sequence[torch.optim.Optimizer]) -> Step:
    """`mf_step` with one CUDA stream per layer: layer k's loss, backward and update run on
    stream k while layer k+1's forward already runs on stream k+1 (no backward locking; only
    MF allows it). Each layer has its own optimizer; Adam's update is per parameter, so the
    numbers are those of `mf_step` with one optimizer over every layer. CUDA, one process
    only (the loss of a batch of B is scaled by 1/B)."""
    device = next(local.parameters()).device
    streams = [torch.cuda.Stream(device) for _ in local.layers]

    def step(x: torch.Tensor, y: torch.Tensor, _: torch.optim.Optimizer) -> torch.Tensor:
        compute, scale = torch.cuda.current_stream(device), 1.0 / max(int(y.shape[0]), 1)
        a, first = x, local.first_active
        with torch.no_grad():
            for layer in local.layers[:first]:
                a = layer(a)
        sums = []
        for layer, opt, stream in zip(local.layers[first:], opts[first:], streams[first:],
                                      strict=True):
            stream.wait_stream(compute)
            with torch.cuda.stream(stream):
                a, loss = local_loss(cast(MFLayer, layer), a, y, reduction="sum")
                forward_done = torch.cuda.Event()
                forward_done.record(stream)
                opt.zero_grad(set_to_none=True)
                (loss * scale).backward()
                opt.step()
            compute.wait_event(forward_done)  # the next layer needs only this forward
            sums.append(loss.detach())
        for stream in streams[first:]:
            compute.wait_stream(stream)
        return torch.stack(sums)

    return step


def train_simultaneous(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                       config: TrainConfig, *, device: torch.device | None = None,
                       callback: ProgressCallback | None = None) -> list[LayerHistory]:
    """The paper's Algorithm 1, with per-layer early stopping.

    A layer may stop only once every layer before it has stopped; it is then restored to its
    best epoch and frozen, and the layers after it start their patience afresh on its restored
    outputs. Layers still training when the epochs run out keep their last weights (restoring
    them would invalidate the layers trained on top). A layer's fate therefore never depends on
    the layers after it, which keeps hot-plugging exact."""
    ctx = RunContext.enter(device or config.device)
    return run_epochs(MonoForward(layers, val, config, ctx), train, config, ctx,
                      keep_best=False, callback=callback)
