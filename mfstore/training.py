"""Mono-Forward training: one layer at a time (`sequential`) or all layers per batch
(`simultaneous`, the paper's Algorithm 1).

Each layer's loss is the cross-entropy of its own goodness `G = a M^T`; its input is
detached, so no gradient crosses a layer boundary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mfstore import distributed
from mfstore.batches import Batch, BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import deterministic_mode, make_optimizer, make_schedule, resolve_device
from mfstore.distributed import all_reduce_sum, batch_scale, data_parallel
from mfstore.epochs import run_epochs
from mfstore.evaluation import validate_stack
from mfstore.feeding import on_device
from mfstore.graphs import GraphedStep, Step, graphs_apply
from mfstore.history import (
    EarlyStopping,
    EpochReport,
    LayerHistory,
    ProgressCallback,
    check_finite,
)
from mfstore.modules import MFLayer


def local_loss(layer: MFLayer, a_in: torch.Tensor, y: torch.Tensor,
               reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(activations, loss) of one layer on a detached input: the whole of Mono-Forward."""
    a = layer(a_in.detach())  # (B, *out_shape)
    return a, F.cross_entropy(layer.goodness(a), y, reduction=reduction)  # goodness (B, C)


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


def _report(callback: ProgressCallback | None, history: LayerHistory, report: EpochReport) -> None:
    history.add(report)
    if callback is not None:
        callback(report)


def train_layer(layer: MFLayer, train: BatchSource, val: BatchSource | None, config: TrainConfig,
                *, device: torch.device | None = None, index: int = 0,
                callback: ProgressCallback | None = None) -> LayerHistory:
    """Train one layer on `(x, y)` batches of its input; keep the weights of its best
    validation epoch. `train` may come from memory or from a stream on disk. Without
    `device`, the one `config.device` names."""
    device = device or resolve_device(config.device)
    layer.to(device).train()
    objective = data_parallel(LocalLosses([layer]))

    def validate() -> tuple[float | None, float | None]:
        (loss,), (accuracy,) = validate_stack([layer], val, device)
        return loss, accuracy

    return run_epochs(layer, list(layer.parameters()),
                      lambda x, y, opt: mf_step(objective, x, y, opt)[0], train, validate,
                      config, device, algorithm="mf", index=index, callback=callback)


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
            opt: torch.optim.Optimizer) -> torch.Tensor:
    """One batch of Algorithm 1: through every layer, the active ones each stepping on its
    own loss (`LocalLosses`, or that wrapped for data-parallel training). The losses are
    summed so one backward call serves every layer; gradients stay layer-local because every
    input is detached. In a single process there is no host sync, so the step can be captured
    as a CUDA graph. Returns the loss sums over the batch (active layers,)."""
    sums = objective(x, y)  # (active layers,)
    opt.zero_grad(set_to_none=True)
    (sums.sum() * batch_scale(int(y.shape[0]), x.device)).backward()
    opt.step()
    return sums.detach()


def overlapped_mf_step(local: LocalLosses, opts: Sequence[torch.optim.Optimizer]) -> Step:
    """`mf_step` with one CUDA stream per layer: layer k's loss, backward and update run on
    stream k while layer k+1's forward already runs on stream k+1 (no backward locking; only
    MF allows it). Each layer has its own optimizer; Adam's update is per parameter, so the
    numbers are those of `mf_step` with one optimizer over every layer. CUDA only."""
    device = next(local.parameters()).device
    streams = [torch.cuda.Stream(device) for _ in local.layers]

    def step(x: torch.Tensor, y: torch.Tensor, _: torch.optim.Optimizer) -> torch.Tensor:
        compute, scale = torch.cuda.current_stream(device), batch_scale(int(y.shape[0]), device)
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


def _simultaneous_epoch(step: Step, count: int, first_active: int, train: BatchSource,
                        epoch: int, opt: torch.optim.Optimizer,
                        device: torch.device) -> torch.Tensor:
    """One pass over the data; the summed per-layer losses, kept on the device."""
    loss_sums = torch.zeros(count, device=device)
    for x, y in on_device(train.batches(epoch), device):
        loss_sums[first_active:] += step(x, y, opt)
    return loss_sums


def _optimizers(layers: Sequence[MFLayer], config: TrainConfig, device: torch.device,
                overlap: bool, capturable: bool) -> list[torch.optim.Optimizer]:
    """One optimizer over every layer; with `overlap`, one per layer (each on its stream)."""
    groups = [list(layer.parameters()) for layer in layers]
    if not overlap:
        groups = [[p for group in groups for p in group]]
    return [make_optimizer(group, config, device, capturable) for group in groups]


def _improves(stopper: EarlyStopping, epoch: int, val_loss: float | None,
              val_accuracy: float | None, layer: MFLayer) -> bool:
    return stopper.update(epoch + 1, val_loss, layer, val_accuracy)


def _freeze_first_if_done(layers: Sequence[MFLayer], stoppers: list[EarlyStopping],
                          histories: list[LayerHistory], first_active: int) -> int:
    """Freeze the first still-training layer once its patience runs out: restore its best
    weights, and let the layers after it start their patience afresh on its outputs."""
    if not stoppers[first_active].should_stop:
        return first_active
    stoppers[first_active].restore(layers[first_active])
    histories[first_active].best_epoch = stoppers[first_active].best_epoch
    histories[first_active].stopped_early = True
    for stopper in stoppers[first_active + 1:]:
        stopper.reset()
    return first_active + 1


def train_simultaneous(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                       config: TrainConfig, *, device: torch.device | None = None,
                       callback: ProgressCallback | None = None) -> list[LayerHistory]:
    """The paper's Algorithm 1, with per-layer early stopping.

    A layer may stop only once every layer before it has stopped; it is then restored to its
    best epoch and frozen, and the layers after it start their patience afresh on its restored
    outputs. Layers still training when the epochs run out keep their last weights (restoring
    them would invalidate the layers trained on top). A layer's fate therefore never depends on
    the layers after it, which keeps hot-plugging exact."""
    device = device or resolve_device(config.device)
    for layer in layers:
        layer.to(device).train()
    histories = [LayerHistory() for _ in layers]
    stoppers = [EarlyStopping(config.patience, config.min_delta, config.monitor)
                for _ in layers]
    first_active, start = 0, time.perf_counter()
    n = int(all_reduce_sum(torch.tensor([len(train)], device=device)).item())  # all processes
    local = LocalLosses(layers)
    objective = data_parallel(local, unused=True)
    graphed = graphs_apply(device, config.cuda_graphs)
    overlap = config.overlap and device.type == "cuda" and distributed.current() is None
    with deterministic_mode(config.deterministic):
        opts = _optimizers(layers, config, device, overlap, capturable=graphed)
        schedules = [make_schedule(opt, config) for opt in opts]
        eager = (overlapped_mf_step(local, opts) if overlap
                 else lambda x, y, opt: mf_step(objective, x, y, opt))
        fast, phase = GraphedStep(eager, device, graphed), 0
        for epoch in range(config.epochs):
            if first_active == len(layers):
                break
            if first_active != phase:  # fewer layers train now: a new graph
                for opt in opts:  # frozen layers keep no gradient in the old graph's pool
                    opt.zero_grad(set_to_none=True)
                fast, phase = GraphedStep(eager, device, graphed), first_active
            local.first_active = first_active
            sums = _simultaneous_epoch(fast, len(layers), first_active, train, epoch, opts[0],
                                       device)
            train_losses = (all_reduce_sum(sums) / n).tolist()
            for k in range(first_active, len(layers)):
                check_finite("mf", k, epoch + 1, train_losses[k], config.lr, layers[k])
            for schedule in schedules:
                if schedule is not None:
                    schedule.step()
            val_losses, val_accs = validate_stack(layers, val, device)
            was_active = first_active
            improved = [k >= first_active and _improves(stoppers[k], epoch, val_losses[k],
                                                         val_accs[k], layers[k])
                        for k in range(len(layers))]
            first_active = _freeze_first_if_done(layers, stoppers, histories, first_active)
            for k in range(was_active, len(layers)):
                _report(callback, histories[k], EpochReport(
                    "mf", k, epoch + 1, config.epochs, train_losses[k], val_losses[k],
                    val_accs[k], improved[k], k < first_active))
    seconds = time.perf_counter() - start
    for k, history in enumerate(histories):
        history.seconds = seconds
        history.keep(history.best_epoch)  # None: still active at the end, last weights kept
        layers[k].eval()
    return histories
