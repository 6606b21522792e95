"""Batch sources: anything that yields `(x, y)` batches, shuffled per epoch or in order.

Training takes a `BatchSource`, so a layer trains the same way from tensors in memory or
from a stream on disk.

The order of an epoch does not depend on how many processes share the work. With batch size
B, the N examples form B contiguous groups; batch t holds the t-th example of every group,
each group shuffled anew every epoch:

    groups:   [0 ………… N/B) [N/B ……… 2N/B) … [(B-1)N/B ……… N)
    batch t:   perm_0[t]      perm_1[t]    …   perm_{B-1}[t]

With P processes, process r owns groups [rB/P, (r+1)B/P): one contiguous share of the
examples (it reads nothing else), and its part of batch t is those groups' t-th examples.
The union over processes is the same batch whatever P is, so data-parallel training gives the
single-process result up to float rounding. Every batch also spans the whole split
(stratified by position), which a plain shuffle only does on average.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Part:
    """Process `rank` of `world`, each owning one contiguous share of a split."""

    rank: int = 0
    world: int = 1


WHOLE = Part()  # a single process: the whole split


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


def _groups(total: int, batch_size: int | None, world: int) -> list[int]:
    """Boundaries of the contiguous groups of a split (B of them for training; one per
    process for a source read only in order)."""
    count = max(1, min(batch_size if batch_size is not None else world, total))
    return [g * total // count for g in range(count + 1)]


def share(total: int, batch_size: int | None, part: Part) -> tuple[int, int]:
    """[start, end): the examples process `part` owns (its groups, contiguous)."""
    bounds = _groups(total, batch_size, part.world)
    count = len(bounds) - 1
    return (bounds[part.rank * count // part.world],
            bounds[(part.rank + 1) * count // part.world])


def local_batches(total: int, batch_size: int, seed: int, epoch: int,
                  part: Part) -> Iterator[torch.Tensor]:
    """Indices into this process's share of every batch of an epoch (see the module's
    picture); every process yields the same number of batches, some possibly empty."""
    bounds = _groups(total, batch_size, part.world)
    count = len(bounds) - 1
    first, last = part.rank * count // part.world, (part.rank + 1) * count // part.world
    start, end = bounds[first], bounds[last]
    if batch_size >= total:  # full batch: order cannot change the gradient
        yield torch.arange(end - start)
        return
    keys = torch.rand(total, generator=epoch_generator(seed, epoch))[start:end]
    sizes = torch.tensor([bounds[g + 1] - bounds[g] for g in range(first, last)])
    group = torch.repeat_interleave(torch.arange(len(sizes)), sizes)  # (share,)
    order = torch.argsort(group.double() * 2 + keys.double())  # groups in order, each shuffled
    rows = torch.full((len(sizes), -(-total // count)), -1, dtype=torch.long)
    offsets = torch.cumsum(sizes, 0) - sizes
    column = torch.arange(end - start) - torch.repeat_interleave(offsets, sizes)
    rows[group, column] = order
    for t in range(rows.shape[1]):
        batch = rows[:, t]
        yield batch[batch >= 0]


class TensorBatches:
    """Batches from tensors in memory (on any device): this process's share of a split of
    `total` examples. `batch_size` is None for a source that is only read in order
    (evaluation, writing outputs)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None,
                 seed: int = 0, eval_batch_size: int = 4096, total: int | None = None,
                 part: Part = WHOLE) -> None:
        self.x, self.y = x, y  # (share, *shape), (share,)
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.total = int(y.shape[0]) if total is None else total
        self.part = part

    @classmethod
    def of_split(cls, x: torch.Tensor, y: torch.Tensor, batch_size: int | None, seed: int,
                 eval_batch_size: int, part: Part) -> TensorBatches:
        """This process's share of a whole split held in memory."""
        start, end = share(int(y.shape[0]), batch_size, part)
        return cls(x[start:end], y[start:end], batch_size, seed, eval_batch_size,
                   int(y.shape[0]), part)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, epoch: int) -> Iterator[Batch]:
        batch_size = training_batch_size(self.batch_size)
        groups = list(local_batches(self.total, batch_size, self.seed, epoch, self.part))
        if self.x.is_cuda and groups:  # the epoch's indices in one asynchronous copy
            flat = torch.cat(groups).pin_memory().to(self.x.device, non_blocking=True)
            groups = list(flat.split([len(g) for g in groups]))
        for idx in groups:
            if len(idx) == len(self):
                yield self.x, self.y
            else:
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def ordered(self) -> Iterator[Batch]:
        for start in range(0, len(self), self.eval_batch_size):
            end = start + self.eval_batch_size
            yield self.x[start:end], self.y[start:end]

    def to(self, device: torch.device) -> TensorBatches:
        return TensorBatches(self.x.to(device), self.y.to(device), self.batch_size, self.seed,
                             self.eval_batch_size, self.total, self.part)
