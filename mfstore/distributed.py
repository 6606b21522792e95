"""Training beyond one process with `torch.distributed`, as `torchrun` starts it.

mfstore grows no cluster machinery of its own: `torchrun` starts the processes and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `join()` joins the process group
they describe (NCCL on CUDA, gloo on CPU) and every other function here is a no-op in a
single process. Two ways to use the processes:

- data parallel (any command that trains): each rank reads its own contiguous share of the
  examples, gradients are averaged by `DistributedDataParallel`, and rank 0 alone writes the
  blocks and the registry rows (`is_main`);
- layer parallel (`pipeline.py`, the simultaneous schedule): rank k owns layer k.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mfstore.batches import WHOLE, Part
from mfstore.errors import ConfigError

T = TypeVar("T")
TIMEOUT = timedelta(minutes=30)  # a rank waiting for a slow peer (one epoch of I/O, say)


@dataclass(frozen=True)
class Cluster:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun (or another launcher speaking its variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(device: torch.device) -> Cluster | None:
    """Join the process group torchrun describes (once); None in a single process."""
    if not launched():
        return None
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return current()


def current() -> Cluster | None:
    """The process group this process belongs to, if any (with more than one process)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    return Cluster(dist.get_rank(), dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def rank_device(device: torch.device) -> torch.device:
    """On CUDA, each process of a node takes the GPU of its local rank."""
    cluster = current()
    if device.type == "cuda" and cluster is not None and device.index is None:
        return torch.device("cuda", cluster.local_rank % max(torch.cuda.device_count(), 1))
    return device


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes blocks and registry rows."""
    cluster = current()
    return cluster is None or cluster.main


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over every rank (itself in a single process)."""
    if current() is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object of mfstore's own)."""
    if current() is None:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order (on every rank)."""
    cluster = current()
    if cluster is None:
        return [value]
    out: list[Any] = [None] * cluster.world
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    if current() is not None:
        dist.barrier()


def check_batch(batch_size: int) -> None:
    """Each rank takes an equal part of every global batch."""
    cluster = current()
    if cluster is not None and batch_size % cluster.world:
        raise ConfigError(f"the batch size ({batch_size}) must be a multiple of the number of "
                          f"processes ({cluster.world}): each takes an equal part of a batch")


def leave() -> None:
    """Leave the process group (at the end of a command). What still holds the group
    (a DistributedDataParallel wrapper in a reference cycle) is collected first: left to the
    interpreter's exit, its threads could be torn down unjoined, aborting the process."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def data_parallel(module: torch.nn.Module, unused: bool = False) -> torch.nn.Module:
    """`module` wrapped in `DistributedDataParallel` when several processes train (its
    gradients are then averaged over them in backward), else `module` itself. `unused`: some
    parameters may get no gradient in a step (frozen layers of the simultaneous schedule)."""
    if current() is None:
        return module

    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=unused)


def batch_scale(local: int, device: torch.device) -> float | torch.Tensor:
    """What a summed loss is multiplied by so that the gradient is the mean over the whole
    batch: 1/B in one process; with P processes, whose gradients DDP averages, P/B, B being
    summed over them (parts may differ by an example, and be empty at an epoch's end). The
    sum stays a tensor on `device`: no host synchronisation in the step."""
    cluster = current()
    if cluster is None:
        return 1.0 / max(local, 1)
    total = all_reduce_sum(torch.tensor([float(local)], device=device))  # (1,) on the device
    return (cluster.world / total.clamp(min=1.0)).squeeze(0)


def part() -> Any:
    """This process's share of every split (the whole split in a single process)."""
    cluster = current()
    return WHOLE if cluster is None else Part(cluster.rank, cluster.world)


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 alone (the writer of blocks, rows and manifests) and hand its result
    to every rank."""
    if current() is None:
        return fn()
    box: list[Any] = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return cast(T, box[0])
