"""Options shared by commands, declared here once each and named in every command that takes
them (a reader sees every parameter in the command's signature). The options of training,
one layer and an import are the fields of `TrainConfig`, `LayerPlan` and `DatasetOptions`:
their flag, help and environment variable are read from the field (`_option`), their defaults
from the dataclass (`TRAIN`, `PLAN`, `IMPORT`), so a default changes in one place, and a test
holds the commands to the fields (tests/test_cli.py).

    def train_layer(ctx, name, …, epochs: options.Epochs = options.TRAIN.epochs, …):
        config = train_config(ctx.params)
"""

from __future__ import annotations

import os
from dataclasses import Field, fields
from typing import Annotated, Any

import typer

from cli.errors import given_on_the_command_line
from cli.flags import option_flag
from mfstore.config import DatasetOptions, TrainConfig
from mfstore.spec import LayerPlan

TRAIN = TrainConfig()  # the defaults of the training options
IMPORT = DatasetOptions()  # … of the import options
PLAN: dict[str, Any] = {f.name: f.default for f in fields(LayerPlan)}  # … of one layer's


def _field(cls: type, name: str) -> Field[Any]:
    return next(f for f in fields(cls) if f.name == name)


def _option(cls: type, name: str) -> Any:
    """The `typer.Option` of field `name` of `cls`: its flag (`--x/--no-x` for a switch on
    by default), help and environment variable."""
    f = _field(cls, name)
    flag = option_flag(f)
    if f.default is True:
        flag = f"{flag}/--no-{flag[2:]}"
    return typer.Option(flag, help=f.metadata["help"], envvar=f.metadata.get("envvar"))


Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

# Training (TrainConfig); patience 0 = never stop early (None in TrainConfig)
Epochs = Annotated[int, _option(TrainConfig, "epochs")]
BatchSize = Annotated[int, _option(TrainConfig, "batch_size")]
Lr = Annotated[float, _option(TrainConfig, "lr")]
WeightDecay = Annotated[float, _option(TrainConfig, "weight_decay")]
Optimizer = Annotated[str, _option(TrainConfig, "optimizer")]
LrSchedule = Annotated[str, _option(TrainConfig, "lr_schedule")]
Patience = Annotated[int, _option(TrainConfig, "patience")]
Monitor = Annotated[str, _option(TrainConfig, "monitor")]
Seed = Annotated[int, _option(TrainConfig, "seed")]
Deterministic = Annotated[bool, _option(TrainConfig, "deterministic")]
Device = Annotated[str, _option(TrainConfig, "device")]
CudaGraphs = Annotated[bool, _option(TrainConfig, "cuda_graphs")]
Overlap = Annotated[bool, _option(TrainConfig, "overlap")]
NEVER = 0  # --patience 0

# One layer (LayerPlan)
Kind = Annotated[str, _option(LayerPlan, "kind")]
Width = Annotated[int, _option(LayerPlan, "width")]
Act = Annotated[str, _option(LayerPlan, "activation")]
Pool = Annotated[str | None, _option(LayerPlan, "pool")]
Bias = Annotated[bool, _option(LayerPlan, "bias")]
Kernel = Annotated[int | None, _option(LayerPlan, "kernel")]
Stride = Annotated[int | None, _option(LayerPlan, "stride")]
Vocab = Annotated[int | None, _option(LayerPlan, "vocab")]

# Reading a source (DatasetOptions); max examples 0 = all (None in DatasetOptions)
ValFraction = Annotated[float, _option(DatasetOptions, "val_fraction")]
TestFraction = Annotated[float, _option(DatasetOptions, "test_fraction")]
SplitSeed = Annotated[int, _option(DatasetOptions, "seed")]
LabelColumn = Annotated[str, _option(DatasetOptions, "label_column")]
Format = Annotated[str | None, _option(DatasetOptions, "format")]
DataVocab = Annotated[int | None, _option(DatasetOptions, "vocab")]
MaxExamples = Annotated[int, _option(DatasetOptions, "max_examples")]
ALL = 0  # --max-examples 0


def given_token(token: str | None, envvar: str) -> str | None:
    """A `--token` option as given: click reads an empty `envvar` as unset, but an empty token
    was given (and is refused), not none."""
    return "" if token is None and os.environ.get(envvar) == "" else token


def param_name(cls: type, name: str) -> str:
    """The command parameter a field becomes (its `flag` when renamed)."""
    meta = next(f.metadata for f in fields(cls) if f.name == name)
    return str(meta.get("flag", name)).replace("-", "_")


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
