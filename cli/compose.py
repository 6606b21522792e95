"""`mfstore compose`, `extend` and `swap`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli import options
from cli.context import workspace
from cli.render import TrainingProgress, print_json, record_dict, stdout
from cli.tracking import MLflow, reach, track_layers

Force = Annotated[bool, typer.Option(help="Accept a lineage mismatch (recorded).")]


def _describe(network: Any) -> str:
    return f"{network.ref}: " + " → ".join(f"{n}@{v}" for n, v in network.layers)


def compose(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Network name; registers its next version.")],
    layers: Annotated[list[str], typer.Argument(help="LAYER@VERSION or LAYER@ALIAS, input "
                                                     "side first.")],
    mode: Annotated[str, typer.Option(help="Default prediction mode: bp or ff.")] = "bp",
    force: Force = False,
    as_json: options.Json = False,
) -> None:
    """Register a network from layer versions; shapes and lineage must fit.

    Example: mfstore compose digits-mlp l1@1 l2@prod --mode ff
    """
    # start-up: torch only when this command runs
    from mfstore.compose import compose as compose_network

    network = compose_network(workspace(ctx), name, layers, mode, force)
    if as_json:
        print_json(record_dict(network))
    else:
        stdout.print(f"registered {_describe(network)}" + (" (forced)" if network.forced else ""))


def extend(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
    kind: options.Kind,
    width: options.Width,
    act: options.Act = options.PLAN["activation"],
    pool: options.Pool = options.PLAN["pool"],
    bias: options.Bias = options.PLAN["bias"],
    kernel: options.Kernel = options.PLAN["kernel"],
    stride: options.Stride = options.PLAN["stride"],
    vocab: options.Vocab = options.PLAN["vocab"],
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
    """Train one new layer on the network's outputs and register the longer network; the
    earlier layers stay the very same blocks.

    Example: mfstore extend digits-mlp@1 --kind dense --width 128
    """
    # start-up: torch only when this command runs
    from mfstore.compose import plan_extension

    job = plan_extension(workspace(ctx), ref, options.layer_plan(ctx.params),
                         options.train_config(ctx.params))
    reach(mlflow, job.layer.ctx)
    with TrainingProgress(enabled=not as_json) as progress:
        result = job.run(progress)
    track_layers(ctx, mlflow, [result.layer])
    if as_json:
        print_json({"network": record_dict(result.network), "layer": record_dict(result.layer)})
        return
    stdout.print(f"trained {result.layer.ref}: test accuracy "
                 f"{result.layer.metrics['test_accuracy']:.2%}")
    stdout.print(f"registered {_describe(result.network)}")


def swap(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
    layer: Annotated[int, typer.Option("--layer", help="Position to replace, 1 = input side.")],
    with_: Annotated[str, typer.Option("--with", help="LAYER@VERSION to put there.")],
    retrain_downstream: Annotated[bool, typer.Option(
        help="Retrain the later layers whose lineage no longer fits.")] = False,
    force: Force = False,
    as_json: options.Json = False,
) -> None:
    """Replace one layer of a network by another version of compatible shape.

    Example: mfstore swap digits-mlp@2 --layer 1 --with l1@3 --retrain-downstream
    """
    from mfstore.compose import swap as swap_layer  # start-up: torch only when this command runs

    with TrainingProgress(enabled=not as_json) as progress:
        result = swap_layer(workspace(ctx), ref, layer, with_, retrain_downstream, force,
                            progress)
    if as_json:
        print_json({"network": record_dict(result.network), "stale": result.stale,
                    "retrained": [record_dict(v) for v in result.retrained]})
        return
    if result.stale:
        stdout.print("downstream layers trained on another chain: " + ", ".join(result.stale))
    for v in result.retrained:
        stdout.print(f"retrained {v.ref}: test accuracy {v.metrics['test_accuracy']:.2%}")
    stdout.print(f"registered {_describe(result.network)}"
                 + (" (forced)" if result.network.forced else ""))
