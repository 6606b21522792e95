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
from mfstore.history import (
    EarlyStopping,
    EpochReport,
    LayerHistory,
    ProgressCallback,
    check_finite,
)

# (x, y, optimizer) -> the batch's summed loss, detached, left on the device
Step = Callable[[torch.Tensor, torch.Tensor, torch.optim.Optimizer], torch.Tensor]
# () -> validation (loss, accuracy), or (None, None) without a validation split
Validation = Callable[[], tuple[float | None, float | None]]


def run_epochs(module: nn.Module, params: list[nn.Parameter], step: Step, train: BatchSource,
               validate: Validation, config: TrainConfig, device: torch.device, *,
               algorithm: str, index: int | None,
               callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `params` of `module` with `step` for up to `config.epochs` epochs, stop early on
    the validation loss, and keep the weights of the best validation epoch."""
    history, stopper = LayerHistory(), EarlyStopping(config.patience, config.min_delta)
    start = time.perf_counter()
    with deterministic_mode(config.deterministic):
        opt = make_optimizer(params, config, device)
        schedule = make_schedule(opt, config)
        for epoch in range(config.epochs):
            total = torch.zeros(2, device=device, dtype=torch.float64)  # loss sum, examples
            for x, y in train.batches(epoch):
                y = y.to(device, non_blocking=True)
                total[0] += step(x.to(device, non_blocking=True), y, opt).sum()
                total[1] += y.shape[0]
            if schedule is not None:
                schedule.step()
            loss_sum, n = all_reduce_sum(total).tolist()  # the epoch's one host sync
            train_loss = loss_sum / max(n, 1)
            check_finite(algorithm, index, epoch + 1, train_loss, config.lr, module)
            val_loss, val_acc = validate()
            improved = val_loss is not None and stopper.update(epoch + 1, val_loss, module)
            report = EpochReport(algorithm, index, epoch + 1, config.epochs, train_loss,
                                 val_loss, val_acc, improved, stopper.should_stop)
            history.add(report)
            if callback is not None:
                callback(report)
            if stopper.should_stop:
                break
    stopper.restore(module)
    module.eval()
    history.best_epoch = stopper.best_epoch or len(history.epochs)
    history.best_val_loss = stopper.best_loss if stopper.best_epoch else None
    history.stopped_early = stopper.should_stop
    history.seconds = time.perf_counter() - start
    return history
