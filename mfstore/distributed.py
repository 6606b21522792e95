"""Training beyond one process with `torch.distributed`, as `torchrun` starts it.

mfstore grows no cluster machinery of its own: `torchrun` starts the processes and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `join()` joins the process group
they describe (NCCL on CUDA, gloo on CPU), once, where a run enters (`context.RunContext`
holds the `Cluster` and the collectives over it). Two ways to use the processes:

- data parallel (any command that trains): each rank reads its own contiguous share of the
  examples, gradients are averaged by `DistributedDataParallel`, and rank 0 alone writes the
  blocks and the registry rows (`RunContext.main`);
- layer parallel (`pipeline.py`, the simultaneous schedule): rank k owns layer k.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

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


def leave() -> None:
    """Leave the process group (at the end of a command). What still holds the group
    (a DistributedDataParallel wrapper in a reference cycle) is collected first: left to the
    interpreter's exit, its threads could be torn down unjoined, aborting the process."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
