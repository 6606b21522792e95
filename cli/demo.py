"""`mfstore demo`: the whole path on scikit-learn's digits, through the store."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import new_workspace
from cli.render import TrainingProgress, network_accuracy_table, stdout
from mfstore.config import DEFAULT_BASELINE, TrainConfig

DEMO_DATA = "sklearn:digits"
DEMO_ARCH = "dense:256,dense:256"


def demo(
    ctx: typer.Context,
    epochs: Annotated[int, typer.Option(help="Most epochs per layer.")] = 30,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Import digits, train a 2x256 MLP layer by layer through the store (and BP beside it),
    evaluate every layer, FF and BP mode, export to ONNX and predict with ONNX Runtime.

    Example: mfstore --home /tmp/mf demo
    """
    # start-up: torch, onnx only when this command runs
    from mfstore.export import export_network, onnx_accuracy
    from mfstore.importing import import_dataset  # start-up: torch only when this command runs
    from mfstore.network import evaluate_network  # start-up: torch only when this command runs
    from mfstore.store_training import train_network  # start-up: torch only when this command runs

    ws = new_workspace(ctx)
    stdout.print(f"[bold]1. import[/] {DEMO_DATA} into {ws.store.shown}")
    record = import_dataset(ws, "digits", DEMO_DATA)
    stdout.print(f"   {record.counts['train']} train / {record.counts['val']} validation / "
                 f"{record.counts['test']} test examples of shape {tuple(record.input_shape)}, "
                 f"fingerprint {record.fingerprint[:12]}")
    stdout.print(f"[bold]2. train[/] {DEMO_ARCH} one layer at a time (activations streamed "
                 "through the store), and the backprop baseline")
    config = TrainConfig(epochs=epochs, batch_size=64, device=device)
    with TrainingProgress() as progress:
        result = train_network(ws, "digits-mlp", "digits", DEMO_ARCH, config, "sequential",
                               "bp", progress, baseline=DEFAULT_BASELINE)
    for v in result.layers:
        stdout.print(f"   registered {v.ref}, block {v.block_sha256[:12]}")
    stdout.print(f"   registered network {result.network.ref}")
    stdout.print("[bold]3. evaluate[/] every layer on its own, FF and BP mode")
    _, accuracy = evaluate_network(ws, result.network.ref, device=device)
    table = network_accuracy_table(f"{result.network.ref} on digits",
                                   [v.ref for v in result.layers], accuracy)
    if result.baseline is not None:
        table.add_row("BP baseline", f"{result.baseline.test_accuracy:.2%}")
    stdout.print(table)
    onnx_file = f"{ws.home}/exports/digits-mlp.onnx"
    stdout.print(f"[bold]4. export[/] {result.network.ref} to ONNX (bp mode) and a Triton "
                 "repository")
    export = export_network(ws, result.network.ref, "bp", out=onnx_file,
                            triton_repo=f"{ws.home}/triton")
    for target in export.targets:
        stdout.print(f"   wrote {target}", highlight=False)
    stdout.print(f"   checked against PyTorch: max relative error {export.max_relative_error:.1e}")
    onnx_acc, count = onnx_accuracy(ws, export)
    stdout.print(f"[bold]5. predict[/] through ONNX Runtime on the {count} raw test examples: "
                 f"accuracy {onnx_acc:.2%} (PyTorch, BP mode: {accuracy.bp:.2%})")
    stdout.print(f"   serve it with: mfstore --home {ws.home} serve --model-repo "
                 f"{ws.home}/triton", highlight=False)
