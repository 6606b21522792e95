"""`mfstore train`: train a network with Mono-Forward beside a backprop baseline."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options as o
from cli.context import workspace
from cli.render import (
    TrainingProgress,
    accuracy_table,
    network_accuracy_table,
    print_json,
    record_dict,
    stdout,
)
from cli.tracking import MLflow, refuse_unregistered, track_layers
from mfstore.dataset import load_dataset
from mfstore.experiment import run_experiment
from mfstore.layer_training import train_network
from mfstore.network import evaluate_network


def train(
    ctx: typer.Context,
    data: Annotated[str, typer.Option(
        help="With NET: a registered dataset. Without: any fsspec URL or sklearn:NAME.")],
    arch: Annotated[str, typer.Option(
        help="Layers, e.g. dense:1000,dense:1000 or conv:64,conv:128.")],
    net: Annotated[str | None, typer.Argument(
        help="Register the layers as NET.l1, NET.l2, … and the network NET. Without it, "
             "train in memory and register nothing.")] = None,
    schedule: Annotated[str, typer.Option(help="sequential or simultaneous.")] = "sequential",
    mode: Annotated[str, typer.Option(help="Default prediction mode of NET: bp or ff.")] = "bp",
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
    mlflow: MLflow = None,
) -> None:
    """Train with Mono-Forward and report every layer, FF, BP and the backprop baseline.

    Example: mfstore train digits-mlp --data digits --arch dense:256,dense:256
    Example: mfstore train --data sklearn:digits --arch dense:256,dense:256 --epochs 30
    """
    config = o.train_config(ctx.params)
    if net is None:
        refuse_unregistered(mlflow)
        _train_in_memory(data, arch, schedule, baseline, config, fmt, label_column,
                         val_fraction, as_json)
        return
    ws = workspace(ctx)
    with TrainingProgress(enabled=not as_json) as progress:
        result = train_network(ws, net, data, arch, config, schedule, mode, progress, baseline)
    track_layers(ctx, mlflow, result.layers)
    _, accuracy = evaluate_network(ws, result.network.ref, device=device)
    bp = None if result.baseline is None else result.baseline.test.bp
    if as_json:
        print_json({"network": record_dict(result.network), "test": accuracy.to_dict(),
                    "baseline": None if bp is None else {"algorithm": "bp", "test": bp},
                    "layers": [record_dict(v) for v in result.layers]})
        return
    table = network_accuracy_table(f"{result.network.ref} on {data}",
                                   [v.ref for v in result.layers], accuracy)
    if bp is not None:
        table.add_row("BP baseline", f"{bp:.2%}")
    stdout.print(table)


def _train_in_memory(data, arch, schedule, baseline, config, fmt, label_column, val_fraction,
                     as_json) -> None:
    dataset = load_dataset(data, o.dataset_options(fmt, label_column, val_fraction))
    with TrainingProgress(enabled=not as_json) as progress:
        result = run_experiment(dataset, arch, config, schedule, baseline, callback=progress)
    if as_json:
        print_json({"data": data, "fingerprint": dataset.fingerprint, **result.to_dict()})
    else:
        stdout.print(accuracy_table(result, f"{data} · {arch} · {schedule}"))
