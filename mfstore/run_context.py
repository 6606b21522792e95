"""Where a run computes: `RunContext`, its device and the process group it belongs to.

It is built once, where a command or API call enters (`RunContext.enter`: the device
resolved, and under torchrun the process group joined and, on CUDA, the local rank's GPU
taken), and passed inward. Nothing below it resolves a device or asks `torch.distributed`
who it is: a function that behaves differently on several processes takes the context that
says so. In one process (`cluster` None) every collective here is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mfstore import distributed
from mfstore.batches import WHOLE, Part
from mfstore.devices import resolve_device
from mfstore.distributed import Cluster
from mfstore.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class RunContext:
    device: torch.device
    cluster: Cluster | None = None  # None: one process

    @classmethod
    def enter(cls, device: str | torch.device) -> RunContext:
        """The context of a run starting here on `device` (a name such as `auto` or
        `cuda:1`, or a device already resolved): under torchrun this process joins its
        group first and, on CUDA without an index, takes the GPU of its local rank."""
        resolved = resolve_device(device) if isinstance(device, str) else device
        cluster = distributed.join(resolved)
        if resolved.type == "cuda" and cluster is not None and resolved.index is None:
            resolved = torch.device("cuda",
                                    cluster.local_rank % max(torch.cuda.device_count(), 1))
        return cls(resolved, cluster)

    @classmethod
    def alone(cls, device: str | torch.device) -> RunContext:
        """The context of work this process does by itself, whatever launched it (reading,
        evaluating, verifying a whole split): `device` resolved, no process group."""
        return cls(resolve_device(device) if isinstance(device, str) else device)

    @property
    def main(self) -> bool:
        """Rank 0, or the only process: the one that writes blocks and registry rows."""
        return self.cluster is None or self.cluster.main

    @property
    def processes(self) -> int:
        return 1 if self.cluster is None else self.cluster.world

    @property
    def part(self) -> Part:
        """This process's share of every split (the whole split in a single process)."""
        return WHOLE if self.cluster is None else Part(self.cluster.rank, self.cluster.world)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over every process (itself in one process), in place."""
        if self.cluster is not None:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every process (any picklable object of mfstore's own)."""
        if self.cluster is None:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return cast(T, box[0])

    def gather(self, value: T) -> list[T]:
        """Every process's `value`, in rank order (on every process)."""
        if self.cluster is None:
            return [value]
        out: list[Any] = [None] * self.cluster.world
        dist.all_gather_object(out, value)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 alone (the writer of blocks, rows and manifests) and hand its
        result to every process."""
        if self.cluster is None:
            return fn()
        return self.broadcast(fn() if self.main else cast(T, None))

    def check_batch(self, batch_size: int) -> None:
        """Each process takes an equal part of every global batch."""
        if self.cluster is not None and batch_size % self.cluster.world:
            raise ConfigError(f"the batch size ({batch_size}) must be a multiple of the number "
                              f"of processes ({self.cluster.world}): each takes an equal part "
                              "of a batch")

    def data_parallel(self, module: torch.nn.Module, unused: bool = False) -> torch.nn.Module:
        """`module` wrapped in `DistributedDataParallel` when several processes train (its
        gradients are then averaged over them in backward), else `module` itself. `unused`:
        some parameters may get no gradient in a step (frozen layers of the simultaneous
        schedule)."""
        if self.cluster is None:
            return module
        device = next(module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=unused)

    def batch_scale(self, local: int) -> float | torch.Tensor:
        """What a summed loss is multiplied by so that the gradient is the mean over the
        whole batch: 1/B in one process; with P processes, whose gradients DDP averages, P/B,
        B being summed over them (parts may differ by an example, and be empty at an epoch's
        end). The sum stays a tensor on the device: no host synchronisation in the step."""
        if self.cluster is None:
            return 1.0 / max(local, 1)
        total = self.all_reduce_sum(torch.tensor([float(local)], device=self.device))  # (1,)
        return (self.cluster.world / total.clamp(min=1.0)).squeeze(0)

    @property
    def graphs_allowed(self) -> bool:
        """Whether a step may be captured as a CUDA graph: on CUDA, in one process (DDP's
        hooks are not captured)."""
        return self.device.type == "cuda" and self.cluster is None
