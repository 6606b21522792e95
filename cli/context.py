"""The global options (--home, --registry, --store) and the workspace they open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from mfstore.errors import RegistryError

if TYPE_CHECKING:
    from mfstore.workspace import Workspace


@dataclass
class GlobalOptions:
    home: str | None
    registry: str | None
    store: str | None


def _version(value: bool) -> None:
    if value:
        from mfstore import __version__  # start-up: the version only for --version

        typer.echo(f"mfstore {__version__}")
        raise typer.Exit()


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
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train networks layer by layer with Mono-Forward; keep every layer as a block."""
    ctx.obj = GlobalOptions(home, registry, store)


def locations(ctx: typer.Context) -> GlobalOptions:
    """Where the global options (or their environment variables) say the workspace is."""
    return ctx.find_root().obj or GlobalOptions(None, None, None)


def workspace(ctx: typer.Context) -> Workspace:
    """The existing workspace the global options name (nothing is created)."""
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.workspace import Workspace

    where = locations(ctx)
    return Workspace.open(where.home, where.registry, where.store)


def optional_workspace(ctx: typer.Context) -> Workspace | None:
    """The workspace, or None where there is no registry (training from a URL needs none).
    Its store is not checked here: training from a URL never reads it, and reading a
    registered dataset's stream checks it then."""
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.workspace import Workspace

    where = locations(ctx)
    try:
        return Workspace.open(where.home, where.registry, where.store, check_store=False)
    except RegistryError:
        return None


def new_workspace(ctx: typer.Context) -> Workspace:
    """The workspace the global options name, created where missing (init)."""
    # start-up: SQLAlchemy only when a command opens the registry
    from mfstore.workspace import Workspace

    where = locations(ctx)
    return Workspace.init(where.home, where.registry, where.store)
