"""The global options (--home, --registry, --store) and the workspace they open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from mfstore.workspace import Workspace


@dataclass
class Locations:
    home: str | None
    registry: str | None
    store: str | None


def root(
    ctx: typer.Context,
    home: Annotated[str | None, typer.Option(
        envvar="MFSTORE_HOME", help="Workspace folder (default ./.mfstore).")] = None,
    registry: Annotated[str | None, typer.Option(
        envvar="MFSTORE_REGISTRY", help="SQLAlchemy URL (default SQLite in home).")] = None,
    store: Annotated[str | None, typer.Option(
        envvar="MFSTORE_STORE", help="fsspec URL of the store (default <home>/store).")] = None,
) -> None:
    """Train networks layer by layer with Mono-Forward; keep every layer as a block."""
    ctx.obj = Locations(home, registry, store)


def workspace(ctx: typer.Context) -> Workspace:
    where: Locations = ctx.obj or Locations(None, None, None)
    return Workspace.open(where.home, where.registry, where.store)
