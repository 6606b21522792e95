"""MF vs BP time per epoch, measured by the product's own training loop.

    python benchmarks/epoch_time.py                      # 2x1000 and 4x1000, batch 64/256/full
    python benchmarks/epoch_time.py --examples 10000 --depths 2 --batches 64

Every variant is one call of the library's training functions, as `mfstore train` makes
them: `train_simultaneous` (MF, the paper's Algorithm 1) and `train_backprop` (BP), on the
same layers, data order and fused (CUDA) or foreach (CPU) Adam, with no validation split so
that only training is timed. An epoch's time is the gap between two epoch reports (each epoch
ends in one host sync); epochs until the step is captured (warm-up, capture) are not
counted. Variants alternate round by round, so drift of a noisy machine hits them alike.
On CUDA three more variants: both algorithms with their step captured as a CUDA graph
(`cuda_graphs`, on by default), and MF with one CUDA stream per layer (`overlap`), which
only MF allows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist_or_synthetic, machine, median, print_table

from mfstore.backprop import train_backprop
from mfstore.batches import TensorBatches
from mfstore.config import TrainConfig
from mfstore.graphs import WARMUP
from mfstore.history import EpochReport
from mfstore.modules import build_layers
from mfstore.spec import build_specs, parse_arch
from mfstore.training import train_simultaneous

RESULTS = Path(__file__).resolve().parent / "results"


def flops_per_example(widths: list[int], inputs: int, classes: int) -> tuple[int, int]:
    """Multiply-adds x2 of one training step per example: (MF, BP)."""
    dims = [inputs, *widths]
    fwd = sum(2 * a * b for a, b in itertools.pairwise(dims))
    weight_grads = fwd
    input_grads = sum(2 * a * b for a, b in itertools.pairwise(dims[1:]))  # BP only
    mf = fwd + weight_grads + sum(3 * 2 * w * classes for w in widths)  # G, dM, dL/da per layer
    bp = fwd + weight_grads + input_grads + 3 * 2 * widths[-1] * classes
    return mf, bp


def variants(device: torch.device) -> dict[str, tuple[str, dict[str, bool]]]:
    """name -> (algorithm, TrainConfig switches) for every variant that runs on `device`."""
    out = {"MF eager": ("mf", {"cuda_graphs": False}), "BP eager": ("bp", {"cuda_graphs": False})}
    if device.type == "cuda":
        out |= {"MF graph": ("mf", {}), "BP graph": ("bp", {}),
                "MF graph+overlap": ("mf", {"overlap": True})}
    return out


def epoch_seconds(algorithm: str, switches: dict[str, bool], specs, train: TensorBatches,
                  batch: int, device: torch.device) -> list[float]:
    """Seconds of the epochs after the graph is captured (warm-up steps and the capture
    take the first WARMUP + 1 steps: at full batch, that many epochs), by the product's
    loop; two epochs are timed."""
    steps = -(-len(train) // batch)
    settle = -(-(WARMUP + 1) // steps)  # epochs until the step is captured
    config = TrainConfig(epochs=settle + 2, batch_size=batch, patience=None,
                         device=str(device), **switches)
    ends: dict[int, float] = {}

    def mark(report: EpochReport) -> None:
        ends.setdefault(report.epoch, time.perf_counter())

    layers = build_layers(specs, seed=0)
    if algorithm == "mf":
        train_simultaneous(layers, train, None, config, device=device, callback=mark)
    else:
        train_backprop(layers, train, None, config, device=device, callback=mark)
    times = [ends[e] for e in sorted(ends)]
    return [b - a for a, b in itertools.pairwise(times)][settle - 1:]


def measure(depth: int, batch: int, data, device: torch.device, repeats: int
            ) -> dict[str, float]:
    specs = build_specs(parse_arch(",".join(["dense:1000"] * depth)), data.input_shape, 10)
    train = TensorBatches(data.train.x, data.train.y, batch, 0, 4096).to(device)
    times: dict[str, list[float]] = {name: [] for name in variants(device)}
    for _ in range(repeats):  # interleaved rounds: MF, BP, MF, BP, ...
        for name, (algorithm, switches) in variants(device).items():
            times[name] += epoch_seconds(algorithm, switches, specs, train, batch, device)
    return {name: median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=None, help="train examples (all: 55k)")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batches", nargs="+", default=["64", "256", "full"])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=RESULTS / "epoch_time.json")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    data, source = fashion_mnist_or_synthetic(args.examples)
    n = len(data.train)
    print(f"# epoch time by the training loop, {source}, {n} train examples, {machine()}, "
          f"torch {torch.__version__}")
    rows, results = [], []
    for depth in args.depths:
        mf_flops, bp_flops = flops_per_example([1000] * depth, 784, 10)
        for b in args.batches:
            batch = n if b == "full" else int(b)
            t = measure(depth, batch, data, device, args.repeats)
            results.append({"depth": depth, "batch": b, "seconds_per_epoch": t})
            for variant in [v for v in t if v.startswith("MF")]:
                base = "BP graph" if "graph" in variant else "BP eager"
                rows.append([f"{depth}x1000", b, variant, f"{t[variant]:.3f}", base,
                             f"{t[base]:.3f}", f"{t[base] / t[variant]:.2f}x",
                             f"{bp_flops / mf_flops:.2f}x"])
            print(f"  done {depth}x1000 batch {b}", file=sys.stderr)
    print_table(["net", "batch", "MF variant", "MF s/epoch", "vs", "BP s/epoch", "BP/MF",
                 "FLOP BP/MF"], rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": str(device), "examples": n, "source": source,
                                     "results": results}, indent=1))


if __name__ == "__main__":
    main()
