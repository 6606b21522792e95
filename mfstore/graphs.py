"""The fast path on CUDA: a training step captured once as a CUDA graph and replayed.

Eager training on a GPU launches one small kernel after another from Python, and for an MLP
the launches, not the arithmetic, set the pace. `GraphedStep` wraps any training step
(`epochs.Step`: MF's `mf_step`, BP's `bp_step`, the other baselines) so that on CUDA:

- the first `WARMUP` full batches run eagerly on a side stream (they allocate the optimizer's
  state and the libraries' workspaces, which a capture must not do), each a real step;
- the next full batch is copied into static buffers and the step captured as a CUDA graph,
  optimizer update included (the optimizer is `capturable`: its step count and learning rate
  live on the device, so a learning-rate schedule still applies to every replay);
- every later full batch is copied into the static buffers and the graph replayed: one
  launch per step, no host synchronisation;
- a batch of another shape (the short last batch of an epoch) runs eagerly, the same math.

Graphed and eager steps compute the same numbers: the same kernels on the same inputs
(`tests/test_gpu.py` checks it, within 1e-5 in float32 with TF32 off). On the CPU, under
data-parallel training (DDP's hooks are not captured) or with `config.cuda_graphs` off, the
step runs eagerly as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

WARMUP = 3  # eager full-batch steps before the capture
# A capturable optimizer stepped eagerly (the warm-up, a short batch) is intended here.
warnings.filterwarnings("ignore", message="This instance was constructed with capturable=True",
                        category=UserWarning)
# (x, y, optimizer) -> the batch's loss sums, detached, left on the device
Step = Callable[[torch.Tensor, torch.Tensor, torch.optim.Optimizer], torch.Tensor]


class GraphedStep:
    """`step` captured as a CUDA graph on static batch buffers (see the module's text)."""

    def __init__(self, step: Step, device: torch.device, enabled: bool = True) -> None:
        """`enabled`: capture on CUDA (the caller says whether its run allows it:
        `RunContext.graphs_allowed`); elsewhere the step runs eagerly."""
        self.step, self.device = step, device
        self.enabled = enabled and device.type == "cuda"
        self.shape: tuple[torch.Size, torch.Size] | None = None  # of a full batch
        self.warm = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # x, y, out

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor,
                 opt: torch.optim.Optimizer) -> torch.Tensor:
        if not self.enabled:
            return self.step(x, y, opt)
        if self.shape is None:
            self.shape = (x.shape, y.shape)  # an epoch's first batch is a full one
        if (x.shape, y.shape) != self.shape:
            return self.step(x, y, opt)  # the short last batch: eagerly
        if self.warm < WARMUP:
            self.warm += 1
            return self._on_side_stream(x, y, opt)
        if self.graph is None and not self._capture(x, y, opt):
            return self.step(x, y, opt)  # capture failed: eager from now on, the same math
        assert self.graph is not None and self.static is not None
        static_x, static_y, out = self.static
        static_x.copy_(x, non_blocking=True)
        static_y.copy_(y, non_blocking=True)
        self.graph.replay()
        return out.clone()  # the next replay overwrites `out`

    def _on_side_stream(self, x: torch.Tensor, y: torch.Tensor,
                        opt: torch.optim.Optimizer) -> torch.Tensor:
        side, main = torch.cuda.Stream(self.device), torch.cuda.current_stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self.step(x, y, opt)
        main.wait_stream(side)
        return out

    def _capture(self, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> bool:
        """Record one step on static buffers; capturing runs nothing (the caller replays).
        A step that cannot be captured (an operation CUDA graphs refuse) is run eagerly from
        then on, with a warning: capturing ran no kernel, so nothing was half done."""
        static_x, static_y = x.clone(), y.clone()
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: the stream's prefetch thread may pin memory while this captures
            with torch.cuda.device(self.device), torch.cuda.graph(
                    graph, capture_error_mode="thread_local"):
                out = self.step(static_x, static_y, opt)
        except RuntimeError as err:
            warnings.warn(f"training step not captured as a CUDA graph, running eagerly: "
                          f"{err}", RuntimeWarning, stacklevel=2)
            self.enabled = False
            opt.zero_grad(set_to_none=True)
            return False
        self.graph, self.static = graph, (static_x, static_y, out)
        return True

