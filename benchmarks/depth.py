"""Depth: does MF's convergence hold up as the MLP gets deeper while BP's slows down (the
paper's claim, 15 layers against 4)? Fashion-MNIST MLPs of 4, 8 and 15 layers of 1000 ReLU
units, MF (simultaneous schedule, the paper's Algorithm 1) against BP on the same layers,
initial weights, data order, optimizer and schedule.

    python benchmarks/depth.py                                   # the full experiment (GPU)
    python benchmarks/depth.py --examples 3000 --eval-examples 2000 --epochs 8 \\
        --width 256 --seeds 0                                    # a CPU subset (minutes)

After every epoch: validation and test accuracy of MF (FF and BP prediction, every layer)
and of BP. The figure (`--png`) draws the validation curves, one panel per prediction with
a line per depth; the table gives the validation accuracy after the first epoch, the best,
the epoch it came at, and the test accuracy at that epoch (chosen on validation, never on
test). Training settings: `TrainConfig`'s defaults, `--epochs` epochs, no early stopping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import best_on_validation
from common import fashion_mnist_or_synthetic, machine, print_table, trim_evaluation
from paper_tables import run_baseline, run_mf

from mfstore.config import TrainConfig
from mfstore.devices import resolve_device

PLOTTED = ("MF (FF pred)", "MF (BP pred)", "BP")


def run_depth(depth: int, width: int, data, config: TrainConfig, device) -> dict[str, list]:
    arch = ",".join([f"dense:{width}"] * depth)
    curves = run_mf(arch, data, config, device).rows
    curves.update(run_baseline(arch, "bp", data, config, device).rows)
    return curves


def summary_rows(results: dict[int, list[dict[str, list]]]) -> list[list[str]]:
    def cell(values: list[float]) -> str:
        mean = statistics.mean(values)
        return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else (
            f"{mean:.2f}")

    rows = []
    for depth, runs in results.items():
        for name in (*PLOTTED, "MF layer 1"):  # layer 1: what the depth adds to
            chosen = [best_on_validation(run[name]) for run in runs]
            rows.append([str(depth), name,
                         cell([100 * run[name][0][0] for run in runs]),
                         cell([100 * max(v for v, _ in run[name]) for run in runs]),
                         " ".join(str(e) for e, _ in chosen),
                         cell([100 * t for _, t in chosen])])
    return rows


def plot(results: dict[int, list[dict[str, list]]], title: str, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(5 * len(PLOTTED), 4), sharey=True)
    for ax, name in zip(axes, PLOTTED, strict=True):
        for depth, runs in results.items():
            curves = [[100 * v for v, _ in run[name]] for run in runs]  # (seeds, epochs)
            mean = [statistics.mean(c) for c in zip(*curves, strict=True)]
            ax.plot(range(1, len(mean) + 1), mean, marker=".", label=f"{depth} layers")
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("validation accuracy (%)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 15])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--examples", type=int, default=None,
                        help="Fashion-MNIST train subset (all: 55,000)")
    parser.add_argument("--eval-examples", type=int, default=None,
                        help="validation and test subsets (all: 5,000 and 10,000)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/depth.json"))
    parser.add_argument("--png", type=Path, default=Path("benchmarks/results/depth.png"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    data, source = fashion_mnist_or_synthetic(args.examples)
    data = trim_evaluation(data, args.eval_examples)
    base = replace(TrainConfig(), epochs=args.epochs, patience=None, device=args.device)
    title = (f"depth, {source}, {len(data.train)} train / {len(data.val)} val / "
             f"{len(data.test)} test, width {args.width}, {machine()}, {args.epochs} epochs, "
             f"batch {base.batch_size}, {base.optimizer} lr {base.lr} wd {base.weight_decay} "
             f"{base.lr_schedule}, seeds {args.seeds}")
    print(f"# {title}")
    results: dict[int, list[dict[str, list]]] = {}
    for depth in args.depths:
        for seed in args.seeds:
            run = run_depth(depth, args.width, data, replace(base, seed=seed), device)
            results.setdefault(depth, []).append(run)
            print(f"  {depth} layers, seed {seed}: " + ", ".join(
                f"{name} val {100 * max(v for v, _ in run[name]):.2f}" for name in PLOTTED),
                file=sys.stderr, flush=True)
    print_table(["layers", "prediction", "val % after epoch 1", "best val %", "at epoch",
                 "test % at that epoch"], summary_rows(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"title": title, "config": base.to_dict(),
                                    "curves": {str(d): r for d, r in results.items()}}))
    drawn = plot(results, title, args.png)
    print(f"# results: {args.out}; " + (f"figure: {args.png}" if drawn else
                                         "no figure: matplotlib is not installed"))


if __name__ == "__main__":
    main()
