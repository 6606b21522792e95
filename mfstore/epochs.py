"""The epoch loop shared by one MF layer and the BP baseline: the same optimizer, schedule,
data order, validation and early stopping, so the two differ only in their training step."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import deterministic_mode, make_optimizer, make_schedule
from mfstore.distributed import all_reduce_sum
from mfstore.feeding import on_device
from mfstore.graphs import GraphedStep, Step
from mfstore.history import (
    EarlyStopping,
    EpochReport,
    LayerHistory,
    ProgressCallback,
    check_finite,
)

# () -> validation (loss, accuracy), or (None, None) without a validation split
Validation = Callable[[], tuple[float | None, float | None]]


def run_epochs(module: nn.Module, params: list[nn.Parameter], step: Step, train: BatchSource,
               validate: Validation, config: TrainConfig, device: torch.device, *,
               algorithm: str, index: int | None,
               callback: ProgressCallback | None = None,
               capturable: bool = True) -> LayerHistory:
    """Train `params` of `module` with `step` for up to `config.epochs` epochs, stop early on
    what `config.monitor` watches, and keep the weights of the best validation epoch.
    `capturable=False`: the step must run eagerly even on CUDA (it draws host random
    numbers, which a CUDA graph would freeze)."""
    history = LayerHistory()
    stopper = EarlyStopping(config.patience, config.min_delta, config.monitor)
    start = time.perf_counter()
    fast = GraphedStep(step, device, config.cuda_graphs and capturable)  # eager on the CPU
    with deterministic_mode(config.deterministic):
        opt = make_optimizer(params, config, device, capturable=fast.enabled)
        schedule = make_schedule(opt, config)
        for epoch in range(config.epochs):
            total = torch.zeros(2, device=device, dtype=torch.float64)  # loss sum, examples
            for x, y in on_device(train.batches(epoch), device):
                total[0] += fast(x, y, opt).sum()
                total[1] += y.shape[0]
            if schedule is not None:
                schedule.step()
            loss_sum, n = all_reduce_sum(total).tolist()  # the epoch's one host sync
            train_loss = loss_sum / max(n, 1)
            check_finite(algorithm, index, epoch + 1, train_loss, config.lr, module)
            val_loss, val_acc = validate()
            improved = stopper.update(epoch + 1, val_loss, module, val_acc)
            report = EpochReport(algorithm, index, epoch + 1, config.epochs, train_loss,
                                 val_loss, val_acc, improved, stopper.should_stop)
            history.add(report)
            if callback is not None:
                callback(report)
            if stopper.should_stop:
                break
    stopper.restore(module)
    module.eval()
    history.keep(stopper.best_epoch)
    history.stopped_early = stopper.should_stop
    history.seconds = time.perf_counter() - start
    return history
