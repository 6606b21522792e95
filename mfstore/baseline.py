"""The backprop baseline: the same layers trained end to end, the last layer's projection
serving as the linear head, with the same optimizer, data order, seed and early stopping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import resolve_device
from mfstore.distributed import batch_scale, data_parallel
from mfstore.epochs import run_epochs
from mfstore.errors import ConfigError
from mfstore.evaluation import Accuracy, evaluate, validate_stack
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.inputs import LayerInputs
from mfstore.modules import MFLayer, MFNet, build_layers
from mfstore.spec import LayerSpec

BASELINES = ("bp", "none")


def check_baseline(baseline: str) -> str:
    if baseline not in BASELINES:
        raise ConfigError(f"unknown baseline {baseline!r}; choose bp or none")
    return baseline


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


def train_backprop(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                   config: TrainConfig, *, device: torch.device | None = None,
                   callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network with backprop from the last layer's goodness."""
    device = device or resolve_device(config.device)
    net = MFNet(layers, mode="bp").to(device).train()
    trained = data_parallel(net, unused=True)  # earlier projections take no part in BP

    def validate() -> tuple[float | None, float | None]:
        losses, accuracies = validate_stack(net.mf_layers, val, device)
        return losses[-1], accuracies[-1]

    return run_epochs(net, backprop_parameters(net),
                      lambda x, y, opt: bp_step(trained, x, y, opt), train, validate, config,
                      device, algorithm="bp", index=None, callback=callback)


@dataclass
class BaselineResult:
    layers: list[MFLayer]
    history: LayerHistory
    test: Accuracy  # only .bp is meaningful: BP trains no projection but the last
    val: Accuracy


def train_baseline(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                   device: torch.device,
                   callback: ProgressCallback | None = None) -> BaselineResult:
    """Backprop on the very layers MF starts from (same initial weights), on the same inputs,
    data order, optimizer and seed; evaluated on the inputs' test and validation splits."""
    if inputs.test is None or inputs.val is None:
        raise ConfigError("the baseline is evaluated on a test and a validation split")
    layers = build_layers(specs, config.seed)
    history = train_backprop(layers, inputs.train, inputs.val, config, device=device,
                             callback=callback)
    return BaselineResult(layers, history, evaluate(layers, inputs.test, device),
                          evaluate(layers, inputs.val, device))
