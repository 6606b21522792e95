"""Batches fed to the device ahead of the step that needs them.

On CUDA a batch read from a stream (host memory) is page-locked and copied on a copy stream
one batch ahead, so the copy of batch t+1 overlaps the step on batch t; the compute stream
waits only for the copy it needs. Batches already on the device (splits held in GPU memory)
pass through untouched. On the CPU, batches pass through.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import torch

from mfstore.batches import Batch

AHEAD = 1  # batches copied ahead of the one in use


def on_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """`batches` on `device`, in order; on CUDA copied ahead (see the module's text)."""
    if device.type != "cuda":
        for x, y in batches:
            yield x.to(device), y.to(device)
        return
    copier, compute = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    queue: deque[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]] = deque()
    for x, y in batches:
        queue.append(_start_copy(x, y, device, copier))
        if len(queue) > AHEAD:
            yield _arrived(*queue.popleft(), compute)
    while queue:
        yield _arrived(*queue.popleft(), compute)


def _start_copy(x: torch.Tensor, y: torch.Tensor, device: torch.device,
                copier: torch.cuda.Stream) -> tuple[torch.Tensor, torch.Tensor,
                                                    torch.cuda.Event | None]:
    if x.is_cuda and y.is_cuda:
        return x, y, None
    with torch.cuda.stream(copier):
        x_dev = _pinned(x).to(device, non_blocking=True)
        y_dev = _pinned(y).to(device, non_blocking=True)
        done = torch.cuda.Event()
        done.record(copier)
    return x_dev, y_dev, done


def _pinned(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_cuda or t.is_pinned() else t.pin_memory()


def _arrived(x: torch.Tensor, y: torch.Tensor, done: torch.cuda.Event | None,
             compute: torch.cuda.Stream) -> Batch:
    if done is not None:
        compute.wait_event(done)
        x.record_stream(compute)  # made on the copy stream, used on this one
        y.record_stream(compute)
    return x, y
