"""One table from library exceptions to exit codes, and the group that turns an error into its
one line (`cli.fixes.render_error`) and its exit code."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from cli.fixes import Call, render_error
from mfstore import errors
from mfstore.urls import mask_credentials

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
            line = render_error(err, call_of(ctx))
            typer.echo(line, err=True)
            if "TORCHELASTIC_ERROR_FILE" in os.environ:  # started by torchrun
                _for_torchrun(line)
            raise typer.Exit(exit_code(err)) from err


def _for_torchrun(line: str) -> None:
    """The error's one line where torchrun's summary reads each rank's failure (the file
    `torch.distributed.elastic`'s `@record` writes, without a Python traceback: ours is an
    error of the command, not of the program)."""
    with contextlib.suppress(OSError):
        Path(os.environ["TORCHELASTIC_ERROR_FILE"]).write_text(json.dumps({"message": {
            "message": line, "extraInfo": {"py_callstack": line,
                                           "timestamp": str(int(time.time()))}}}))


GLOBAL_OPTIONS = ("home", "registry", "store")  # the root command's, repeated by a fix


def call_of(ctx: typer.Context) -> Call:
    """The command line being run, as a fix may show it (passwords masked): its arguments,
    and the global options given on it (not those from the environment, which a suggested
    command inherits anyway)."""
    root = ctx.find_root()
    prefix: list[str] = []
    for name in GLOBAL_OPTIONS:
        if given_on_the_command_line(root, name):
            prefix += [f"--{name}", mask_credentials(str(root.params[name]))]
    arguments = [mask_credentials(a) for a in root.meta.get(ARGUMENTS, [])]
    return Call(tuple(arguments), tuple(prefix))


def given_on_the_command_line(ctx: Any, name: str) -> bool:
    """Whether parameter `name` of `ctx` was given on the command line (not defaulted, not
    from an environment variable). By the source's name: Typer carries a click of its own,
    whose ParameterSource is not click's."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
