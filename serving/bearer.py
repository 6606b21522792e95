"""Bearer tokens: what one may be, for the inference server and the web UI alike.

A token travels in an `Authorization: Bearer TOKEN` header (latin-1 on the wire), and in the
UI also as `?token=` and a cookie (which `;`, `,`, quotes and spaces would split or quote), so
it is held to RFC 6750's b64token: ASCII letters, digits and `-._~+/`, then any `=`. Anything
else is refused when the server starts rather than never matching afterwards.
"""

from __future__ import annotations

import re

from mfstore.errors import ConfigError

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def check_token(token: str | None) -> str | None:
    """`token` when it can guard a server (None: no authentication), else a `ConfigError`."""
    if token is None:
        return None
    if not token.strip():
        raise ConfigError("the bearer token is empty, which would let anyone in; give a "
                          "token, or none to serve without authentication")
    if not B64TOKEN.fullmatch(token):
        raise ConfigError("the bearer token may hold only ASCII letters, digits and -._~+/ "
                          "(then =), which HTTP headers and cookies carry unchanged (RFC 6750); "
                          "e.g. 32 random hex digits")
    return token
