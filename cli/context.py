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
        envvar="MFSTORE_REGISTRY",
        help="SQLAlchemy URL (default SQLite in home), e.g. postgresql://user@host/db.")] = None,
    store: Annotated[str | None, typer.Option(
        envvar="MFSTORE_STORE",
        help="fsspec URL of the store (default <home>/store), e.g. s3://bucket/prefix.")] = None,
) -> None:
    """Train networks layer by layer with Mono-Forward; keep every layer as a block."""
    ctx.obj = Locations(home, registry, store)


def _where(ctx: typer.Context) -> Locations:
    return ctx.find_root().obj or Locations(None, None, None)


def workspace(ctx: typer.Context) -> Workspace:
    """The existing workspace the global options name (nothing is created)."""
    where = _where(ctx)
    return Workspace.open(where.home, where.registry, where.store)


def new_workspace(ctx: typer.Context) -> Workspace:
    """The workspace the global options name, created where missing (init)."""
    where = _where(ctx)
    return Workspace.init(where.home, where.registry, where.store)
