"""MF vs BP time per epoch, same process, same data order, same optimizer.

    python benchmarks/epoch_time.py                      # 2x1000 and 4x1000, batch 64/256/full
    python benchmarks/epoch_time.py --examples 10000 --depths 2

Both algorithms run the library's own step functions (`mf_step`, `bp_step`) with the same
fused (CUDA) or foreach (CPU) Adam, no host syncs in the loop, and MF and BP epochs are
interleaved so drift of a noisy machine hits both alike. On CUDA three more variants are
timed: both steps captured as CUDA graphs (fair to BP), and MF captured with one CUDA stream
per layer, which only MF allows: layer k's backward and Adam update need not wait for layer
k+1 (no backward locking), so they overlap with the next layer's forward.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist_or_synthetic, machine, median, print_table, timed

from mfstore.baseline import backprop_parameters, bp_step
from mfstore.batches import epoch_generator
from mfstore.config import TrainConfig
from mfstore.devices import make_optimizer
from mfstore.modules import MFLayer, MFNet, build_layers
from mfstore.spec import build_specs, parse_arch
from mfstore.training import LocalLosses, mf_step

Step = Callable[[torch.Tensor, torch.Tensor], object]


def flops_per_example(widths: list[int], inputs: int, classes: int) -> tuple[int, int]:
    """Multiply-adds x2 of one training step per example: (MF, BP)."""
    dims = [inputs, *widths]
    fwd = sum(2 * a * b for a, b in itertools.pairwise(dims))
    weight_grads = fwd
    input_grads = sum(2 * a * b for a, b in itertools.pairwise(dims[1:]))  # BP only
    mf = fwd + weight_grads + sum(3 * 2 * w * classes for w in widths)  # G, dM, dL/da per layer
    bp = fwd + weight_grads + input_grads + 3 * 2 * widths[-1] * classes
    return mf, bp


def epoch_runner(step: Step, x: torch.Tensor, y: torch.Tensor, batch: int,
                 drop_last: bool) -> Callable[[int], None]:
    """One epoch of `step` over the same per-epoch permutation for every algorithm."""
    n = x.shape[0]

    def run(epoch: int) -> None:
        if batch >= n:
            step(x, y)
            return
        order = torch.randperm(n, generator=epoch_generator(0, epoch)).to(x.device)
        xs, ys = x.index_select(0, order), y.index_select(0, order)  # one gather per epoch
        stop = n - n % batch if drop_last else n
        for start in range(0, stop, batch):
            step(xs[start:start + batch], ys[start:start + batch])

    return run


def graphed(step: Step, x: torch.Tensor, y: torch.Tensor, batch: int) -> Step:
    """Capture `step` on static buffers as a CUDA graph; each call copies a batch and replays."""
    static_x, static_y = x[:batch].clone(), y[:batch].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up allocates optimizer state and cuBLAS workspaces
            step(static_x, static_y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_x, static_y)

    def replay(xb: torch.Tensor, yb: torch.Tensor) -> None:
        if xb.shape[0] != batch:
            return
        static_x.copy_(xb, non_blocking=True)
        static_y.copy_(yb, non_blocking=True)
        graph.replay()

    return replay


def mf_stream_step(layers: list[MFLayer], opts: list[torch.optim.Optimizer]) -> Step:
    """MF with one stream per layer: layer k's loss, backward and Adam step run on stream k
    while layer k+1's forward already runs on stream k+1 (no backward locking)."""
    streams = [torch.cuda.Stream() for _ in layers]

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        main = torch.cuda.current_stream()
        a = x
        for layer, opt, stream in zip(layers, opts, streams, strict=True):
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                a_out = layer(a.detach())
                ready = torch.cuda.Event()
                ready.record(stream)
                loss = F.cross_entropy(layer.goodness(a_out), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            main.wait_event(ready)  # the next layer needs only this layer's forward
            a = a_out
        for stream in streams:
            main.wait_stream(stream)

    return step


def build(specs, device, config, capturable):
    layers = [layer.to(device) for layer in build_layers(specs, seed=0)]
    return layers, make_optimizer([p for lay in layers for p in lay.parameters()], config,
                                  device, capturable)


def mf_and_bp_steps(specs, device, config, capturable: bool) -> tuple[Step, Step]:
    """Fresh MF and BP training steps, each with its own layers and optimizer."""
    mf_layers, mf_opt = build(specs, device, config, capturable)
    net = MFNet([layer.to(device) for layer in build_layers(specs, seed=0)], "bp")
    bp_opt = make_optimizer(backprop_parameters(net), config, device, capturable)
    objective = LocalLosses(mf_layers)
    return (lambda a, b: mf_step(objective, a, b, mf_opt),
            lambda a, b: bp_step(net, a, b, bp_opt))


def variants(specs, device, config, x, y, batch):
    """name -> step for every variant that runs on this device."""
    mf, bp = mf_and_bp_steps(specs, device, config, capturable=False)
    out = {"MF eager": mf, "BP eager": bp}
    if device.type != "cuda":
        return out
    b = min(batch, x.shape[0])
    mf, bp = mf_and_bp_steps(specs, device, config, capturable=True)
    out["MF graph"] = graphed(mf, x, y, b)
    out["BP graph"] = graphed(bp, x, y, b)
    s_layers = [layer.to(device) for layer in build_layers(specs, seed=0)]
    s_opts = [make_optimizer(list(layer.parameters()), config, device, capturable=True)
              for layer in s_layers]
    out["MF graph+streams"] = graphed(mf_stream_step(s_layers, s_opts), x, y, b)
    return out


def measure(depth: int, batch: int, data, device, repeats: int) -> dict[str, float]:
    specs = build_specs(parse_arch(",".join(["dense:1000"] * depth)), data.input_shape, 10)
    x, y = data.train.x.to(device), data.train.y.to(device)
    config = TrainConfig(batch_size=batch, device=str(device))
    steps = variants(specs, device, config, x, y, batch)
    drop = device.type == "cuda"  # graphs replay full batches only; eager matches them
    runners = {name: epoch_runner(step, x, y, batch, drop) for name, step in steps.items()}
    for run in runners.values():  # warm-up: allocator, kernels, optimizer state
        timed(lambda r=run: r(10**6), device)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(repeats):  # interleaved: MF, BP, MF, BP, ...
        for name, run in runners.items():
            times[name].append(timed(lambda r=run, e=rep: r(e), device))
    return {name: median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=None, help="train examples (all: 55k)")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batches", nargs="+", default=["64", "256", "full"])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    data, source = fashion_mnist_or_synthetic(args.examples)
    n = len(data.train)
    print(f"# epoch time, {source}, {n} train examples, {machine()}, torch {torch.__version__}")
    rows = []
    for depth in args.depths:
        mf_flops, bp_flops = flops_per_example([1000] * depth, 784, 10)
        for b in args.batches:
            batch = n if b == "full" else int(b)
            t = measure(depth, batch, data, device, args.repeats)
            for variant in [v for v in t if v.startswith("MF")]:
                base = "BP graph" if "graph" in variant else "BP eager"
                rows.append([f"{depth}x1000", b, variant, f"{t[variant]:.3f}", base,
                             f"{t[base]:.3f}", f"{t[base] / t[variant]:.2f}x",
                             f"{bp_flops / mf_flops:.2f}x"])
            print(f"  done {depth}x1000 batch {b}", file=sys.stderr)
    print_table(["net", "batch", "MF variant", "MF s/epoch", "vs", "BP s/epoch", "BP/MF",
                 "FLOP BP/MF"], rows)


if __name__ == "__main__":
    main()
