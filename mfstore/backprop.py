"""Backprop (BP) end to end on the very layers Mono-Forward trains, the last projection as the
linear head, and the loop the other end-to-end baselines (FA, DFA) share with it: each differs
from BP only in its training step.

    BP:  x ─► layer 1 ─► … ─► layer L ─► M_L (head) ─► cross-entropy; gradient through all
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import make_optimizer
from mfstore.epochs import Unit, run_epochs
from mfstore.evaluation import Validation, last_layer_validation
from mfstore.graphs import Step
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet
from mfstore.run_context import RunContext


def backprop_parameters(net: MFNet) -> list[torch.nn.Parameter]:
    """Every weight and bias, and only the last projection (the head): earlier projections
    play no part in BP."""
    params: list[torch.nn.Parameter] = []
    for layer in net.mf_layers:
        params += [p for p in (layer.weight, layer.bias) if p is not None]
    return [*params, net.mf_layers[-1].projection]


def bp_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
            opt: torch.optim.Optimizer, scale: float | torch.Tensor) -> torch.Tensor:
    """One backprop step through the whole net (an `MFNet`, or that wrapped for data-parallel
    training); in a single process no host sync (capturable as a CUDA graph). `scale`: the
    run's `batch_scale` of this batch. Returns the summed loss over the batch."""
    loss = F.cross_entropy(net(x), y, reduction="sum")
    opt.zero_grad(set_to_none=True)
    (loss * scale).backward()
    opt.step()
    return loss.detach()


# (module, x, y, optimizer, the batch's loss scale) -> the batch's summed loss: one step of an
# end-to-end algorithm
ModelStep = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer,
                      float | torch.Tensor], torch.Tensor]


@dataclass
class EndToEnd:
    """An end-to-end algorithm as the epoch loop's trainee: one unit (the whole network),
    `step` its training step, `validate` its validation loss and accuracy."""

    algorithm: str
    ctx: RunContext
    net: torch.nn.Module  # what early stopping snapshots and restores
    params: list[torch.nn.Parameter]
    train_step: Step  # (x, y, optimizer) -> the batch's summed loss, detached
    validation: Validation
    capturable: bool = True

    @property
    def units(self) -> list[Unit]:
        return [Unit(self.net, None)]

    def optimizers(self, config: TrainConfig, capturable: bool) -> list[torch.optim.Optimizer]:
        return [make_optimizer(self.params, config, self.ctx.device, capturable)]

    def step(self, first_active: int, opts: list[torch.optim.Optimizer]) -> Step:
        return lambda x, y, opt: self.train_step(x, y, opt).reshape(1)

    def validate(self) -> tuple[list[float | None], list[float | None]]:
        loss, accuracy = self.validation()
        return [loss], [accuracy]


def train_end_to_end(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                     config: TrainConfig, ctx: RunContext,
                     callback: ProgressCallback | None, algorithm: str,
                     model_of: Callable[[MFNet, torch.device], torch.nn.Module],
                     step: ModelStep) -> LayerHistory:
    """Train `layers` as one network, the last projection as its head (BP, FA, DFA): `step`
    on the module `model_of(net, device)` builds, validated on the last layer, on the
    device and processes of `ctx`."""
    net = MFNet(layers, mode="bp").to(ctx.device).train()
    # unused: the earlier projections play no part in the step
    model, scale = ctx.data_parallel(model_of(net, ctx.device), unused=True), ctx.batch_scale
    trainee = EndToEnd(algorithm, ctx, net, backprop_parameters(net),
                       lambda x, y, opt: step(model, x, y, opt, scale(int(y.shape[0]))),
                       last_layer_validation(net.mf_layers, val, ctx))
    (history,) = run_epochs(trainee, train, config, ctx, keep_best=True, callback=callback)
    return history


def fit_backprop(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                 config: TrainConfig, ctx: RunContext,
                 callback: ProgressCallback | None = None) -> LayerHistory:
    """`train_backprop` inside a run, on its context."""
    return train_end_to_end(layers, train, val, config, ctx, callback, "bp",
                            lambda net, _: net, bp_step)


def train_backprop(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                   config: TrainConfig, *, device: str | torch.device | None = None,
                   callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network with backprop from the last layer's goodness, on
    `device` (default: `config.device`; an API call enters here)."""
    return fit_backprop(layers, train, val, config, RunContext.enter(device or config.device),
                        callback)
