"""Rich rendering: progress bars fed by the library's callbacks, and result tables."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from mfstore.experiment import ExperimentResult
    from mfstore.history import EpochReport

stdout = Console(soft_wrap=True)  # lines stay whole when piped; tables still fit
stderr = Console(stderr=True, soft_wrap=True)


def quiet() -> None:
    """Print nothing but errors (the other processes of a torchrun job)."""
    stdout.quiet = stderr.quiet = True


class TrainingProgress:
    """A bar per MF layer and one per baseline; use as the training callback. The bars
    appear with the first epoch, so an error found before training is its one line alone."""

    def __init__(self, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=stderr, disable=not enabled, transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.shown = False

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.shown:
            self.progress.__exit__(*exc)

    def __call__(self, report: EpochReport) -> None:
        if not self.shown:
            self.progress.start()
            self.shown = True
        key = report.algorithm.upper() if report.layer is None else f"MF layer {report.layer + 1}"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(key, total=report.epochs, status="")
        status = f"loss {report.train_loss:.4f}"
        if report.val_accuracy is not None:
            status += f"  val acc {report.val_accuracy:.2%}"
        if report.stopped:
            status += "  (early stop)"
        total = report.epoch if report.stopped else report.epochs
        self.progress.update(self.tasks[key], completed=report.epoch, total=total, status=status)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def accuracy_table(result: ExperimentResult, title: str) -> Table:
    table = Table(title=title)
    table.add_column("prediction")
    table.add_column("test accuracy", justify="right")
    table.add_column("val accuracy", justify="right")
    table.add_column("best epoch", justify="right")
    for k, (test, val) in enumerate(zip(result.test.per_layer, result.val.per_layer, strict=True)):
        table.add_row(f"MF layer {k + 1}", _pct(test), _pct(val),
                      str(result.histories[k].best_epoch))
    table.add_row("MF FF mode (Σ G)", _pct(result.test.ff), _pct(result.val.ff), "")
    table.add_row("MF BP mode (last G)", _pct(result.test.bp), _pct(result.val.bp), "")
    for baseline in result.baselines:
        table.add_row(baseline_row(baseline.algorithm), _pct(baseline.test_accuracy),
                      _pct(baseline.val_accuracy), str(baseline.history.best_epoch))
    return table


def baseline_row(algorithm: str) -> str:
    """`BP baseline`, `FA baseline`, …"""
    return f"{algorithm.upper()} baseline"


def print_json(data: Any) -> None:
    stdout.out(json.dumps(data, indent=2), highlight=False)


def records_table(title: str, headers: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


def network_accuracy_table(title: str, refs: list[str], accuracy: Any) -> Table:
    table = Table(title=title)
    table.add_column("prediction")
    table.add_column("test accuracy", justify="right")
    for ref, acc in zip(refs, accuracy.per_layer, strict=True):
        table.add_row(f"layer {ref}", _pct(acc))
    table.add_row("FF mode (Σ G)", _pct(accuracy.ff))
    table.add_row("BP mode (last G)", _pct(accuracy.bp))
    return table


def record_dict(record: Any) -> dict[str, Any]:
    """A registry record as JSON-ready data."""

    data = asdict(record)
    data["created"] = None if record.created is None else record.created.isoformat()
    if hasattr(record, "ref"):
        data["ref"] = record.ref
    return data


def layer_rows(layers: list[Any]) -> list[list[Any]]:
    return [[lv.ref, lv.spec.kind, lv.spec.width, str(lv.spec.out_shape),
             _pct(lv.metrics.get("test_accuracy")), lv.status, lv.dataset,
             lv.block_sha256[:12]] for lv in layers]


LAYER_HEADERS = ["layer", "kind", "width", "output", "test acc", "status", "dataset", "block"]
