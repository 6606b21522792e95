"""Whole numbers from outside — architecture strings, environment variables, HTTP headers,
query strings — read by one parser: ASCII digits only (`"²".isdigit()` is true, `int("²")`
fails), no more digits than the bound allows (Python refuses to convert very long ones), and
within bounds. Every refusal says what was read, briefly and without control characters."""

from __future__ import annotations

import os

from mfstore.errors import ConfigError

INT32 = 2**31 - 1
INT64 = 2**63 - 1
SHOWN = 40  # characters of a refused value repeated in its message


class NumberError(ValueError):
    """Not a whole number within the bounds; the message follows the name of what was read
    ("must be a whole number…")."""


def shown(text: str) -> str:
    """`text` as a message repeats it: quoted, control characters escaped, cut short."""
    cut = text if len(text) <= SHOWN else text[:SHOWN] + "…"
    return repr(cut)


def whole_number(text: str, lo: int = 0, hi: int = INT64) -> int:
    """`text` as an int in [lo, hi]; `NumberError` otherwise."""
    if not (text.isascii() and text.isdigit()):
        raise NumberError(f"must be a whole number, got {shown(text)}")
    digits = text.lstrip("0")
    if len(digits) > len(str(hi)) or int(digits or "0") > hi or int(digits or "0") < lo:
        got = f"a {len(digits)}-digit number" if len(digits) > SHOWN else (digits or "0")
        raise NumberError(f"must lie in {lo}..{hi}, got {got}")
    return int(digits or "0")


def env_number(name: str, default: int, lo: int, hi: int, unit: str = "") -> int:
    """Environment variable `name` as a whole number in [lo, hi] (`default` when unset or
    empty); `ConfigError` naming the variable otherwise."""
    text = os.environ.get(name, "")
    if text == "":
        return default
    try:
        return whole_number(text.strip(), lo, hi)
    except NumberError as err:
        raise ConfigError(f"{name} {err}{f' ({unit})' if unit else ''}") from None
