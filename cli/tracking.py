"""`--mlflow [TRACKING_URI]`: the option the training and export commands share, the check
each has the library make before its work (`reach`), and the one call each makes after
registering (runs logged by `mfstore.tracking`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.context import workspace
from cli.errors import MFStoreGroup
from cli.render import stderr
from mfstore.errors import ConfigError, MFStoreError

if TYPE_CHECKING:
    from mfstore.export import Export
    from mfstore.registry import LayerVersion
    from mfstore.run_context import RunContext


MLflow = Annotated[str | None, typer.Option(
    "--mlflow", metavar="[TRACKING_URI]",
    help="Log one MLflow run per layer version (or the ONNX model, on export) to this "
         "tracking URI (default $MLFLOW_TRACKING_URI); experiment $MLFLOW_EXPERIMENT_NAME "
         "or mfstore. Needs mfstore\\[mlflow].")]
"""The given URI; '' for a bare `--mlflow` ($MLFLOW_TRACKING_URI); None without it."""


def reach(uri: str | None, run: RunContext | None = None) -> None:
    """What a command that logs does once its own arguments are checked (a bad one keeps its
    own error and exit code, and nothing is logged) and before it trains or exports: MLflow
    must be installed, told where to log, reachable, and hold the experiment; else one line,
    and nothing is trained or registered. In a run of several processes (`run`, the job's
    context) rank 0 checks and every rank fails with its error. Nothing without --mlflow."""
    if uri is None:
        return
    from mfstore.tracking import check_tracking  # start-up: torch, onnx only when needed

    def check() -> MFStoreError | None:
        try:
            check_tracking(uri or None)
        except MFStoreError as err:
            return err
        return None

    failed = check() if run is None else run.on_main(check)
    if failed is not None:
        raise failed


def _refs(refs: list[str]) -> str:
    return (f"{refs[0]} is" if len(refs) == 1
            else f"{', '.join(refs[:-1])} and {refs[-1]} are")


def _after(err: MFStoreError, done: str) -> MFStoreError:
    """`err` (its kind, so its exit code, and its fixes) saying first what was done before
    logging failed, so that nobody repeats it."""
    return type(err)(f"{done}, but logging to MLflow failed: {err.message}", *err.fixes)


def _shown(uri: str) -> str:
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.registry.engine import display_url
    from mfstore.tracking import tracking_uri  # start-up: torch, onnx only when this command runs

    return display_url(tracking_uri(uri or None))


def optional_value(args: list[str], flag: str = "--mlflow") -> list[str]:
    """`--mlflow` given without a value (last, or before another option) as `--mlflow=`, which
    means $MLFLOW_TRACKING_URI: Typer options always take their value."""
    return [f"{a}=" if a == flag and (k + 1 == len(args) or args[k + 1].startswith("-"))
            else a for k, a in enumerate(args)]


class MLflowGroup(MFStoreGroup):
    """The command group, reading `--mlflow` with or without a tracking URI."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, optional_value(args))


def refuse_unregistered(uri: str | None) -> None:
    """In-memory training registers no layer version, so there is nothing to log."""
    if uri is not None:
        raise ConfigError("--mlflow logs registered layer versions; give the network a name "
                          "(mfstore train NET …) to register them")


def track_layers(ctx: typer.Context, uri: str | None, layers: Sequence[LayerVersion]) -> None:
    """Log the layer versions a command registered (nothing without --mlflow; under torchrun,
    rank 0 alone, as it alone registers them)."""
    if uri is None or not layers:
        return
    if os.environ.get("RANK", "0") != "0":  # under torchrun, as cli/main.py reports
        return
    from mfstore.tracking import log_layers  # start-up: torch, onnx only when this command runs

    try:
        runs = log_layers(workspace(ctx), layers, uri or None)
    except MFStoreError as err:
        raise _after(err, f"{_refs([v.ref for v in layers])} registered (training again would "
                          "register another version)") from err
    stderr.print(f"logged {len(runs)} MLflow run{'s' if len(runs) != 1 else ''} to "
                 f"{_shown(uri)}: "
                 + ", ".join(f"{v.ref} ({r})" for v, r in zip(layers, runs, strict=True)),
                 highlight=False, soft_wrap=True)


def track_export(uri: str | None, export: Export) -> None:
    """Log an exported ONNX model (nothing without --mlflow)."""
    if uri is None:
        return
    from mfstore.tracking import log_export  # start-up: torch, onnx only when this command runs

    try:
        run = log_export(export, uri or None)
    except MFStoreError as err:
        written = " and ".join(export.targets) or "the store"
        raise _after(err, f"the ONNX model of {export.network.ref} is written to "
                          f"{written}") from err
    stderr.print(f"logged the ONNX model of {export.network.ref} to MLflow run {run} at "
                 f"{_shown(uri)}",
                 highlight=False, soft_wrap=True)
