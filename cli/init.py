"""`mfstore init`."""

from __future__ import annotations

import typer

from cli.context import new_workspace
from cli.render import stdout


def init(ctx: typer.Context) -> None:
    """Create the registry and the store where they are missing, or bring an existing
    registry's schema up to date. Safe to run again, and from several machines at once.

    Example: mfstore --registry postgresql://mf@db/mfstore --store s3://bucket/mf init
    """
    ws = new_workspace(ctx)
    stdout.print(f"registry  {ws.registry.shown}\nstore     {ws.store.shown}", highlight=False)
