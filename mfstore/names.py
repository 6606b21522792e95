"""Names users give things: datasets, layers, networks, aliases, model names.

One rule for all of them, so a name is always safe as a path segment, a URL segment, a line in
a config file and a registry key.
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

