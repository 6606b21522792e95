"""Shared by the benchmarks: data, timing, and tables."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist


def fashion_mnist_or_synthetic(examples: int | None = None):
    """Real Fashion-MNIST when installed, else synthetic data of the same shape (said so)."""
    from mfstore.dataset import DatasetOptions, load_dataset

    if os.path.isdir(FASHION_MNIST):
        data = load_dataset(FASHION_MNIST, DatasetOptions(val_fraction=5000 / 60000))
        source = "Fashion-MNIST"
    else:
        from mfstore.dataset import Dataset, Normalizer, Split

        g = torch.Generator().manual_seed(0)

        def split(n: int) -> Split:
            return Split(torch.randn(n, 1, 28, 28, generator=g),
                         torch.randint(0, 10, (n,), generator=g))

        data = Dataset("synthetic", "synthetic", split(55000), split(5000), split(10000),
                       (1, 28, 28), 10, Normalizer.identity((1, 28, 28)), "synthetic",
                       "synthetic")
        source = "synthetic (Fashion-MNIST not installed)"
    if examples is not None and examples < len(data.train):
        data.train.x, data.train.y = data.train.x[:examples], data.train.y[:examples]
    return data, source


def trim_evaluation(data, examples: int | None):
    """Validation and test cut to their first `examples` (CPU subsets); the same data."""
    if examples is not None:
        for split in (data.val, data.test):
            split.x, split.y = split.x[:examples], split.y[:examples]
    return data


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU, {torch.get_num_threads()} threads"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
