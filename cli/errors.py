"""One table from library exceptions to exit codes, and the group that turns an error into its
one line (`cli.fixes.render_error`) and its exit code."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from cli.fixes import render_error
from mfstore import errors

# Most specific first; 2 is click's own usage error.
EXIT_CODES: list[tuple[type[errors.MFStoreError], int]] = [
    (errors.ConfigError, 2),
    (errors.SpecError, 2),
    (errors.DataSourceError, 3),
    (errors.DataFormatError, 4),
    (errors.DataValidationError, 4),
    (errors.DeviceError, 5),
    (errors.NotFoundError, 6),
    (errors.LineageError, 7),
    (errors.IntegrityError, 8),
    (errors.StoreError, 9),
    (errors.RegistryError, 9),
    (errors.ConflictError, 10),
    (errors.ExportError, 11),
    (errors.MFStoreError, 1),
]
ARGUMENTS = "mfstore.arguments"  # the command line's arguments, in the context's meta
DAMAGE_EXIT_CODE = 8  # verify found damage: the same code as a damaged file


def exit_code(err: errors.MFStoreError) -> int:
    return next(code for cls, code in EXIT_CODES if isinstance(err, cls))


class MFStoreGroup(TyperGroup):
    """Turns every `MFStoreError` into one line on stderr and its exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta.setdefault(ARGUMENTS, list(args))  # for a fix that runs the command again
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except errors.MFStoreError as err:
            typer.echo(render_error(err, ctx.meta.get(ARGUMENTS)), err=True)
            raise typer.Exit(exit_code(err)) from err
