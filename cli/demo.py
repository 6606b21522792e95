"""`mfstore demo`: the whole path on scikit-learn's digits."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.render import TrainingProgress, accuracy_table, stdout
from mfstore.config import TrainConfig
from mfstore.dataset import load_dataset
from mfstore.experiment import run_experiment

DEMO_DATA = "sklearn:digits"
DEMO_ARCH = "dense:256,dense:256"


def demo(
    epochs: Annotated[int, typer.Option(help="Most epochs per layer.")] = 30,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Import digits, train a 2x256 MLP layer by layer with Mono-Forward and with backprop,
    and show the accuracy of every layer, FF and BP mode, and the baseline.

    Example: mfstore demo
    """
    stdout.print(f"[bold]1. import[/] {DEMO_DATA}")
    dataset = load_dataset(DEMO_DATA)
    stdout.print(f"   {len(dataset.train)} train / {len(dataset.val)} validation / "
                 f"{len(dataset.test)} test examples of shape {dataset.input_shape}, "
                 f"{dataset.classes} classes, fingerprint {dataset.fingerprint[:12]}")
    stdout.print(f"[bold]2. train[/] {DEMO_ARCH}, sequential Mono-Forward and backprop")
    config = TrainConfig(epochs=epochs, batch_size=64, device=device)
    with TrainingProgress() as progress:
        result = run_experiment(dataset, DEMO_ARCH, config, "sequential", "bp", callback=progress)
    stdout.print("[bold]3. evaluate[/] every layer on its own, FF and BP mode, and the baseline")
    stdout.print(accuracy_table(result, f"{DEMO_DATA} · {DEMO_ARCH}"))
