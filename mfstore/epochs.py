"""The one epoch loop every training runs: Mono-Forward one layer at a time, all layers at once
(the paper's Algorithm 1) or one layer per process (layer-parallel), and every end-to-end
baseline (BP, FA, DFA, FF), in one process or data-parallel. What is trained and how one step
goes is the `Trainee`'s; the loop holds the optimizer schedule, the data order, validation,
early stopping, the freeze rule and reports, so two algorithms differ only in their step.

    each epoch, while a unit is still training:
        every batch ─► the step of the active units (a CUDA graph on a GPU) ─► loss sums
        loss sums, summed over the processes once (the epoch's one host sync) ─► train loss
        validate every unit ─► early stopping ─► the first active unit frozen once it stops
        (restored to its best epoch; the units after it start their patience afresh)

A unit is a layer of MF (`units` of several layers train at once) or a whole end-to-end
network. A unit may stop only once every unit before it has stopped, so a unit's fate never
depends on the units after it (hot-plugging stays exact). At the end, `keep_best` restores
each unit to its best epoch (a unit trained alone); otherwise the units still training keep
their last weights (restoring one would invalidate the units trained on its outputs).
Layer-parallel training (`pipeline.py`) runs this loop too, on every process: each holds one
unit's module, receives its batches from the process below, and follows every unit's values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from mfstore.batches import BatchSource
from mfstore.checkpoints import Checkpoint
from mfstore.config import TrainConfig
from mfstore.devices import deterministic_mode, make_schedule
from mfstore.feeding import on_device
from mfstore.graphs import GraphedStep, Step
from mfstore.history import (
    EarlyStopping,
    EpochReport,
    LayerHistory,
    ProgressCallback,
    check_finite,
)
from mfstore.run_context import RunContext


@dataclass(frozen=True)
class Unit:
    """What one history, one early stopping and one report follow."""

    module: nn.Module | None  # what early stopping snapshots and restores (None: held by
    # another process, in layer-parallel training: only its values are followed)
    index: int | None  # the layer reports name (None: an end-to-end baseline)


class Trainee(Protocol):
    """What the loop trains, and how one step goes."""

    @property
    def algorithm(self) -> str: ...

    @property
    def units(self) -> Sequence[Unit]: ...

    @property
    def capturable(self) -> bool:
        """Whether its step may be captured as a CUDA graph (not one that draws host random
        numbers, which a graph would freeze)."""
        ...

    def optimizers(self, config: TrainConfig, capturable: bool) -> list[torch.optim.Optimizer]:
        """One optimizer over every unit, or one per unit (each on its CUDA stream)."""
        ...

    def step(self, first_active: int, opts: list[torch.optim.Optimizer]) -> Step:
        """One eager step of the units from `first_active` on: the loss sums of the batch,
        (active units,), detached, on the device."""
        ...

    def validate(self) -> tuple[list[float | None], list[float | None]]:
        """Each unit's validation loss and accuracy (None without a validation split)."""
        ...


def freeze_first_if_done(modules: Sequence[nn.Module | None], stoppers: list[EarlyStopping],
                         histories: list[LayerHistory], first_active: int) -> int:
    """Freeze the first still-training unit once its patience runs out: restore its best
    weights, and let the units after it start their patience afresh on its outputs."""
    if first_active == len(stoppers) or not stoppers[first_active].should_stop:
        return first_active
    stoppers[first_active].restore(modules[first_active])
    histories[first_active].best_epoch = stoppers[first_active].best_epoch
    histories[first_active].stopped_early = True
    for stopper in stoppers[first_active + 1:]:
        stopper.reset()
    return first_active + 1


def _epoch(step: Step, count: int, first_active: int, train: BatchSource, epoch: int,
           opt: torch.optim.Optimizer, device: torch.device) -> torch.Tensor:
    """One pass over the data; the summed per-unit losses, kept on the device."""
    sums = torch.zeros(count, device=device, dtype=torch.float64)
    for x, y in on_device(train.batches(epoch), device):
        sums[first_active:] += step(x, y, opt)
    return sums


def _mark_diverged(sums: torch.Tensor, modules: Sequence[nn.Module | None],
                   first_active: int) -> None:
    """A NaN loss for every active unit this process holds whose weights are not all finite,
    on the device (no host sync), so the epoch's sum over the processes tells every process."""
    for k in range(first_active, len(modules)):
        module = modules[k]
        params = [] if module is None else list(module.parameters())
        if params:
            finite = torch.stack([torch.isfinite(p).all() for p in params]).all()
            sums[k] += torch.where(finite, 0.0, float("nan"))


class _Phases:
    """The step of the active units, captured anew (on CUDA) when fewer units train."""

    def __init__(self, trainee: Trainee, opts: list[torch.optim.Optimizer],
                 device: torch.device, graphed: bool) -> None:
        self.trainee, self.opts, self.device, self.graphed = trainee, opts, device, graphed
        self.first_active = -1
        self.fast: Step | None = None

    def step(self, first_active: int) -> Step:
        if first_active != self.first_active:
            if self.first_active >= 0:  # frozen units keep no gradient in the old graph's pool
                for opt in self.opts:
                    opt.zero_grad(set_to_none=True)
            self.fast = GraphedStep(self.trainee.step(first_active, self.opts), self.device,
                                    self.graphed)
            self.first_active = first_active
        assert self.fast is not None
        return self.fast


def run_epochs(trainee: Trainee, train: BatchSource, config: TrainConfig, ctx: RunContext,
               *, keep_best: bool, callback: ProgressCallback | None = None,
               checkpoint: Checkpoint | None = None) -> list[LayerHistory]:
    """Train `trainee` for up to `config.epochs` epochs (see the module's picture) on the
    device and processes of `ctx`. With `checkpoint`, the whole state is saved after every
    epoch, and a state saved before (a run that was killed) is where training goes on."""
    units = list(trainee.units)
    modules = [u.module for u in units]
    histories = [LayerHistory() for _ in units]
    stoppers = [EarlyStopping(config.patience, config.min_delta, config.monitor) for _ in units]
    first_active, start, begun, before = 0, time.perf_counter(), 0, 0.0
    device = ctx.device
    n = int(ctx.all_reduce_sum(torch.tensor([len(train)], device=device)).item())  # all of it
    graphed = config.cuda_graphs and trainee.capturable and ctx.graphs_allowed
    with deterministic_mode(config.deterministic):
        opts = trainee.optimizers(config, graphed)
        schedules = [s for s in (make_schedule(opt, config) for opt in opts) if s is not None]
        saved = checkpoint.load() if checkpoint is not None else None
        if saved is not None:
            first_active, begun, before = _resume(saved, modules, opts, schedules, stoppers,
                                                  histories)
        phases = _Phases(trainee, opts, device, graphed)
        for epoch in range(begun, config.epochs):
            if first_active == len(units):
                break
            sums = _epoch(phases.step(first_active), len(units), first_active, train, epoch,
                          opts[0], device)
            _mark_diverged(sums, modules, first_active)
            losses = (ctx.all_reduce_sum(sums) / max(n, 1)).tolist()  # the epoch's one host sync
            for k in range(first_active, len(units)):
                check_finite(trainee.algorithm, units[k].index, epoch + 1, losses[k], config.lr)
            for schedule in schedules:
                schedule.step()
            first_active = _after_epoch(trainee, units, stoppers, histories, first_active,
                                        epoch, losses, config, callback)
            if checkpoint is not None:
                checkpoint.save(_state(epoch + 1, first_active, modules, opts, schedules,
                                       stoppers, histories, before + time.perf_counter() - start))
    return _finish(units, stoppers, histories, keep_best, before + time.perf_counter() - start)


def _state(epochs: int, first_active: int, modules: Sequence[nn.Module | None],
           opts: list[torch.optim.Optimizer], schedules: list[LRScheduler],
           stoppers: list[EarlyStopping], histories: list[LayerHistory],
           seconds: float) -> dict[str, Any]:
    """Everything the next epoch depends on, as a checkpoint keeps it."""
    return {"epochs": epochs, "first_active": first_active, "seconds": seconds,
            "modules": [None if m is None else m.state_dict() for m in modules],
            "optimizers": [o.state_dict() for o in opts],
            "schedules": [s.state_dict() for s in schedules],
            "stoppers": [s.state() for s in stoppers],
            "histories": [h.to_dict() for h in histories]}


def _resume(state: dict[str, Any], modules: Sequence[nn.Module | None],
            opts: list[torch.optim.Optimizer], schedules: list[LRScheduler],
            stoppers: list[EarlyStopping], histories: list[LayerHistory]
            ) -> tuple[int, int, float]:
    """Put a checkpoint's state back; (first active unit, epochs done, seconds spent)."""
    for module, weights in zip(modules, state["modules"], strict=True):
        if module is not None:
            module.load_state_dict(weights)
    for opt, saved in zip(opts, state["optimizers"], strict=True):
        opt.load_state_dict(saved)
    for schedule, saved in zip(schedules, state["schedules"], strict=True):
        schedule.load_state_dict(saved)
    for stopper, saved in zip(stoppers, state["stoppers"], strict=True):
        stopper.load(saved)
    for k, saved in enumerate(state["histories"]):
        histories[k] = LayerHistory(**saved)
    return int(state["first_active"]), int(state["epochs"]), float(state["seconds"])


def _after_epoch(trainee: Trainee, units: list[Unit], stoppers: list[EarlyStopping],
                 histories: list[LayerHistory], first_active: int, epoch: int,
                 losses: list[float], config: TrainConfig,
                 callback: ProgressCallback | None) -> int:
    """Validate, apply early stopping and the freeze rule, report; the new first active."""
    val_losses, val_accs = trainee.validate()
    improved = [k >= first_active and stoppers[k].update(epoch + 1, val_losses[k],
                                                         units[k].module, val_accs[k])
                for k in range(len(units))]
    was_active = first_active
    first_active = freeze_first_if_done([u.module for u in units], stoppers, histories,
                                        first_active)
    for k in range(was_active, len(units)):
        report = EpochReport(trainee.algorithm, units[k].index, epoch + 1, config.epochs,
                             losses[k], val_losses[k], val_accs[k], improved[k],
                             k < first_active)
        histories[k].add(report)
        if callback is not None:
            callback(report)
    return first_active


def _finish(units: list[Unit], stoppers: list[EarlyStopping], histories: list[LayerHistory],
            keep_best: bool, seconds: float) -> list[LayerHistory]:
    for unit, stopper, history in zip(units, stoppers, histories, strict=True):
        if keep_best:
            stopper.restore(unit.module)
            history.best_epoch, history.stopped_early = stopper.best_epoch, stopper.should_stop
        history.seconds = seconds
        history.keep(history.best_epoch)  # None: still active at the end, last weights kept
        if unit.module is not None:
            unit.module.eval()
    return histories
