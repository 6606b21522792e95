"""The `mfstore` entry point."""

from __future__ import annotations

import typer

from cli.demo import demo
from cli.errors import MFStoreGroup
from cli.train import train

app = typer.Typer(
    cls=MFStoreGroup,
    name="mfstore",
    help="Train networks layer by layer with Mono-Forward; keep every layer as a block.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(train)
app.command()(demo)


def main() -> None:
    app(prog_name="mfstore")
