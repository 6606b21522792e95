"""`mfstore data add|list|show`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options as o
from cli.context import workspace
from cli.render import print_json, record_dict, records_table, stdout
from mfstore.dataset import DatasetOptions
from mfstore.importing import import_dataset

app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name to register the dataset under.")],
    url: Annotated[str, typer.Argument(help="fsspec URL or sklearn:NAME.")],
    fmt: o.Format = None,
    label_column: o.LabelColumn = "label",
    val_fraction: o.ValFraction = 0.1,
    test_fraction: Annotated[float, typer.Option(
        help="Share held out for test when the source has no test split.")] = 0.2,
    split_seed: Annotated[int, typer.Option(help="Seed of the splits.")] = 0,
    as_json: o.Json = False,
) -> None:
    """Import a dataset once into stream(0) shards and register it.

    Example: mfstore data add fmnist /usr/share/datasets/fashion-mnist
    """
    options = DatasetOptions(val_fraction=val_fraction, test_fraction=test_fraction,
                             seed=split_seed, label_column=label_column, format=fmt)
    record = import_dataset(workspace(ctx), name, url, options)
    if as_json:
        print_json(record_dict(record))
    else:
        stdout.print(f"dataset {record.name}: {record.counts['train']} train / "
                     f"{record.counts['val']} val / {record.counts['test']} test, shape "
                     f"{tuple(record.input_shape)}, {record.classes} classes, fingerprint "
                     f"{record.fingerprint[:12]}")


@app.command("list")
def list_(ctx: typer.Context, as_json: o.Json = False) -> None:
    """List datasets.

    Example: mfstore data list --json
    """
    records = workspace(ctx).registry.datasets()
    if as_json:
        print_json([record_dict(r) for r in records])
        return
    stdout.print(records_table("datasets", ["name", "source", "shape", "classes", "train",
                                            "val", "test", "fingerprint"],
                               [[r.name, r.source, str(tuple(r.input_shape)), r.classes,
                                 r.counts["train"], r.counts["val"], r.counts["test"],
                                 r.fingerprint[:12]] for r in records]))


@app.command("show")
def show(ctx: typer.Context, name: str, as_json: o.Json = False) -> None:
    """Show one dataset.

    Example: mfstore data show digits
    """
    record = workspace(ctx).registry.dataset(name)
    summary = record_dict(record)
    if as_json:
        print_json(summary)
        return
    summary.pop("normalizer")
    for key, value in summary.items():
        stdout.print(f"{key:12} {value}")
