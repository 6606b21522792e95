"""The backprop baseline: the same layers trained end to end, the last layer's projection
serving as the linear head, with the same optimizer, data order, seed and early stopping."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfstore.batches import BatchSource
from mfstore.config import (
    TrainConfig,
    deterministic_mode,
    make_optimizer,
    make_schedule,
    resolve_device,
)
from mfstore.evaluation import stack_metrics
from mfstore.history import EarlyStopping, EpochReport, LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet


def backprop_parameters(net: MFNet) -> list[torch.nn.Parameter]:
    """Every weight and bias, and only the last projection (the head): earlier projections
    play no part in BP."""
    params: list[torch.nn.Parameter] = []
    for layer in net.mf_layers:
        params += [p for p in (layer.weight, layer.bias) if p is not None]
    return [*params, net.mf_layers[-1].projection]


def bp_step(net: MFNet, x: torch.Tensor, y: torch.Tensor,
            opt: torch.optim.Optimizer) -> torch.Tensor:
    """One backprop step through the whole net; no host sync (capturable as a CUDA graph)."""
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def _val_metrics(net: MFNet, val: BatchSource, device: torch.device) -> tuple[float, float]:
    net.eval()
    m = stack_metrics(net.mf_layers, val, device)
    net.train()
    return m.losses[-1], m.accuracies[-1]


def train_backprop(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                   config: TrainConfig, *,
                   callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network with backprop from the last layer's goodness."""
    device = resolve_device(config.device)
    net = MFNet(layers, mode="bp").to(device).train()
    history, stopper = LayerHistory(), EarlyStopping(config.patience, config.min_delta)
    start = time.perf_counter()
    with deterministic_mode(config.deterministic):
        opt = make_optimizer(backprop_parameters(net), config, device)
        schedule = make_schedule(opt, config)
        for epoch in range(config.epochs):
            loss_sum, n = torch.zeros((), device=device), 0
            for x, y in train.batches(epoch):
                y = y.to(device, non_blocking=True)
                loss = bp_step(net, x.to(device, non_blocking=True), y, opt)
                loss_sum += loss * y.shape[0]
                n += int(y.shape[0])
            if schedule is not None:
                schedule.step()
            val_loss, val_acc = _val_metrics(net, val, device) if val is not None else (None, None)
            improved = val_loss is not None and stopper.update(epoch + 1, val_loss, net)
            report = EpochReport("bp", None, epoch + 1, config.epochs, float(loss_sum) / max(n, 1),
                                 val_loss, val_acc, improved, stopper.should_stop)
            history.add(report)
            if callback is not None:
                callback(report)
            if stopper.should_stop:
                break
    stopper.restore(net)
    net.eval()
    history.best_epoch = stopper.best_epoch or len(history.epochs)
    history.best_val_loss = stopper.best_loss if stopper.best_epoch else None
    history.stopped_early = stopper.should_stop
    history.seconds = time.perf_counter() - start
    return history
