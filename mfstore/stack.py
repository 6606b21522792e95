"""The one training path: a stack of MF layers trained on `LayerInputs` (memory or the
store's streams) with either schedule, each layer's own metrics measured, and each trained
layer handed to `on_trained` (the store registers it there, before the next layer trains).

    sequential:    inputs ─► layer 1 ─► on_trained ─► inputs.after(layer 1) ─► layer 2 ─► …
    simultaneous:  inputs ─► every layer per batch (Algorithm 1) ─► on_trained for each

`run_experiment` (in memory) and `store_training` (through the store, registered) train MF
through `train_stack`; it and the baselines (`baseline.py`) all run the one epoch loop of
`epochs.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mfstore.batches import TensorBatches
from mfstore.checkpoints import Checkpoint
from mfstore.config import SCHEDULES, TrainConfig
from mfstore.epochs import run_epochs
from mfstore.errors import ConfigError
from mfstore.evaluation import stack_metrics
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.inputs import LayerInputs, MemoryInputs
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext
from mfstore.training import MonoForward


@dataclass
class Trained:
    """One trained layer, with what it learnt from and how well it does on its own."""

    position: int  # in the trained stack, 0-based
    layer: MFLayer
    history: LayerHistory
    metrics: dict[str, float]  # val_/test_ accuracy and loss of this layer alone


OnTrained = Callable[[Trained], None]


def check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose sequential or simultaneous")
    return schedule


def layer_metrics(layers: Sequence[MFLayer], inputs: LayerInputs,
                  ctx: RunContext) -> list[dict[str, float]]:
    """Each layer's own validation and test loss and accuracy (layer-k mode), one pass per
    split over the whole stack."""
    out: list[dict[str, float]] = [{} for _ in layers]
    for split, source in (("val", inputs.val), ("test", inputs.test)):
        if source is None or len(source) == 0:
            continue
        m = stack_metrics(layers, source, ctx)
        for k in range(len(layers)):
            out[k][f"{split}_accuracy"] = m.accuracies[k]
            out[k][f"{split}_loss"] = m.losses[k]
    return out


def train_stack(layers: Sequence[MFLayer], inputs: LayerInputs, config: TrainConfig,
                ctx: RunContext, *, schedule: str, first_index: int = 0,
                callback: ProgressCallback | None = None,
                on_trained: OnTrained | None = None,
                checkpoint: Checkpoint | None = None) -> list[Trained]:
    """Train `layers` (layer k sits at `first_index + k` of its network) on `inputs`, on
    the device and processes of `ctx`. With `checkpoint`, each epoch is saved (sequential:
    each layer's in a part of its own, `Checkpoint.part(first_index + k)`) and a killed run
    goes on from there; a checkpoint goes once `on_trained` has taken what it trained."""
    check_schedule(schedule)
    ctx.check_batch(config.batch_size)
    if schedule == "simultaneous":
        histories = run_epochs(MonoForward(layers, inputs.val, config, ctx, first_index),
                               inputs.train, config, ctx, keep_best=False, callback=callback,
                               checkpoint=checkpoint)
        metrics = layer_metrics(layers, inputs, ctx)
        done = [Trained(k, layer, histories[k], metrics[k]) for k, layer in enumerate(layers)]
        for trained in done:
            if on_trained is not None:
                on_trained(trained)
        if checkpoint is not None and on_trained is not None:
            checkpoint.remove()
        return done
    done = []
    for k, layer in enumerate(layers):
        part = checkpoint.part(first_index + k) if checkpoint is not None else None
        (history,) = run_epochs(MonoForward([layer], inputs.val, config, ctx, first_index + k),
                                inputs.train, config, ctx, keep_best=True, callback=callback,
                                checkpoint=part)
        done.append(Trained(k, layer, history, layer_metrics([layer], inputs, ctx)[0]))
        if on_trained is not None:
            on_trained(done[-1])
            if part is not None:
                part.remove()
        if k + 1 < len(layers):
            inputs = inputs.after(layer)
    return done


def train_sequential(layers: Sequence[MFLayer], train: TensorBatches, val: TensorBatches | None,
                     config: TrainConfig, *, device: str | torch.device | None = None,
                     callback: ProgressCallback | None = None) -> list[LayerHistory]:
    """Train layer 1 to the end, freeze it, feed its outputs (in memory) to layer 2, and so
    on; on `device` (default: `config.device`; an API call enters here)."""
    ctx = RunContext.enter(device or config.device)
    inputs = MemoryInputs(train, val, None, ctx.device)
    return [t.history for t in train_stack(layers, inputs, config, ctx, schedule="sequential",
                                          callback=callback)]
