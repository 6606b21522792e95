"""Compute devices, the deterministic mode, and the optimizers both algorithms share."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from mfstore.config import TrainConfig, check_device
from mfstore.errors import DeviceError
from mfstore.fixes import option


def resolve_device(name: str) -> torch.device:
    """`auto` = CUDA when present, else CPU; asking for CUDA without it is an error. Called
    once where a command or API call enters; a `torch.device` travels inward."""
    if check_device(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA device is available",
                          option("device", value="cpu"))
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise DeviceError(f"{name} was requested but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)",
                          option("device", value="cuda"))
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
    return cls(params, lr=_learning_rate(config.lr, device, capturable), betas=config.betas,
               weight_decay=config.weight_decay, **fast)


def _learning_rate(lr: float, device: torch.device, capturable: bool) -> float | torch.Tensor:
    """A device tensor when the step is captured as a CUDA graph, so that a schedule's changes
    reach every replay (a float would be frozen into the graph)."""
    return torch.tensor(lr, device=device) if capturable and device.type == "cuda" else lr


def make_schedule(optimizer: torch.optim.Optimizer,
                  config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None
