"""`mfstore train-layer` and `mfstore layers list|show|alias`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options as o
from cli.context import workspace
from cli.history import history_of
from cli.render import (
    LAYER_HEADERS,
    TrainingProgress,
    layer_rows,
    print_json,
    record_dict,
    records_table,
    stdout,
)
from cli.tracking import MLflow, track_layers
from mfstore.deletion import delete_layer
from mfstore.layer_training import train_layer_version
from mfstore.registry import parse_ref
from mfstore.usage import used_by

app = typer.Typer(help="Inspect, alias and delete layer versions.", no_args_is_help=True)


def train_layer(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Layer name; registers its next version.")],
    data: Annotated[str, typer.Option(help="Registered dataset name.")],
    kind: Annotated[str, typer.Option(help="dense or conv.")],
    width: Annotated[int, typer.Option(help="Units (dense) or channels (conv).")],
    on: Annotated[list[str] | None, typer.Option(
        help="Upstream layer LAYER@VERSION, input side first; repeat for a chain.")] = None,
    act: Annotated[str, typer.Option(help="relu, gelu, tanh, sigmoid or identity.")] = "relu",
    pool: Annotated[str, typer.Option(help="conv pooling: avg, max or none.")] = "avg",
    bias: Annotated[bool, typer.Option(help="Learn a bias.")] = True,
    force: Annotated[bool, typer.Option(
        help="Train on a chain whose lineage does not fit.")] = False,
    epochs: o.Epochs = 20,
    batch_size: o.BatchSize = 128,
    lr: o.LearningRate = 1e-3,
    weight_decay: o.WeightDecay = 0.0,
    optimizer: o.Optimizer = "adam",
    lr_schedule: o.LrSchedule = "constant",
    patience: o.Patience = 5,
    seed: o.Seed = 0,
    deterministic: o.Deterministic = False,
    device: o.Device = "auto",
    as_json: o.Json = False,
    mlflow: MLflow = None,
) -> None:
    """Train one layer on the stream its upstream layers produce and register a version.

    Example: mfstore train-layer l2 --data digits --on l1@1 --kind dense --width 256
    """
    config = o.train_config(ctx.params)
    ws = workspace(ctx)
    with TrainingProgress(enabled=not as_json) as progress:
        version = train_layer_version(ws, name, data, on or [],
                                      o.layer_plan(ctx.params), config,
                                      callback=progress, force=force)
    track_layers(ctx, mlflow, [version])
    if as_json:
        print_json({**record_dict(version), "history": history_of(ws, version)})
        return
    m = version.metrics
    stdout.print(f"registered {version.ref}: test accuracy {m['test_accuracy']:.2%} "
                 f"(validation {m['val_accuracy']:.2%}), block {version.block_sha256[:12]}")


@app.command("list")
def list_(ctx: typer.Context,
          name: Annotated[str | None, typer.Argument(help="Only this layer's versions.")] = None,
          as_json: o.Json = False) -> None:
    """List layer versions.

    Example: mfstore layers list
    """
    layers = workspace(ctx).registry.layers(name)
    if as_json:
        print_json([record_dict(v) for v in layers])
    else:
        stdout.print(records_table("layer versions", LAYER_HEADERS, layer_rows(layers)))


@app.command("show")
def show(ctx: typer.Context,
         ref: Annotated[str, typer.Argument(help="LAYER, LAYER@VERSION or LAYER@ALIAS.")],
         as_json: o.Json = False) -> None:
    """Show one layer version: spec, lineage, metrics, config.

    Example: mfstore layers show l1@1
    """
    ws = workspace(ctx)
    version = ws.registry.layer(*parse_ref(ref))
    data = record_dict(version)
    data["aliases"] = {a: v for a, v in ws.registry.aliases("layer", version.name).items()
                       if v == version.version}
    data["used_by"] = used_by(ws.registry, version).to_dict()
    data["history"] = history_of(ws, version)
    if as_json:
        print_json(data)
        return
    for key in ("ref", "status", "dataset", "block_sha256", "digest", "spec", "signature",
                "metrics", "config", "repairs", "note", "aliases", "used_by", "created"):
        stdout.print(f"{key:13} {data[key]}", highlight=False)


@app.command("alias")
def alias(ctx: typer.Context,
          ref: Annotated[str, typer.Argument(help="LAYER@VERSION")],
          name: Annotated[str, typer.Argument(help="Alias, e.g. prod.")]) -> None:
    """Point an alias at a layer version; LAYER@ALIAS then works wherever LAYER@N does.

    Example: mfstore layers alias l1@2 prod
    """
    ws = workspace(ctx)
    version = ws.registry.layer(*parse_ref(ref))
    ws.registry.set_alias("layer", version.name, name, version.version)
    stdout.print(f"{version.name}@{name} → {version.ref}")


@app.command("delete")
def delete(ctx: typer.Context,
           ref: Annotated[str, typer.Argument(help="LAYER@VERSION")]) -> None:
    """Delete a layer version that nothing live needs (no live network holds it and no live
    layer was trained on its outputs); `mfstore gc` then frees its block.

    Example: mfstore layers delete l1@3
    """
    layer = delete_layer(workspace(ctx), ref)
    stdout.print(f"deleted layer {layer.ref}")
