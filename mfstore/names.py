"""Names users give things (datasets, layers, networks, aliases, model names), and the class
names a dataset brings.

One rule for the names users give, so a name is always safe as a path segment, a URL segment,
a line in a config file and a registry key. Class names are the data's own, so they are held
only to what the formats they reach can carry back unchanged (`class_name_problem`).
"""

from __future__ import annotations

import re

from mfstore.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_name(name: str, what: str) -> str:
    """`name` if it is letters, digits, '.', '_' and '-' (at most 200, not starting with a
    punctuation mark); else a `ConfigError` naming `what` it was meant to be."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"invalid {what} name {name!r}: use letters, digits, '.', '_' and '-'"
                          ", starting with a letter or digit (at most 200)")
    return name


def check_alias(alias: str) -> str:
    """An alias is a name that cannot be mistaken for a version number."""
    check_name(alias, "alias")
    if alias.isdigit():
        raise ConfigError(f"alias {alias!r} looks like a version number; use a name such as "
                          "prod or staging")
    return alias


def class_name_problem(name: object) -> str | None:
    """Why a class name cannot travel through the files it is written to, None when it can:
    Triton's label file (`labels.txt`, one name a line: Triton reads a line up to '\n', and
    a '\r' before it is what other tools take for the end of the line) and the protobuf
    strings of `config.pbtxt` and ONNX metadata (valid UTF-8)."""
    if not isinstance(name, str):
        return f"class name {name!r} is not text"
    for mark, what in (("\n", "a line break"), ("\r", "a carriage return")):
        if mark in name:
            return (f"class name {name!r} holds {what}, which a label file (one name a line) "
                    "cannot hold")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"class name {name!r} is not valid Unicode (a lone surrogate)"
    return None


def read_label_lines(text: str) -> list[str]:
    """The class names of a label file, one a line, read as Triton reads them: lines end at
    '\n' alone (no other character Python's `splitlines` would split on), and a final
    '\n' ends the last name rather than starting an empty one."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines
