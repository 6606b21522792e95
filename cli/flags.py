"""How a setting is written on the command line: one definition for the options a command
takes (`cli/options.py`) and the commands a fix suggests (`cli/fixes.py`). Typer-free."""

from __future__ import annotations

from dataclasses import Field
from typing import Any


def flag(name: str) -> str:
    """`--name-with-dashes` for a setting called `name_with_dashes`."""
    return "--" + name.replace("_", "-")


def option_flag(f: Field[Any]) -> str:
    """The option a field of `TrainConfig`, `LayerPlan` or `DatasetOptions` becomes: its
    `flag` when renamed, else its name (`--no-` + it turns off a field on by default)."""
    return "--" + str(f.metadata.get("flag", f.name.replace("_", "-")))
