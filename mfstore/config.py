"""`TrainConfig`, compute devices and the deterministic mode."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from mfstore.errors import ConfigError, DeviceError

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: shared by Mono-Forward and the backprop baseline."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam (L2 weight decay) or adamw (decoupled)
    lr_schedule: str = "constant"  # or cosine over `epochs`
    patience: int | None = 5  # epochs without a better validation loss; None = never stop
    min_delta: float = 0.0
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0,
             f"learning rate must be a positive number, got {self.lr}"),
            (all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {self.betas}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr schedule must be one of {LR_SCHEDULES}"),
            (self.patience is None or self.patience >= 1, "patience must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(**kwargs)


def resolve_device(name: str) -> torch.device:
    """`auto` = CUDA when present, else CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA device is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return device


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels inside the block (bit-reproducible runs); restored afterwards."""
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1:]


def make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig,
                   device: torch.device, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam or AdamW: fused kernels on CUDA, multi-tensor (foreach) on CPU, for MF and BP alike.
    `capturable` keeps the step count on the device so a CUDA graph can replay the step."""
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    fast: dict[str, bool] = {"foreach": True}
    if device.type == "cuda":
        fast = {"fused": True, "capturable": True} if capturable else {"fused": True}
    return cls(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, **fast)


def make_schedule(optimizer: torch.optim.Optimizer,
                  config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None
