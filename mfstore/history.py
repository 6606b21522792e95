"""What training reports: per-epoch progress events, per-layer history, early stopping."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from mfstore.errors import DivergenceError
from mfstore.fixes import option

BASELINE_NAMES = {"bp": "backprop", "fa": "feedback-alignment",
                  "dfa": "direct-feedback-alignment", "ff": "Forward-Forward"}


@dataclass(frozen=True)
class EpochReport:
    """One epoch of one layer (MF) or of the whole net (a baseline, `layer` is None)."""

    algorithm: str  # "mf", or a baseline: "bp", "fa", "dfa", "ff"
    layer: int | None  # 0-based index
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    improved: bool
    stopped: bool  # this layer stops training after this epoch


ProgressCallback = Callable[[EpochReport], None]


def check_finite(algorithm: str, layer: int | None, epoch: int, loss: float, lr: float) -> None:
    """Refuse a diverged run: a non-finite training loss (`epochs.run_epochs` makes the loss
    of a unit whose weights went non-finite NaN, so that every process sees it)."""
    if not math.isfinite(loss):
        who = (f"the {BASELINE_NAMES.get(algorithm, algorithm)} baseline" if layer is None
               else f"layer {layer + 1}")
        raise DivergenceError(
            f"training diverged: {who} ({algorithm}) reached a non-finite loss or weight at "
            f"epoch {epoch} with learning rate {lr:g}; nothing was registered",
            option("lr", "(a tenth of it)", value=float(f"{lr / 10:.6g}")))


@dataclass
class LayerHistory:
    """The learning curve of one layer (or of the BP net) and where it stopped."""

    epochs: list[dict[str, float | None]] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based epoch whose weights were kept
    best_val_loss: float | None = None  # the validation loss of that epoch
    stopped_early: bool = False
    seconds: float = 0.0

    def add(self, report: EpochReport) -> None:
        self.epochs.append({"epoch": report.epoch, "train_loss": report.train_loss,
                            "val_loss": report.val_loss, "val_accuracy": report.val_accuracy})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def keep(self, best_epoch: int | None) -> None:
        """Record the epoch whose weights were kept (None: the last one) and its loss."""
        self.best_epoch = best_epoch or len(self.epochs)
        self.best_val_loss = next((e["val_loss"] for e in self.epochs
                                   if e["epoch"] == self.best_epoch), None)


def watched(monitor: str, val_loss: float | None, val_accuracy: float | None) -> float | None:
    """The number early stopping minimises: the validation loss, or minus the validation
    accuracy (`monitor` is `TrainConfig.monitor`); None without a validation split."""
    if monitor == "val_accuracy":
        return None if val_accuracy is None else -val_accuracy
    return val_loss


class EarlyStopping:
    """Stop after `patience` epochs without a watched value `min_delta` below the best, and
    keep a copy of the best weights to restore. The value is the validation loss, or minus
    the validation accuracy (`watched`)."""

    def __init__(self, patience: int | None, min_delta: float = 0.0,
                 monitor: str = "val_loss") -> None:
        self.patience, self.min_delta, self.monitor = patience, min_delta, monitor
        self.reset()

    def reset(self) -> None:
        self.best_loss = float("inf")
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self._best_state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, val_loss: float | None, module: nn.Module | None,
               val_accuracy: float | None = None) -> bool:
        """Record one epoch; True when it is the best so far. Without a validation split
        (nothing watched) nothing is recorded. `module` None: the weights are another
        process's (layer-parallel), only the values are followed."""
        value = watched(self.monitor, val_loss, val_accuracy)
        if value is None:
            return False
        if value < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = value, epoch, 0
            if module is not None:
                self._best_state = {k: v.detach().clone()
                                    for k, v in module.state_dict().items()}
            return True
        self.bad_epochs += 1
        return False

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (`load` restores it)."""
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "best_state": self._best_state}

    def load(self, state: dict[str, Any]) -> None:
        self.best_loss, self.best_epoch = state["best_loss"], state["best_epoch"]
        self.bad_epochs, self._best_state = state["bad_epochs"], state["best_state"]

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore(self, module: nn.Module | None) -> None:
        if module is not None and self._best_state is not None:
            module.load_state_dict(self._best_state)
