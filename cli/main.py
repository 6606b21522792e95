"""The `mfstore` entry point."""

from __future__ import annotations

import os

import typer

from cli import compose, data, export, layers, nets, repair
from cli.context import root
from cli.demo import demo
from cli.init import init
from cli.render import quiet
from cli.report import report
from cli.serve import serve
from cli.tracking import MLflowGroup
from cli.train import train
from cli.ui import ui

app = typer.Typer(
    cls=MLflowGroup,
    name="mfstore",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.callback()(root)
app.command()(init)
app.add_typer(data.app, name="data")
app.command()(train)
app.command("train-layer")(layers.train_layer)
app.add_typer(layers.app, name="layers")
app.add_typer(nets.app, name="nets")
app.command("eval")(nets.evaluate)
app.command()(compose.compose)
app.command()(compose.extend)
app.command()(compose.swap)
app.command()(repair.verify)
app.command()(repair.repair)
app.command()(repair.gc)
app.command()(export.export)
app.command()(serve)
app.command()(ui)
app.command()(report)
app.command()(demo)


def main() -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone reports
        quiet()
    try:
        app(prog_name="mfstore")
    finally:
        if "RANK" in os.environ:
            from mfstore.distributed import leave  # start-up: torch only when this command runs

            leave()
