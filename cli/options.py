"""Options shared by commands. Training and import options are not restated here: they are
derived from the fields of `TrainConfig` and `DatasetOptions` (name, type, default, help),
so a default changes in one place.

    @train_options
    def train_layer(ctx, name, …, **options): config = train_config(ctx.params)
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Annotated, Any, TypeVar

import typer

from cli.errors import given_on_the_command_line
from cli.flags import option_flag
from mfstore.config import DatasetOptions, TrainConfig
from mfstore.spec import LayerPlan

F = TypeVar("F", bound=Callable[..., Any])

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Device = Annotated[str, typer.Option(help=next(
    f.metadata["help"] for f in fields(TrainConfig) if f.name == "device"))]


def given_token(token: str | None, envvar: str) -> str | None:
    """A `--token` option as given: click reads an empty `envvar` as unset, but an empty token
    was given (and is refused), not none."""
    return "" if token is None and os.environ.get(envvar) == "" else token


def _option_type(annotation: Any) -> Any:
    """`int | None` -> int: the type an option parses (None means 'not given')."""
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def param_name(cls: type, name: str) -> str:
    """The command parameter a field becomes (its `flag` when renamed)."""
    meta = next(f.metadata for f in fields(cls) if f.name == name)
    return str(meta.get("flag", name)).replace("-", "_")


def _parameters(cls: type, skip: set[str]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    params = []
    for f in fields(cls):
        meta = f.metadata
        if "help" not in meta or f.name in skip:
            continue
        default = meta.get("none_is", None) if f.default is None else f.default
        if f.default is MISSING:
            default = inspect.Parameter.empty  # a required option
        kind = _option_type(hints[f.name])
        if f.default is None and "none_is" in meta:
            kind = type(meta["none_is"])
        flag = option_flag(f)
        if kind is bool and default is True:  # on unless turned off
            flag = f"{flag}/--no-{flag[2:]}"
        option = typer.Option(flag, help=meta["help"], envvar=meta.get("envvar"))
        params.append(inspect.Parameter(param_name(cls, f.name), inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=Annotated[kind, option]))
    return params


def _with(params: list[inspect.Parameter]) -> Callable[[F], F]:
    """Add `params` to a command that takes them in `**options`."""
    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        taken = {p.name for p in own}
        new = [p for p in params if p.name not in taken]
        fn.__signature__ = signature.replace(parameters=[*own, *new])  # type: ignore[attr-defined]
        fn.__annotations__ = {**fn.__annotations__, **{p.name: p.annotation for p in new}}
        return fn
    return decorate


def train_options(fn: F) -> F:
    """The options of `TrainConfig` on a command that trains."""
    return _with(_parameters(TrainConfig, set()))(fn)


def layer_options(fn: F) -> F:
    """The options of `LayerPlan` on a command that trains one layer."""
    return _with(_parameters(LayerPlan, set()))(fn)


def dataset_options(skip: set[str] | None = None) -> Callable[[F], F]:
    """The options of `DatasetOptions` on a command that reads a data source."""
    return _with(_parameters(DatasetOptions, skip or set()))


def train_config(params: dict[str, Any]) -> TrainConfig:
    """The training options of a command (its `ctx.params`); --patience 0 = never stop."""
    given = {f.name: params[param_name(TrainConfig, f.name)] for f in fields(TrainConfig)
             if param_name(TrainConfig, f.name) in params}
    return TrainConfig(**{**given, "patience": given["patience"] or None})


def data_options(params: dict[str, Any]) -> DatasetOptions:
    """The import options of a command (its `ctx.params`); a `none_is` value (--max-examples
    0) means unset."""
    given: dict[str, Any] = {}
    for f in fields(DatasetOptions):
        name = param_name(DatasetOptions, f.name)
        if name in params:
            value = params[name]
            given[f.name] = None if "none_is" in f.metadata and value == f.metadata["none_is"] \
                else value
    return DatasetOptions(**given)


def import_options_given(ctx: typer.Context) -> dict[Field[Any], Any]:
    """The import options given on the command line itself, as `DatasetOptions` holds them
    (an environment variable such as MFSTORE_MAX_EXAMPLES applies wherever a source is read,
    and only there)."""
    chosen = data_options(ctx.params)
    return {f: getattr(chosen, f.name) for f in fields(DatasetOptions)
            if given_on_the_command_line(ctx, param_name(DatasetOptions, f.name))}


def layer_plan(params: dict[str, Any]) -> LayerPlan:
    """The layer options of a command (its `ctx.params`)."""
    return LayerPlan(**{f.name: params[param_name(LayerPlan, f.name)] for f in fields(LayerPlan)})
