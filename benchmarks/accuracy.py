"""Fashion-MNIST accuracy: MF (FF and BP prediction) vs BP, mean ± std over seeds.

    python benchmarks/accuracy.py --nets mlp --seeds 0 1 2            # MLP 2x1000, ~15 min on CPU
    python benchmarks/accuracy.py --nets cnn --examples 10000 --epochs 5 --seeds 0   # CPU subset
    python benchmarks/accuracy.py --nets mlp cnn --seeds 0 1 2         # the full table (GPU)

Both algorithms use the same layers, initial weights, data order, optimizer and schedule.
MF runs the simultaneous schedule (the paper's Algorithm 1) by default; with
`--schedule sequential` each layer trains to the end before the next (the layer store's way),
every layer but the last keeping its best validation-loss epoch. Each algorithm's (last
layer's) epoch is chosen on the 5,000-example validation split (never on test); the table
gives the test accuracy at that epoch. Test accuracy is recorded every epoch for the plot only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist_or_synthetic, machine, print_table

from mfstore.backprop import train_backprop
from mfstore.config import TrainConfig
from mfstore.devices import resolve_device
from mfstore.evaluation import evaluate
from mfstore.inputs import split_batches
from mfstore.modules import build_layers
from mfstore.spec import build_specs, parse_arch
from mfstore.stack import train_sequential
from mfstore.training import train_simultaneous

NETS = {"mlp": "dense:1000,dense:1000", "cnn": "conv:64,conv:128,conv:256,conv:512"}


class Monitor:
    """After every epoch: validation and test accuracy of MF (FF, BP mode) or of BP."""

    def __init__(self, layers, val, test, device, last_layer):
        self.layers, self.val, self.test, self.device = layers, val, test, device
        self.last_layer = last_layer
        self.curves: dict[str, list[tuple[float, float]]] = {}

    def __call__(self, report) -> None:
        if report.algorithm == "mf" and report.layer != self.last_layer:
            return
        val, test = (evaluate(self.layers, s, self.device) for s in (self.val, self.test))
        if report.algorithm == "mf":
            self.curves.setdefault("MF (FF pred)", []).append((val.ff, test.ff))
            self.curves.setdefault("MF (BP pred)", []).append((val.bp, test.bp))
        else:
            self.curves.setdefault("BP", []).append((val.bp, test.bp))


def best_on_validation(curve: list[tuple[float, float]]) -> tuple[int, float]:
    """(1-based epoch of the best validation accuracy, test accuracy at that epoch)."""
    epoch = max(range(len(curve)), key=lambda i: (curve[i][0], -i))
    return epoch + 1, curve[epoch][1]


def run_seed(net: str, seed: int, data, args) -> dict[str, list[tuple[float, float]]]:
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         optimizer=args.optimizer, weight_decay=args.weight_decay,
                         lr_schedule=args.lr_schedule, patience=None, seed=seed,
                         device=args.device)
    device = resolve_device(config.device)
    train, val, test = (split_batches(s, config, device)
                        for s in (data.train, data.val, data.test))
    specs = build_specs(parse_arch(NETS[net]), data.input_shape, data.classes)
    mf_layers = build_layers(specs, seed)
    monitor = Monitor(mf_layers, val, test, device, last_layer=len(specs) - 1)
    if args.schedule == "simultaneous":
        train_simultaneous(mf_layers, train, val, config, device=device, callback=monitor)
    else:  # the monitor reads the stack while its last layer trains on the earlier ones' outputs
        train_sequential(mf_layers, train, val, config, device=device, callback=monitor)
    bp_layers = build_layers(specs, seed)
    bp_monitor = Monitor(bp_layers, val, test, device, last_layer=None)
    train_backprop(bp_layers, train, val, config, device=device, callback=bp_monitor)
    return {**monitor.curves, **bp_monitor.curves}


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (net, runs) in zip(axes[0], results.items(), strict=True):
        for name in runs[0]:
            curves = torch.tensor([[t for _, t in run[name]] for run in runs]) * 100
            epochs = range(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(0), label=name)
            if len(runs) > 1:
                ax.fill_between(epochs, curves.min(0).values, curves.max(0).values, alpha=0.2)
        ax.set(title=f"Fashion-MNIST, {net} ({NETS[net]})", xlabel="epoch",
               ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["mlp"], choices=list(NETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--examples", type=int, default=None, help="train subset (all: 55k)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--lr-schedule", default="cosine")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--schedule", default="simultaneous",
                        choices=["simultaneous", "sequential"])
    parser.add_argument("--png", type=Path, default=Path("benchmarks/results/accuracy.png"))
    args = parser.parse_args()
    data, source = fashion_mnist_or_synthetic(args.examples)
    print(f"# accuracy, {source}, {len(data.train)} train / {len(data.val)} val / "
          f"{len(data.test)} test, {machine()}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.optimizer} lr {args.lr} wd {args.weight_decay}, {args.lr_schedule}, MF "
          f"{args.schedule}")
    results: dict[str, list[dict]] = {}
    rows = []
    for net in args.nets:
        results[net] = []
        for seed in args.seeds:
            results[net].append(run_seed(net, seed, data, args))
            chosen = {k: best_on_validation(v) for k, v in results[net][-1].items()}
            print(f"  {net} seed {seed}: " + ", ".join(
                f"{k} {t:.2%} (epoch {e})" for k, (e, t) in chosen.items()), file=sys.stderr)
        for name in results[net][0]:
            chosen = [best_on_validation(run[name]) for run in results[net]]
            accs = [100 * t for _, t in chosen]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            rows.append([net, name, f"{statistics.mean(accs):.2f} ± {std:.2f}",
                         " ".join(f"{a:.2f}" for a in accs), " ".join(str(e) for e, _ in chosen)])
    print_table(["net", "algorithm", "test % (mean ± std)", "per seed", "epochs (on val)"], rows)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args.png)
    print(f"# plot: {args.png}")


if __name__ == "__main__":
    main()
