"""`mfstore train-layer` and `mfstore layers list|show|alias`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options
from cli.context import workspace
from cli.render import (
    LAYER_HEADERS,
    TrainingProgress,
    layer_rows,
    print_json,
    record_dict,
    records_table,
    stdout,
)
from cli.tracking import MLflow, reach, track_layers

app = typer.Typer(help="Inspect, alias and delete layer versions.", no_args_is_help=True)


def train_layer(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Layer name; registers its next version.")],
    data: Annotated[str, typer.Option(help="A registered dataset's name.")],
    kind: options.Kind,
    width: options.Width,
    act: options.Act = options.PLAN["activation"],
    pool: options.Pool = options.PLAN["pool"],
    bias: options.Bias = options.PLAN["bias"],
    kernel: options.Kernel = options.PLAN["kernel"],
    stride: options.Stride = options.PLAN["stride"],
    vocab: options.Vocab = options.PLAN["vocab"],
    on: Annotated[list[str] | None, typer.Option(
        help="Upstream layer LAYER@VERSION, input side first; repeat for a chain.")] = None,
    force: Annotated[bool, typer.Option(
        help="Train on a chain whose lineage does not fit.")] = False,
    epochs: options.Epochs = options.TRAIN.epochs,
    batch_size: options.BatchSize = options.TRAIN.batch_size,
    lr: options.Lr = options.TRAIN.lr,
    weight_decay: options.WeightDecay = options.TRAIN.weight_decay,
    optimizer: options.Optimizer = options.TRAIN.optimizer,
    lr_schedule: options.LrSchedule = options.TRAIN.lr_schedule,
    patience: options.Patience = options.NEVER,
    monitor: options.Monitor = options.TRAIN.monitor,
    seed: options.Seed = options.TRAIN.seed,
    deterministic: options.Deterministic = options.TRAIN.deterministic,
    device: options.Device = options.TRAIN.device,
    cuda_graphs: options.CudaGraphs = options.TRAIN.cuda_graphs,
    overlap: options.Overlap = options.TRAIN.overlap,
    as_json: options.Json = False,
    mlflow: MLflow = None,
) -> None:
    """Train one layer on the stream its upstream layers produce and register a version.

    Example: mfstore train-layer l2 --data digits --on l1@1 --kind dense --width 256
    """
    # start-up: torch only when this command runs
    from mfstore.store_training import plan_layer

    ws = workspace(ctx)
    job = plan_layer(ws, name, data, on or [], options.layer_plan(ctx.params),
                     options.train_config(ctx.params), force)
    reach(mlflow, job.ctx)
    with TrainingProgress(enabled=not as_json) as progress:
        version = job.run(progress)
    track_layers(ctx, mlflow, [version])
    if as_json:
        print_json({**record_dict(version), "history": ws.read_block(version).history})
        return
    m = version.metrics
    stdout.print(f"registered {version.ref}: test accuracy {m['test_accuracy']:.2%} "
                 f"(validation {m['val_accuracy']:.2%}), block {version.block_sha256[:12]}")


@app.command("list")
def list_(ctx: typer.Context,
          name: Annotated[str | None, typer.Argument(help="Only this layer's versions.")] = None,
          as_json: options.Json = False) -> None:
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
         as_json: options.Json = False) -> None:
    """Show one layer version: spec, lineage, metrics, config.

    Example: mfstore layers show l1@1
    """
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.registry.records import parse_ref

    ws = workspace(ctx)
    version = ws.registry.layer(*parse_ref(ref))
    data = record_dict(version)
    data["aliases"] = {a: v for a, v in ws.registry.aliases("layer", version.name).items()
                       if v == version.version}
    from mfstore.usage import used_by  # start-up: SQLAlchemy only when a command opens the registry

    data["used_by"] = used_by(ws.registry, version).to_dict()
    if as_json:  # the history is in the block: only --json reads the store
        print_json({**data, "history": ws.read_block(version).history})
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
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.registry.records import parse_ref

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
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.deletion import delete_layer

    layer = delete_layer(workspace(ctx), ref)
    stdout.print(f"deleted layer {layer.ref}")
