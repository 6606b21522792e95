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
from mfstore.devices import make_optimizer, resolve_device
from mfstore.distributed import batch_scale, data_parallel
from mfstore.epochs import Unit, run_epochs
from mfstore.evaluation import Validation, last_layer_validation
from mfstore.graphs import Step
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet


def backprop_parameters(net: MFNet) -> list[torch.nn.Parameter]:
    """Every weight and bias, and only the last projection (the head): earlier projections
    play no part in BP."""
    params: list[torch.nn.Parameter] = []
    for layer in net.mf_layers:
        params += [p for p in (layer.weight, layer.bias) if p is not None]
    return [*params, net.mf_layers[-1].projection]


def bp_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
            opt: torch.optim.Optimizer) -> torch.Tensor:
    """One backprop step through the whole net (an `MFNet`, or that wrapped for data-parallel
    training); in a single process no host sync (capturable as a CUDA graph). Returns the
    summed loss over the batch."""
    loss = F.cross_entropy(net(x), y, reduction="sum")
    opt.zero_grad(set_to_none=True)
    (loss * batch_scale(int(y.shape[0]), x.device)).backward()
    opt.step()
    return loss.detach()


# (module, x, y, optimizer) -> the batch's summed loss: one step of an end-to-end algorithm
ModelStep = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer],
                     torch.Tensor]


@dataclass
class EndToEnd:
    """An end-to-end algorithm as the epoch loop's trainee: one unit (the whole network),
    `step` its training step, `validate` its validation loss and accuracy."""

    algorithm: str
    net: torch.nn.Module  # what early stopping snapshots and restores
    params: list[torch.nn.Parameter]
    train_step: Step  # (x, y, optimizer) -> the batch's summed loss, detached
    validation: Validation
    capturable: bool = True

    @property
    def units(self) -> list[Unit]:
        return [Unit(self.net, None)]

    def optimizers(self, config: TrainConfig, device: torch.device,
                   capturable: bool) -> list[torch.optim.Optimizer]:
        return [make_optimizer(self.params, config, device, capturable)]

    def step(self, first_active: int, opts: list[torch.optim.Optimizer]) -> Step:
        return lambda x, y, opt: self.train_step(x, y, opt).reshape(1)

    def validate(self) -> tuple[list[float | None], list[float | None]]:
        loss, accuracy = self.validation()
        return [loss], [accuracy]


def train_end_to_end(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                     config: TrainConfig, device: torch.device | None,
                     callback: ProgressCallback | None, algorithm: str,
                     model_of: Callable[[MFNet, torch.device], torch.nn.Module],
                     step: ModelStep) -> LayerHistory:
    """Train `layers` as one network, the last projection as its head (BP, FA, DFA): `step`
    on the module `model_of(net, device)` builds, validated on the last layer."""
    device = device or resolve_device(config.device)
    net = MFNet(layers, mode="bp").to(device).train()
    model = data_parallel(model_of(net, device), unused=True)  # earlier projections: no part
    trainee = EndToEnd(algorithm, net, backprop_parameters(net),
                       lambda x, y, opt: step(model, x, y, opt),
                       last_layer_validation(net.mf_layers, val, device))
    (history,) = run_epochs(trainee, train, config, device, keep_best=True, callback=callback)
    return history


def train_backprop(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                   config: TrainConfig, *, device: torch.device | None = None,
                   callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network with backprop from the last layer's goodness."""
    return train_end_to_end(layers, train, val, config, device, callback, "bp",
                            lambda net, _: net, bp_step)
