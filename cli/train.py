"""`mfstore train`: train a network with Mono-Forward beside its baselines (BP, FA, DFA, FF)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import options
from cli.context import optional_workspace, workspace
from cli.flags import option_flag
from cli.render import (
    TrainingProgress,
    accuracy_table,
    baseline_row,
    network_accuracy_table,
    print_json,
    record_dict,
    stderr,
    stdout,
)
from cli.tracking import MLflow, reach, refuse_unregistered, track_layers
from mfstore.config import DEFAULT_BASELINE, DEFAULT_SCHEDULE, STORE_SCHEDULE, DatasetOptions
from mfstore.errors import ConfigError

if TYPE_CHECKING:
    from mfstore.registry import DatasetRecord

Data = Annotated[str, typer.Option(
    help="A registered dataset's name, else (without NET) a URL or sklearn:NAME read on the "
         "fly.")]


def train(
    ctx: typer.Context,
    data: Data,
    arch: Annotated[str, typer.Option(
        help="Layers, e.g. dense:1000,dense:1000 or conv:64,conv:128.")],
    net: Annotated[str | None, typer.Argument(
        help="Register the layers as NET.l1, NET.l2, … and the network NET. Without it, "
             "train in memory and register nothing.")] = None,
    schedule: Annotated[str | None, typer.Option(
        help="simultaneous (every layer learns from each batch) or sequential (layer after "
             "layer). Default: simultaneous in memory; sequential when registering NET, so "
             "that repair reproduces each block bit for bit.",
        show_default=False)] = None,
    mode: Annotated[str, typer.Option(help="Default prediction mode of NET: bp or ff.")] = "bp",
    baseline: Annotated[str | None, typer.Option(
        help="Baselines to train beside MF on the same layers, initial weights, data order "
             "and optimizer: any of bp (backprop), fa (feedback alignment), dfa (direct "
             "feedback alignment), ff (Forward-Forward), comma-separated, or none. Default: "
             "bp; none with --layer-parallel (a baseline trains every layer in one process).",
        show_default=False)] = None,
    layer_parallel: Annotated[bool, typer.Option(
        help="One process per layer (torchrun --nproc-per-node LAYERS), the simultaneous "
             "schedule pipelined: activations travel forward, nothing travels back.")] = False,
    as_json: options.Json = False,
    mlflow: MLflow = None,
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
    val_fraction: options.ValFraction = options.IMPORT.val_fraction,
    test_fraction: options.TestFraction = options.IMPORT.test_fraction,
    label_column: options.LabelColumn = options.IMPORT.label_column,
    format: options.Format = options.IMPORT.format,
    vocab: options.DataVocab = options.IMPORT.vocab,
    max_examples: options.MaxExamples = options.ALL,
) -> None:
    """Train with Mono-Forward and report every layer, FF, BP and the baselines.

    Example: mfstore train digits-mlp --data digits --arch dense:256,dense:256
    Example: mfstore train --data sklearn:digits --arch dense:256,dense:256 --baseline bp,fa,dfa,ff
    """
    config = options.train_config(ctx.params)
    schedule = schedule or (DEFAULT_SCHEDULE if net is None else STORE_SCHEDULE)
    say_mf_alone = baseline is None and layer_parallel
    baseline = baseline or ("none" if layer_parallel else DEFAULT_BASELINE)
    if net is None:
        refuse_unregistered(mlflow)
        if layer_parallel:
            raise ConfigError("layer-parallel training goes through the store: name the "
                              "network to register (mfstore train NET --data DATASET …)")
        _train_in_memory(ctx, data, arch, schedule, baseline, config, as_json)
        return
    from mfstore.importing import registered_dataset  # start-up: torch only when this command runs
    from mfstore.network import evaluate_network  # start-up: torch only when this command runs
    from mfstore.store_training import plan_network  # start-up: torch only when this command runs

    ws = workspace(ctx)
    _refuse_import_options(ctx, registered_dataset(ws, data))
    job = plan_network(ws, net, data, arch, config, schedule, mode, baseline, layer_parallel)
    reach(mlflow, job.ctx)
    if say_mf_alone:  # one line, after any error the arguments would give
        stderr.print("layer-parallel: training MF alone (a baseline trains every layer in one "
                     "process; train one with --baseline in a run without --layer-parallel)",
                     highlight=False)
    with TrainingProgress(enabled=not as_json) as progress:
        result = job.run(progress)
    track_layers(ctx, mlflow, result.layers)
    _, accuracy = evaluate_network(ws, result.network.ref, device=config.device)
    baselines = [{"algorithm": b.algorithm, "test": b.test_accuracy} for b in result.baselines]
    if as_json:
        print_json({"network": record_dict(result.network), "test": accuracy.to_dict(),
                    "baseline": baselines[0] if baselines else None, "baselines": baselines,
                    "layers": [record_dict(v) for v in result.layers]})
        return

    table = network_accuracy_table(f"{result.network.ref} on {data}",
                                   [v.ref for v in result.layers], accuracy)
    for b in baselines:
        table.add_row(baseline_row(str(b["algorithm"])), f"{b['test']:.2%}")
    stdout.print(table)


def _refuse_import_options(ctx: typer.Context, record: DatasetRecord) -> None:
    """Import options say how a source is read; a registered dataset keeps the ones it was
    imported with, so giving others is refused rather than ignored."""
    imported = DatasetOptions(**record.options)
    other = [option_flag(f) for f, value in options.import_options_given(ctx).items()
             if value != getattr(imported, f.name)]
    if other:
        raise ConfigError(f"{', '.join(other)} differ{'s' if len(other) == 1 else ''} from "
                          f"what dataset {record.name!r} was imported with; import the source "
                          "again under another name to read it so (mfstore data add)")


def _train_in_memory(ctx: typer.Context, data: str, arch: str, schedule: str, baseline: str,
                     config: Any, as_json: bool) -> None:
    from mfstore.experiment import run_experiment  # start-up: torch only when this command runs

    # start-up: torch only when this command runs
    from mfstore.importing import dataset_for_training

    ws = optional_workspace(ctx)
    for record in ws.registry.datasets() if ws is not None else []:
        if record.name == data:
            _refuse_import_options(ctx, record)
    dataset = dataset_for_training(data, options.data_options(ctx.params), ws)
    with TrainingProgress(enabled=not as_json) as progress:
        result = run_experiment(dataset, arch, config, schedule, baseline, callback=progress)
    if as_json:
        print_json({"data": data, "fingerprint": dataset.fingerprint, **result.to_dict()})
    else:
        stdout.print(accuracy_table(result, f"{data} · {arch} · {schedule}"))
