"""Fixes rendered as command lines and options (`render_fix`), and an error as its one line
(`render_error`). Typer-free, so the web UI and the report may phrase a fix as the command
line does."""

from __future__ import annotations

import shlex
from typing import Any

from mfstore import errors
from mfstore.errors import Fix

SETTINGS = {"registry": "--registry / MFSTORE_REGISTRY", "store": "--store / MFSTORE_STORE",
            "home": "--home / MFSTORE_HOME"}
LISTINGS = {"datasets": "mfstore data list", "layers": "mfstore layers list",
            "networks": "mfstore nets list"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def command(*words: object) -> str:
    return "`mfstore " + " ".join(shlex.quote(str(w)) for w in words) + "`"


def _repair(a: dict[str, Any]) -> str:
    words: list[object] = ["repair"]
    if a.get("network"):
        words.append(a["network"])
    if a.get("layer") is not None:
        words += ["--layer", a["layer"]]
    elif a.get("auto"):
        words.append("--auto")
    return f"run {command(*words)}"


def _train_layer(a: dict[str, Any]) -> str:
    on = [w for ref in a.get("on", []) for w in ("--on", ref)]
    return "retrain it with " + command("train-layer", a["name"], "--data", a["data"], *on,
                                        "--kind", a["kind"], "--width", a["width"])


def _delete(a: dict[str, Any]) -> str:
    commands = [command("nets", "delete", n) for n in a.get("networks", [])]
    commands += [command("layers", "delete", x) for x in a.get("layers", [])]
    return "first delete " + " and ".join([*a.get("networks", []), *a.get("layers", [])]) + \
        " (" + ", ".join(commands) + ")"


def render_fix(fix: Fix) -> str:
    """A fix as the command line (or option) that applies it."""
    a = fix.args
    if fix.action == "option":
        value = f" {a['value']:g}" if isinstance(a.get("value"), float) else (
            f" {a['value']}" if "value" in a else "")
        return f"pass {flag(a['name'])}{value}" + (f" {a['why']}" if a.get("why") else "")
    if fix.action == "setting":
        return f"check {SETTINGS[a['name']]}"
    if fix.action == "list":
        return f"see `{LISTINGS[a['what']]}`"
    renderers = {
        "init": lambda: f"run {command('init')} first",
        "upgrade": lambda: f"upgrade it with {command('init')}",
        "train_layer": lambda: _train_layer(a),
        "verify": lambda: f"run {command('verify', *[a['network']] if a.get('network') else [])}",
        "repair": lambda: _repair(a),
        "import": lambda: "import it with " + command("data", "add", a["name"], a["url"]),
        "delete": lambda: _delete(a),
        "launch": lambda: f"start it with torchrun --nproc-per-node {a['per'].upper()}S",
    }
    return renderers[fix.action]() if fix.action in renderers else fix.describe()


def render_error(err: errors.MFStoreError) -> str:
    """`error: MESSAGE; FIRST FIX (or OTHER FIX)` on one line."""
    if not err.fixes:
        return f"error: {err.message}"
    first, *rest = (render_fix(f) for f in err.fixes)
    return f"error: {err.message}; {first}" + "".join(f" (or {r})" for r in rest)
