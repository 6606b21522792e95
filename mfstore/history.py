"""What training reports: per-epoch progress events, per-layer history, early stopping."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from mfstore.errors import DivergenceError, option


@dataclass(frozen=True)
class EpochReport:
    """One epoch of one layer (MF) or of the whole net (BP, `layer` is None)."""

    algorithm: str  # "mf" or "bp"
    layer: int | None  # 0-based index
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    improved: bool
    stopped: bool  # this layer stops training after this epoch


Ready = Callable[[], None]
"""Called once a command's arguments are checked, before any work that takes time (training,
verifying): where a caller checks what the work needs, e.g. that MLflow can be reached."""
ProgressCallback = Callable[[EpochReport], None]


def check_finite(algorithm: str, layer: int | None, epoch: int, loss: float, lr: float,
                 module: nn.Module | None = None) -> None:
    """Refuse a diverged run: a non-finite training loss, or non-finite weights."""
    bad = not math.isfinite(loss) or (module is not None and not all(
        bool(torch.isfinite(p).all()) for p in module.parameters()))
    if bad:
        who = "the backprop baseline" if layer is None else f"layer {layer + 1}"
        raise DivergenceError(
            f"training diverged: {who} ({algorithm}) reached a non-finite loss or weight at "
            f"epoch {epoch} with learning rate {lr:g}; nothing was registered",
            option("lr", "(a tenth of it)", value=lr / 10))


@dataclass
class LayerHistory:
    """The learning curve of one layer (or of the BP net) and where it stopped."""

    epochs: list[dict[str, float | None]] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based epoch whose weights were kept
    best_val_loss: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    def add(self, report: EpochReport) -> None:
        self.epochs.append({"epoch": report.epoch, "train_loss": report.train_loss,
                            "val_loss": report.val_loss, "val_accuracy": report.val_accuracy})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EarlyStopping:
    """Stop after `patience` epochs without a validation loss `min_delta` below the best, and
    keep a copy of the best weights to restore."""

    def __init__(self, patience: int | None, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.reset()

    def reset(self) -> None:
        self.best_loss = float("inf")
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self._best_state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, val_loss: float, module: nn.Module) -> bool:
        """Record one epoch; True when it is the best so far."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self._best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore(self, module: nn.Module) -> None:
        if self._best_state is not None:
            module.load_state_dict(self._best_state)
