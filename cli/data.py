"""`mfstore data add|list|show`."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import options
from cli.context import workspace
from cli.render import print_json, record_dict, records_table, stdout

app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name to register the dataset under.")],
    url: Annotated[str, typer.Argument(help="fsspec URL or sklearn:NAME.")],
    val_fraction: options.ValFraction = options.IMPORT.val_fraction,
    test_fraction: options.TestFraction = options.IMPORT.test_fraction,
    split_seed: options.SplitSeed = options.IMPORT.seed,
    label_column: options.LabelColumn = options.IMPORT.label_column,
    format: options.Format = options.IMPORT.format,
    vocab: options.DataVocab = options.IMPORT.vocab,
    max_examples: options.MaxExamples = options.ALL,
    as_json: options.Json = False,
) -> None:
    """Import a dataset once into stream(0) shards and register it.

    Example: mfstore data add fmnist /usr/share/datasets/fashion-mnist
    """
    from mfstore.importing import import_dataset  # start-up: torch only when this command runs

    record = import_dataset(workspace(ctx), name, url, options.data_options(ctx.params))
    if as_json:
        print_json(record_dict(record))
    else:
        stdout.print(f"dataset {record.name}: {record.counts['train']} train / "
                     f"{record.counts['val']} val / {record.counts['test']} test, shape "
                     f"{tuple(record.input_shape)}, {record.classes} classes, fingerprint "
                     f"{record.fingerprint[:12]}")


@app.command("list")
def list_(ctx: typer.Context, as_json: options.Json = False) -> None:
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
def show(ctx: typer.Context, name: str, as_json: options.Json = False) -> None:
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
