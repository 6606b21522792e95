"""`mfstore init`."""

from __future__ import annotations

import typer

from cli.context import workspace
from cli.render import stdout


def init(ctx: typer.Context) -> None:
    """Create the registry and the store (other commands create them too when missing).

    Example: mfstore --home ./work init
    """
    ws = workspace(ctx)
    stdout.print(f"registry  {ws.registry.url}\nstore     {ws.store.url}")
