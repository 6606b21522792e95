"""`mfstore train`: train a network with Mono-Forward beside a backprop baseline."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options as o
from cli.render import TrainingProgress, accuracy_table, print_json, stdout
from mfstore.dataset import load_dataset
from mfstore.experiment import run_experiment


def train(
    data: Annotated[str, typer.Option(help="Dataset URL (any fsspec URL or sklearn:NAME).")],
    arch: Annotated[str, typer.Option(
        help="Layers, e.g. dense:1000,dense:1000 or conv:64,conv:128.")],
    schedule: Annotated[str, typer.Option(help="sequential or simultaneous.")] = "sequential",
    epochs: o.Epochs = 20,
    batch_size: o.BatchSize = 128,
    lr: o.LearningRate = 1e-3,
    weight_decay: o.WeightDecay = 0.0,
    optimizer: o.Optimizer = "adam",
    lr_schedule: o.LrSchedule = "constant",
    patience: o.Patience = 5,
    baseline: Annotated[str, typer.Option(
        help="bp (train the backprop baseline too) or none.")] = "bp",
    seed: o.Seed = 0,
    deterministic: o.Deterministic = False,
    device: o.Device = "auto",
    fmt: o.Format = None,
    label_column: o.LabelColumn = "label",
    val_fraction: o.ValFraction = 0.1,
    as_json: o.Json = False,
) -> None:
    """Train a network with Mono-Forward and report every layer, FF, BP and the baseline.

    Example: mfstore train --data sklearn:digits --arch dense:256,dense:256 --epochs 30
    """
    dataset = load_dataset(data, o.dataset_options(fmt, label_column, val_fraction))
    config = o.train_config(epochs, batch_size, lr, weight_decay, optimizer, lr_schedule,
                            patience, seed, deterministic, device)
    with TrainingProgress(enabled=not as_json) as progress:
        result = run_experiment(dataset, arch, config, schedule, baseline, callback=progress)
    if as_json:
        print_json({"data": data, "fingerprint": dataset.fingerprint, **result.to_dict()})
    else:
        stdout.print(accuracy_table(result, f"{data} · {arch} · {schedule}"))
