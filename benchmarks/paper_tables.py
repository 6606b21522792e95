"""The paper's tables beside ours: every algorithm on the same layers, initial weights, data
order, optimizer and schedule (MF: the simultaneous schedule, the paper's Algorithm 1), mean ±
std over seeds. Every prediction (each algorithm's, MF's FF and BP mode, each MF layer) is
read at the epoch where its own validation accuracy is best; test accuracy is recorded every
epoch but never used to choose.

    python benchmarks/paper_tables.py                      # every table, 3 seeds, 30 epochs (GPU)
    python benchmarks/paper_tables.py --tables small       # digits, breast cancer (CPU: minutes)
    python benchmarks/paper_tables.py --tables mlp local embed --examples 5000 \\
        --eval-examples 2000 --epochs 5 --seeds 0           # a CPU subset of the F-MNIST tables

    mlp    Fashion-MNIST, MLP 2x1000: BP FA DFA FF MF                       paper Table 3
    cnn    Fashion-MNIST, CNN 64-128-256-512: BP FA DFA MF                  paper Table 2
    small  digits (MLP 2x1000, CNN 64-128-256), breast cancer (MLP 2x100)   paper Table 6
    local  Fashion-MNIST, locally connected MLPs of 2 and 3 layers,         paper Table 1
           per-layer accuracy (the paper: CIFAR-10, not available here)
    embed  Fashion-MNIST as token sequences (one token per lit pixel:       paper Table 6
           position x 4 intensity levels), embed:50,dense:100 (the paper: IMDB)

Training settings: `TrainConfig`'s defaults (optimizer, learning rate and its schedule, batch
size), `--epochs` epochs, no early stopping. FF is left out of the CNN tables, as in the paper.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import best_on_validation
from common import (
    FASHION_MNIST,
    fashion_mnist_or_synthetic,
    machine,
    print_table,
    trim_evaluation,
)

from mfstore.baseline import algorithms
from mfstore.config import DatasetOptions, TrainConfig
from mfstore.dataset import Dataset, build_dataset, load_dataset
from mfstore.devices import resolve_device
from mfstore.evaluation import evaluate
from mfstore.inputs import split_batches
from mfstore.modules import build_layers
from mfstore.readers import RawData, read_source
from mfstore.run_context import RunContext
from mfstore.spec import build_specs, parse_arch
from mfstore.training import train_simultaneous

CNN = "conv:64,conv:128,conv:256,conv:512"
ALL = ["bp", "fa", "dfa", "ff", "mf"]


@dataclass(frozen=True)
class Experiment:
    table: str
    data: str  # fmnist, fmnist-tokens, digits, breast_cancer
    arch: str
    algorithms: list[str]
    paper: dict[str, str]  # row -> the paper's figure


EXPERIMENTS = [
    Experiment("mlp", "fmnist", "dense:1000,dense:1000", ALL, {
        "BP": "90.27 ± 0.19", "FA": "84.49 ± 0.15", "DFA": "89.17 ± 0.07", "FF": "87.88 ± 0.13",
        "MF (FF pred)": "90.52 ± 0.02", "MF (BP pred)": "90.51 ± 0.05"}),
    Experiment("cnn", "fmnist", CNN, ["bp", "fa", "dfa", "mf"], {
        "BP": "92.63 ± 0.06", "FA": "90.04 ± 0.93", "DFA": "87.87 ± 0.21",
        "MF (FF pred)": "93.98 ± 0.08", "MF (BP pred)": "93.47 ± 0.16"}),
    Experiment("small", "digits", "dense:1000,dense:1000", ALL, {}),
    Experiment("small", "digits", "conv:64,conv:128,conv:256", ["bp", "fa", "dfa", "mf"], {}),
    Experiment("small", "breast_cancer", "dense:100,dense:100", ALL, {
        "BP": "97.37 ± 0.00", "MF (FF pred)": "97.37 ± 0.00", "MF (BP pred)": "97.37 ± 0.00"}),
    Experiment("local", "fmnist", "local:16:kernel=4,local:16:kernel=8", ["bp", "mf"], {
        "BP": "59.40 ± 0.13 (CIFAR-10)", "MF (FF pred)": "61.61 ± 0.06",
        "MF layer 1": "59.57 ± 0.21", "MF layer 2": "61.71 ± 0.18"}),
    Experiment("local", "fmnist", "local:16:kernel=4,local:16:kernel=8,local:16:kernel=16",
               ["bp", "mf"], {
                   "BP": "58.79 ± 0.07 (CIFAR-10)", "MF (FF pred)": "61.78 ± 0.03",
                   "MF layer 1": "59.57 ± 0.21", "MF layer 2": "61.71 ± 0.18",
                   "MF layer 3": "60.11 ± 0.36"}),
    Experiment("embed", "fmnist-tokens", "embed:50,dense:100", ["bp", "fa", "dfa", "mf"], {
        "BP": "87.41 ± 0.17 (IMDB)", "MF (FF pred)": "88.37 ± 0.15 (IMDB, MF)"}),
]


def fmnist_tokens(examples: int | None) -> Dataset:
    """Fashion-MNIST as token sequences: a token per lit pixel, id = position * 4 + its
    intensity level (1..4), 0 = padding."""
    raw = read_source(FASHION_MNIST)
    converted, longest = [], 0
    for x in (raw.x_train, raw.x_test):
        assert x is not None
        levels = np.ceil(x.reshape(len(x), -1) / 64.0).astype(np.int64)  # (N, 784): 0..4
        lit = levels > 0
        ids = np.where(lit, np.arange(levels.shape[1]) * 4 + levels, 0)
        order = np.argsort(~lit, axis=1, kind="stable")  # lit pixels first, in order
        converted.append(np.take_along_axis(ids, order, 1))
        longest = max(longest, int(lit.sum(1).max()))
    converted = [ids[:, :longest] for ids in converted]  # one length for both splits
    tokens = RawData(converted[0], raw.y_train, converted[1], raw.y_test, "tokens",
                     tokens=True)
    data = build_dataset(tokens, "fashion-mnist-tokens",
                         DatasetOptions(val_fraction=5000 / 60000))
    if examples is not None:
        data.train.x, data.train.y = data.train.x[:examples], data.train.y[:examples]
    return data


def load(name: str, examples: int | None) -> Dataset:
    if name == "fmnist":
        return fashion_mnist_or_synthetic(examples)[0]
    if name == "fmnist-tokens":
        return fmnist_tokens(examples)
    return load_dataset(f"sklearn:{name}")


def row_name(algorithm: str) -> str:
    return algorithm.upper()


class Curves:
    """Per epoch, (validation, test) accuracy of every prediction row."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[float, float]]] = {}

    def add(self, row: str, val: float, test: float) -> None:
        self.rows.setdefault(row, []).append((val, test))


def run_mf(arch: str, data: Dataset, config: TrainConfig, device) -> Curves:
    """MF's simultaneous schedule; after each epoch, every prediction on val and test."""
    train, val, test = (split_batches(s, config, device) for s in (data.train, data.val,
                                                                    data.test))
    specs = build_specs(parse_arch(arch), data.input_shape, data.classes, data.options.vocab)
    layers, curves = build_layers(specs, config.seed), Curves()

    def monitor(report) -> None:
        if report.layer != len(layers) - 1:
            return
        v, t = evaluate(layers, val, device), evaluate(layers, test, device)
        curves.add("MF (FF pred)", v.ff, t.ff)
        curves.add("MF (BP pred)", v.bp, t.bp)
        for k in range(len(layers)):
            curves.add(f"MF layer {k + 1}", v.per_layer[k], t.per_layer[k])

    train_simultaneous(layers, train, val, config, device=device, callback=monitor)
    return curves


def run_baseline(arch: str, name: str, data: Dataset, config: TrainConfig,
                 device) -> Curves:
    """Baseline `name` on the layers MF starts from; after each epoch, its prediction."""
    train, val, test = (split_batches(s, config, device) for s in (data.train, data.val,
                                                                    data.test))
    specs = build_specs(parse_arch(arch), data.input_shape, data.classes, data.options.vocab)
    layers, curves, algorithm = build_layers(specs, config.seed), Curves(), algorithms()[name]
    ctx = RunContext.alone(device)

    def monitor(report) -> None:
        v, t = (algorithm.evaluate(layers, s, ctx) for s in (val, test))
        curves.add(row_name(name), getattr(v, algorithm.mode), getattr(t, algorithm.mode))

    algorithm.train(layers, train, val, config, ctx, monitor)
    return curves


def summarise(exp: Experiment, runs: list[dict[str, list]]) -> list[list[str]]:
    rows = []
    for row in runs[0]:
        chosen = [best_on_validation(run[row]) for run in runs]
        accs = [100 * t for _, t in chosen]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append([row, exp.paper.get(row, "—"), f"{statistics.mean(accs):.2f} ± {std:.2f}",
                     " ".join(f"{a:.2f}" for a in accs), " ".join(str(e) for e, _ in chosen)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["mlp", "cnn", "small", "local", "embed"],
                        choices=["mlp", "cnn", "small", "local", "embed"])
    parser.add_argument("--data", nargs="+", default=None,
                        choices=sorted({e.data for e in EXPERIMENTS}),
                        help="only the tables' experiments on these datasets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--examples", type=int, default=None,
                        help="Fashion-MNIST train subset (all: 55,000)")
    parser.add_argument("--eval-examples", type=int, default=None,
                        help="Fashion-MNIST validation and test subsets (all: 5,000, 10,000)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/paper_tables.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    base = replace(TrainConfig(), epochs=args.epochs, patience=None, device=args.device)
    print(f"# paper tables, {machine()}, {args.epochs} epochs, batch {base.batch_size}, "
          f"{base.optimizer} lr {base.lr} wd {base.weight_decay} {base.lr_schedule}, F-MNIST "
          f"train {'all' if args.examples is None else args.examples}, val and test "
          f"{'all' if args.eval_examples is None else args.eval_examples}, seeds {args.seeds}")
    results = []
    for exp in (e for e in EXPERIMENTS if e.table in args.tables
                and (args.data is None or e.data in args.data)):
        data, start = load(exp.data, args.examples), time.perf_counter()
        if exp.data.startswith("fmnist"):
            data = trim_evaluation(data, args.eval_examples)
        runs = []
        for seed in args.seeds:
            config, curves = replace(base, seed=seed), {}
            for name in exp.algorithms:
                run = (run_mf(exp.arch, data, config, device) if name == "mf"
                       else run_baseline(exp.arch, name, data, config, device))
                curves.update(run.rows)
            runs.append(curves)
        rows = summarise(exp, runs)
        print(f"\n## {exp.table}: {exp.data} {exp.arch} ({len(data.train)} train, "
              f"{len(data.val)} val, {len(data.test)} test; {time.perf_counter() - start:.0f} s)")
        print_table(["prediction", "paper", "ours: test % (mean ± std)", "per seed",
                     "epochs (on val)"], rows)
        results.append({"table": exp.table, "data": exp.data, "arch": exp.arch,
                        "train_examples": len(data.train), "seeds": args.seeds,
                        "config": base.to_dict(), "machine": machine(), "rows": rows,
                        "curves": runs})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\n# results: {args.out}")


if __name__ == "__main__":
    main()
