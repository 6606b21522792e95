"""Batch sources: anything that yields `(x, y)` batches, shuffled per epoch or in order.

Training takes a `BatchSource`, so a layer trains the same way from tensors in memory or
from a stream on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor]  # x (B, *shape), y (B,)


class BatchSource(Protocol):
    """`batches(epoch)`: a shuffled pass whose order depends on (seed, epoch) only;
    `ordered()`: every example once, in order (evaluation, writing outputs)."""

    def batches(self, epoch: int) -> Iterator[Batch]: ...

    def ordered(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling RNG of one epoch; independent of the model, so every layer and both
    algorithms see the same data order."""
    state = np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def training_batch_size(batch_size: int | None) -> int:
    """A source read only in order (evaluation, writing outputs) has no training batch size."""
    if batch_size is None:
        raise ValueError("this batch source was made for reading in order only")
    return batch_size


class TensorBatches:
    """Batches from tensors in memory (on any device). `batch_size` is None for a source that
    is only read in order (evaluation, writing outputs)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None,
                 seed: int = 0, eval_batch_size: int = 4096) -> None:
        self.x, self.y = x, y  # (N, *shape), (N,)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, epoch: int) -> Iterator[Batch]:
        n, batch_size = len(self), training_batch_size(self.batch_size)
        if batch_size >= n:  # full batch: order cannot change the gradient
            yield self.x, self.y
            return
        order = torch.randperm(n, generator=epoch_generator(self.seed, epoch))
        order = order.to(self.x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def ordered(self) -> Iterator[Batch]:
        for start in range(0, len(self), self.eval_batch_size):
            end = start + self.eval_batch_size
            yield self.x[start:end], self.y[start:end]

    def to(self, device: torch.device) -> TensorBatches:
        return TensorBatches(self.x.to(device), self.y.to(device), self.batch_size, self.seed,
                             self.eval_batch_size)
