"""Fixes rendered as command lines and options (`render_fix`), and an error as its one line
(`render_error`). Typer-free, so the web UI and the report may phrase a fix as the command
line does.

A fix that reruns a step carries its whole recipe (a layer's spec and training
configuration, a dataset's import options) and is rendered as one complete command: every
option whose value differs from the command's default, derived from the dataclass fields the
options themselves are derived from (`cli/options.py`); a value no option can set is named
rather than dropped.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from mfstore import errors
from mfstore.config import DatasetOptions, TrainConfig
from mfstore.errors import Fix
from mfstore.spec import LayerPlan

SETTINGS = {"registry": "--registry / MFSTORE_REGISTRY", "store": "--store / MFSTORE_STORE",
            "home": "--home / MFSTORE_HOME"}
LISTINGS = {"datasets": "mfstore data list", "layers": "mfstore layers list",
            "networks": "mfstore nets list"}
PLACEHOLDERS = {  # an import fix's argument the library does not know: what the user puts there
    "name": ("NAME", "a name for the dataset"),
    "url": ("URL", "where the data is now: a path, an fsspec URL or sklearn:DATASET")}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_flag(f: Field[Any]) -> str:
    """The option a field of `TrainConfig`, `LayerPlan` or `DatasetOptions` becomes: its
    `flag` when renamed, else its name (`--no-` + it turns off a field on by default)."""
    return "--" + str(f.metadata.get("flag", f.name.replace("_", "-")))


def quoted(words: Sequence[object]) -> str:
    return "`" + " ".join(shlex.quote(str(w)) for w in words) + "`"


def command(*words: object) -> str:
    return quoted(["mfstore", *words])


@dataclass(frozen=True)
class Options:
    words: list[str]  # the options that set the values
    unset: list[str]  # "betas (0.8, 0.99)": the values no option can set


def _as_given(f: Field[Any], value: Any) -> Any:
    """A value as its option takes it: None is `none_is` (--patience 0 = never); JSON made
    tuples lists."""
    if value is None and "none_is" in f.metadata:
        return f.metadata["none_is"]
    return list(value) if isinstance(value, tuple) else value


def _option_words(f: Field[Any], value: Any) -> list[str]:
    name = option_flag(f)
    if isinstance(value, bool):
        return [name if value else "--no-" + name[2:]]
    return [name, repr(value) if isinstance(value, float) else str(value)]  # repr: every bit


def options_for(cls: type, values: dict[str, Any]) -> Options:
    """The options that give the fields of `cls` their `values`: one for each value that
    differs from the field's default; the values no option sets are listed instead."""
    words: list[str] = []
    unset: list[str] = []
    for f in fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if f.default is not MISSING and _as_given(f, value) == _as_given(f, f.default):
            continue
        if "help" in f.metadata and _as_given(f, value) is not None:
            words += _option_words(f, value)
        else:
            shown = tuple(value) if isinstance(value, list) else value
            unset.append(f"{f.name} {shown!r}")
    return Options(words, unset)


def _cannot(unset: list[str], how: str) -> str:
    if not unset:
        return ""
    return (f" ({' and '.join(unset)} cannot be set on the command line: {how} through the "
            "Python API)")


def _then(a: dict[str, Any]) -> str:
    then = a.get("then")
    return f", then {render_fix(Fix(then['action'], then.get('args', {})))}" if then else ""


def _train_layer(a: dict[str, Any]) -> str:
    spec = options_for(LayerPlan, a.get("spec", {}))
    config = options_for(TrainConfig, a.get("config", {}))
    on = [w for ref in a.get("on", []) for w in ("--on", ref)]
    words = ["train-layer", a["name"], "--data", a["data"], *on, *spec.words, *config.words]
    differ = "" if a.get("same_weights", True) else (
        " (it was trained beside the other layers of its network, in the simultaneous "
        "schedule: retrained alone, its weights will differ)")
    return (f"retrain {a.get('ref', a['name'])} with {command(*words)}" + differ
            + _cannot(spec.unset + config.unset, "retrain it") + _then(a))


def _import(a: dict[str, Any]) -> str:
    options = options_for(DatasetOptions, a.get("options", {}))
    given = {key: a.get(key) or PLACEHOLDERS[key][0] for key in PLACEHOLDERS}
    blanks = [f"replace {word} with {what}" for key, (word, what) in PLACEHOLDERS.items()
              if not a.get(key)]
    return ("import it with " + command("data", "add", given["name"], given["url"],
                                        *options.words)
            + (f" ({'; '.join(blanks)})" if blanks else "")
            + _cannot(options.unset, "import it"))


def _launch(a: dict[str, Any], argv: Sequence[str] | None) -> str:
    """The command again, one process per layer; `argv`: its arguments (None: unknown)."""
    again = list(argv) if argv is not None else ["ARGUMENTS"]
    return "start it with " + quoted(["torchrun", "--nproc-per-node", a.get("processes", "N"),
                                      "--no-python", "mfstore", *again])


def _repair(a: dict[str, Any]) -> str:
    words: list[object] = ["repair"]
    if a.get("network"):
        words.append(a["network"])
    if a.get("layer") is not None:
        words += ["--layer", a["layer"]]
    elif a.get("auto"):
        words.append("--auto")
    return f"run {command(*words)}"


def _delete(a: dict[str, Any]) -> str:
    commands = [command("nets", "delete", n, "--keep-layers") for n in a.get("networks", [])]
    commands += [command("layers", "delete", x) for x in a.get("layers", [])]
    return "first delete " + " and ".join([*a.get("networks", []), *a.get("layers", [])]) + \
        " (" + ", ".join(commands) + ")"


def _option(a: dict[str, Any]) -> str:
    value = f" {a['value']:g}" if isinstance(a.get("value"), float) else (
        f" {a['value']}" if "value" in a else "")
    return f"pass {flag(a['name'])}{value}" + (f" {a['why']}" if a.get("why") else "")


def render_fix(fix: Fix, argv: Sequence[str] | None = None) -> str:
    """A fix as the command line (or option) that applies it; `argv`: the arguments of the
    command that failed, for a fix that runs it again differently."""
    a = fix.args
    renderers = {
        "option": lambda: _option(a),
        "setting": lambda: f"check {SETTINGS[a['name']]}",
        "list": lambda: f"see `{LISTINGS[a['what']]}`",
        "init": lambda: f"run {command('init')} first",
        "upgrade": lambda: f"upgrade it with {command('init')}",
        "train_layer": lambda: _train_layer(a),
        "verify": lambda: f"run {command('verify', *[a['network']] if a.get('network') else [])}",
        "repair": lambda: _repair(a),
        "import": lambda: _import(a),
        "delete": lambda: _delete(a),
        "launch": lambda: _launch(a, argv),
    }
    return renderers[fix.action]() if fix.action in renderers else fix.describe()


def render_error(err: errors.MFStoreError, argv: Sequence[str] | None = None) -> str:
    """`error: MESSAGE; FIRST FIX (or OTHER FIX)` on one line (`argv`: see `render_fix`)."""
    if not err.fixes:
        return f"error: {err.message}"
    first, *rest = (render_fix(f, argv) for f in err.fixes)
    return f"error: {err.message}; {first}" + "".join(f" (or {r})" for r in rest)
