"""`mfstore export`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options
from cli.context import workspace
from cli.render import print_json, stdout
from cli.tracking import MLflow, reach, track_export
from mfstore.config import DEFAULT_MAX_BATCH_SIZE


def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
    mode: Annotated[str | None, typer.Option(
        help="bp (last layer) or ff (sum of goodness); default: the network's.")] = None,
    upto: Annotated[int | None, typer.Option(help="Export the first K layers only.")] = None,
    out: Annotated[str | None, typer.Option(help="ONNX file to write (path or fsspec URL).")
    ] = None,
    triton_repo: Annotated[str | None, typer.Option(
        help="Also write <DIR>/<name>/config.pbtxt, labels.txt and "
             "<DIR>/<name>/<version>/model.onnx (never replacing other content).")] = None,
    model_name: Annotated[str | None, typer.Option(
        help="Model name in the Triton repository (default: the network's name).")] = None,
    max_batch_size: Annotated[int, typer.Option(
        help="The Triton configuration's max_batch_size.")] = DEFAULT_MAX_BATCH_SIZE,
    as_json: options.Json = False,
    mlflow: MLflow = None,
) -> None:
    """Export a network to ONNX: float32 input `x` (raw, normalised in the graph), outputs
    `goodness` (B, classes) and `label` (B, 1), dynamic batch, opset 17, checked against
    PyTorch first; nothing is written unless every check passes.

    Example: mfstore export digits-mlp@1 --mode ff --out digits.onnx --triton-repo ./triton
    """
    # start-up: torch, onnx only when this command runs
    from mfstore.export import plan_network_export

    job = plan_network_export(workspace(ctx), ref, mode, upto, out, triton_repo, model_name,
                              max_batch_size)
    reach(mlflow)
    result = job.run()
    track_export(mlflow, result)
    if as_json:
        print_json({"network": result.network.ref, "mode": result.mode, "upto": result.upto,
                    "sha256": result.sha256, "max_relative_error": result.max_relative_error,
                    "targets": result.targets})
        return
    stdout.print(f"exported {result.network.ref} ({result.mode} mode"
                 + (f", first {result.upto} layers" if result.upto else "")
                 + f"), sha256 {result.sha256[:12]}, max relative error against PyTorch "
                 f"{result.max_relative_error:.1e}")
    for target in result.targets:
        stdout.print(f"  wrote {target}", highlight=False)
