"""URLs as they may be shown: with credentials masked."""

from __future__ import annotations

import re


def mask_credentials(url: str) -> str:
    """`url` as it may be shown: whatever sits between `//` and the last `@` of the authority
    keeps its user name and loses its password, and a `password=` query value is masked."""
    scheme, sep, rest = url.partition("//")
    query = rest.find("?")
    at = rest.rfind("@", 0, query if query >= 0 else len(rest))  # passwords may hold / or @
    if sep and at >= 0 and ":" in rest[:at]:
        user = rest[:at].split(":", 1)[0]
        url = f"{scheme}{sep}{user}:***{rest[at:]}"
    return re.sub(r"(?i)([?&](?:password|passwd|secret|token)=)[^&]*", r"\1***", url)


def secrets_of(url: str) -> list[str]:
    """The password of `url` and its pieces (a driver may split an unescaped '@' or '/'
    differently and echo a piece), longest first."""
    _, sep, rest = url.partition("//")
    query = rest.find("?")
    at = rest.rfind("@", 0, query if query >= 0 else len(rest))
    found = re.findall(r"(?i)[?&](?:password|passwd|secret|token)=([^&]+)", url)
    if sep and at >= 0 and ":" in rest[:at]:
        password = rest[:at].split(":", 1)[1]
        found += [password, *re.split(r"[@/]", password)]
    return sorted({p for p in found if len(p) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's message, say) with every secret of `url` masked."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
