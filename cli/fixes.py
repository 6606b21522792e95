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

import os
import shlex
from collections.abc import Sequence
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from cli.flags import flag, option_flag
from mfstore import errors
from mfstore.config import DatasetOptions, TrainConfig
from mfstore.fixes import (
    AliasFix,
    DeleteFix,
    Fix,
    ImportFix,
    InitFix,
    LaunchFix,
    ListFix,
    OptionFix,
    RepairFix,
    RetrainFix,
    SettingFix,
    UpgradeFix,
    VerifyFix,
)
from mfstore.spec import LayerPlan

SETTINGS = {"registry": "--registry / MFSTORE_REGISTRY", "store": "--store / MFSTORE_STORE",
            "home": "--home / MFSTORE_HOME"}
LISTINGS = {"datasets": ("data", "list"), "layers": ("layers", "list"),
            "networks": ("nets", "list")}
PLACEHOLDERS = {  # an import fix's argument the library does not know: what the user puts there
    "name": ("NAME", "a name for the dataset"),
    "url": ("URL", "where the data is now: a path, an fsspec URL or sklearn:DATASET")}


def quoted(words: Sequence[object]) -> str:
    return "`" + " ".join(shlex.quote(str(w)) for w in words) + "`"


@dataclass(frozen=True)
class Call:
    """The command line a fix answers, as it may be shown (passwords masked): its arguments,
    and the global options given on it (--home, --registry, --store), which a suggested
    command repeats so that it acts on the same registry and store."""

    arguments: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()


NO_CALL = Call()  # a fix rendered outside a command (the web UI, a report)


def command(*words: object, call: Call = NO_CALL) -> str:
    return quoted(["mfstore", *call.prefix, *words])


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
    differs from the field's default, or whose option's environment variable is set here
    (it would change the value); the values no option sets are listed instead."""
    words: list[str] = []
    unset: list[str] = []
    for f in fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        overridden = f.metadata.get("envvar", "") in os.environ
        if f.default is not MISSING and _as_given(f, value) == _as_given(f, f.default) \
                and not overridden:
            continue
        if "help" in f.metadata and _as_given(f, value) is not None:
            words += _option_words(f, _as_given(f, value))
        else:
            shown = tuple(value) if isinstance(value, list) else value
            unset.append(f"{f.name} {shown!r}")
    return Options(words, unset)


def _cannot(unset: list[str], how: str) -> str:
    if not unset:
        return ""
    return (f" ({' and '.join(unset)} cannot be set on the command line: {how} through the "
            "Python API)")


def _retrain(fix: RetrainFix, call: Call) -> str:
    spec = options_for(LayerPlan, fix.spec)
    config = options_for(TrainConfig, fix.config)
    on = [w for ref in fix.on for w in ("--on", ref)]
    words = ["train-layer", fix.name, "--data", fix.data, *on, *spec.words, *config.words]
    launched = ["torchrun", "--nproc-per-node", fix.processes, "--no-python"] \
        if fix.processes > 1 else []
    again = quoted([*launched, "mfstore", *call.prefix, *words])
    differ = f" ({fix.other_weights}: its weights may differ)" if fix.other_weights else ""
    then = f", then {render_fix(fix.then, call)}" if fix.then is not None else ""
    return (f"retrain {fix.ref} with {again}" + differ
            + _cannot(spec.unset + config.unset, "retrain it") + then)


def _import(fix: ImportFix, call: Call) -> str:
    options = options_for(DatasetOptions, fix.options)
    given = {"name": fix.name, "url": fix.url}
    blanks = [f"replace {word} with {what}" for key, (word, what) in PLACEHOLDERS.items()
              if not given[key]]
    return ("import it with " + command("data", "add", fix.name or PLACEHOLDERS["name"][0],
                                        fix.url or PLACEHOLDERS["url"][0], *options.words,
                                        call=call)
            + (f" ({'; '.join(blanks)})" if blanks else "")
            + _cannot(options.unset, "import it"))


def _launch(fix: LaunchFix, call: Call) -> str:
    """The command again, one process per layer."""
    again = list(call.arguments) or ["ARGUMENTS"]
    return "start it with " + quoted(["torchrun", "--nproc-per-node", fix.processes,
                                      "--no-python", "mfstore", *again])


def _repair(fix: RepairFix, call: Call) -> str:
    words: list[object] = ["repair"]
    if fix.network:
        words.append(fix.network)
    if fix.layer is not None:
        words += ["--layer", fix.layer]
    elif fix.auto:
        words.append("--auto")
    return f"run {command(*words, call=call)}"


def _delete(fix: DeleteFix, call: Call) -> str:
    commands = [command("nets", "delete", n, "--keep-layers", call=call) for n in fix.networks]
    commands += [command("layers", "delete", x, call=call) for x in fix.layers]
    return ("first delete " + " and ".join([*fix.networks, *fix.layers]) + " ("
            + ", ".join(commands) + ")")


def _number(value: Any) -> str:
    """A value as an option takes it; a float with every bit (repr), never rounded."""
    return repr(value) if isinstance(value, float) else str(value)


def _option(fix: OptionFix) -> str:
    value = "" if fix.value is None else f" {_number(fix.value)}"
    return f"pass {flag(fix.name)}{value}" + (f" {fix.why}" if fix.why else "")


def render_fix(fix: Fix, call: Call = NO_CALL) -> str:
    """A fix as the command line (or option) that applies it; `call`: the command line that
    failed (a suggested command repeats its global options; a launch reruns it)."""
    match fix:
        case OptionFix():
            return _option(fix)
        case SettingFix(name=name):
            return f"check {SETTINGS[name]}"
        case ListFix(what=what):
            return f"see {command(*LISTINGS[what], call=call)}"
        case InitFix():
            return f"run {command('init', call=call)} first"
        case UpgradeFix():
            return f"upgrade it with {command('init', call=call)}"
        case RetrainFix():
            return _retrain(fix, call)
        case VerifyFix(network=network):
            return "run " + command("verify", *[network] if network else [], call=call)
        case RepairFix():
            return _repair(fix, call)
        case AliasFix(network=network, alias=alias):
            return "move it with " + command("nets", "alias", network, alias, call=call)
        case ImportFix():
            return _import(fix, call)
        case DeleteFix():
            return _delete(fix, call)
        case LaunchFix():
            return _launch(fix, call)
    return fix.describe()


def render_error(err: errors.MFStoreError, call: Call = NO_CALL) -> str:
    """`error: MESSAGE; FIRST FIX (or OTHER FIX)` on one line (`call`: see `render_fix`)."""
    if not err.fixes:
        return f"error: {err.message}"
    first, *rest = (render_fix(f, call) for f in err.fixes)
    return f"error: {err.message}; {first}" + "".join(f" (or {r})" for r in rest)
