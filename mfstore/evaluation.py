"""Accuracy of every layer on its own, of FF mode (sum of goodness) and BP mode (last layer)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mfstore.batches import BatchSource
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext


@dataclass(frozen=True)
class Accuracy:
    per_layer: list[float]  # layer k mode: argmax of G_k
    ff: float  # argmax of sum_k G_k
    bp: float  # argmax of G_L (equals per_layer[-1])
    examples: int

    def to_dict(self) -> dict[str, object]:
        return {"per_layer": self.per_layer, "ff": self.ff, "bp": self.bp,
                "examples": self.examples}


@dataclass(frozen=True)
class StackMetrics:
    """Per-layer mean cross-entropy and accuracy, and FF-mode accuracy, over one source."""

    losses: list[float]
    accuracies: list[float]
    ff_accuracy: float
    examples: int


@torch.no_grad()
def stack_metrics(layers: Sequence[MFLayer], source: BatchSource,
                  ctx: RunContext) -> StackMetrics:
    """One pass through every layer; sums stay on the device until the end (one sync), then
    are summed over the processes of `ctx` (each read its share of `source`)."""
    count, device = len(layers), ctx.device
    loss_sum = torch.zeros(count, device=device, dtype=torch.float64)
    correct = torch.zeros(count + 1, device=device, dtype=torch.int64)  # layers..., ff
    n = 0
    for x, y in source.ordered():
        a, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        total = torch.zeros((), device=device)  # FF mode: sum of every layer's goodness
        for k, layer in enumerate(layers):
            a = layer(a)
            g = layer.goodness(a)  # (B, classes)
            loss_sum[k] += F.cross_entropy(g, y, reduction="sum").double()
            correct[k] += (g.argmax(1) == y).sum()
            total = total + g
        correct[count] += (total.argmax(1) == y).sum()
        n += int(y.shape[0])
    totals = ctx.all_reduce_sum(torch.cat([loss_sum, correct.double(),
                                       torch.tensor([n], device=device, dtype=torch.float64)]))
    n = int(totals[-1].item())  # examples over every process
    losses = (totals[:count] / max(n, 1)).tolist()
    acc = (totals[count:-1] / max(n, 1)).tolist()
    return StackMetrics(losses, acc[:count], acc[count], n)


def validate_stack(layers: Sequence[MFLayer], val: BatchSource | None,
                   ctx: RunContext) -> tuple[list[float | None], list[float | None]]:
    """Each layer's validation loss and accuracy (None without a validation split), leaving
    the layers in training mode."""
    if val is None:
        return [None] * len(layers), [None] * len(layers)
    m = stack_metrics(layers, val, ctx)
    for layer in layers:
        layer.train()
    return list(m.losses), list(m.accuracies)


def evaluate(layers: Sequence[MFLayer], source: BatchSource,
             device: str | torch.device = "cpu") -> Accuracy:
    """Accuracy in layer-k, FF and BP mode, from one pass over `source` on `device`, in
    this process."""
    return accuracy_over(layers, source, RunContext.alone(device))


def accuracy_over(layers: Sequence[MFLayer], source: BatchSource, ctx: RunContext) -> Accuracy:
    """`evaluate` over the processes of `ctx`, each holding its share of `source` (the
    whole of it in one process)."""
    was_training = [layer.training for layer in layers]
    for layer in layers:
        layer.eval()
    m = stack_metrics(layers, source, ctx)
    for layer, mode in zip(layers, was_training, strict=True):
        layer.train(mode)
    return Accuracy(m.accuracies, m.ff_accuracy, m.accuracies[-1], m.examples)


# () -> validation (loss, accuracy), or (None, None) without a validation split
Validation = Callable[[], tuple[float | None, float | None]]


def last_layer_validation(layers: Sequence[MFLayer], val: BatchSource | None,
                          ctx: RunContext) -> Validation:
    """The validation of a network trained end to end: its last layer's goodness (the head)
    gives the loss and the accuracy."""
    def validate() -> tuple[float | None, float | None]:
        losses, accuracies = validate_stack(layers, val, ctx)
        return losses[-1], accuracies[-1]
    return validate
