"""Options shared by the commands that train."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mfstore.config import TrainConfig
from mfstore.dataset import DatasetOptions
from mfstore.spec import LayerPlan

Epochs = Annotated[int, typer.Option(help="Most epochs per layer.")]
BatchSize = Annotated[int, typer.Option(help="Examples per step.")]
LearningRate = Annotated[float, typer.Option("--lr", help="Adam learning rate.")]
WeightDecay = Annotated[float, typer.Option(
    help="Weight decay (L2 for adam, decoupled for adamw).")]
Optimizer = Annotated[str, typer.Option(help="adam or adamw.")]
LrSchedule = Annotated[str, typer.Option(help="constant or cosine (over --epochs).")]
Patience = Annotated[int, typer.Option(help="Stop a layer after this many epochs without a "
                                            "better validation loss; 0 = never stop early.")]
Seed = Annotated[int, typer.Option(help="Seed of initialisation, data order and splits.")]
Deterministic = Annotated[bool, typer.Option(help="Deterministic kernels (bit-reproducible).")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Format = Annotated[str | None, typer.Option("--format", help="idx, cifar, npz, csv, parquet or "
                                                              "sklearn (default: from the URL).")]
LabelColumn = Annotated[str, typer.Option(help="Label column of CSV / Parquet data.")]
ValFraction = Annotated[float, typer.Option(help="Share of train held out for validation.")]


def train_config(params: dict[str, Any]) -> TrainConfig:
    """The training options of a command (its `ctx.params`); --patience 0 = never stop."""
    return TrainConfig.from_dict({**params, "patience": params["patience"] or None})


def layer_plan(params: dict[str, Any]) -> LayerPlan:
    """The layer options of a command (its `ctx.params`)."""
    return LayerPlan(params["kind"], params["width"], params["act"], params["pool"],
                     params["bias"])


def dataset_options(fmt: str | None, label_column: str, val_fraction: float) -> DatasetOptions:
    return DatasetOptions(format=fmt, label_column=label_column, val_fraction=val_fraction)
