"""`mfstore ui`: the read-only web UI over the registry and store."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from cli.context import workspace
from cli.render import stderr
from mfstore.errors import ConfigError, option

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_free(host: str, port: int) -> None:
    """Refuse, in one line, an address that cannot be listened on (as uvicorn will bind it:
    with SO_REUSEADDR)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}",
                          option("port")) from err


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    token: Annotated[str | None, typer.Option(
        envvar="MFSTORE_UI_TOKEN",
        help="Require this token on every page but /health (open one page with "
             "?token=TOKEN, or send Authorization: Bearer TOKEN).")] = None,
) -> None:
    """Browse datasets, layer versions, networks and the lineage graph in a browser: learning
    curves, per-layer accuracy, verify status with repair commands, exports. Read-only; works
    offline and without JavaScript.

    Example: mfstore ui --port 8080
    """
    import uvicorn

    from serving.ui.app import create_ui

    _check_free(host, port)
    ws = workspace(ctx)
    ws.store  # noqa: B018  (a store that is not there fails now, in one line, not per page)
    if host not in LOOPBACK and token is None:
        stderr.print(f"warning: listening on {host} without --token: anyone who can reach "
                     "this address can read the whole store", highlight=False)
    stderr.print(f"mfstore UI on http://{host}:{port}/", highlight=False)
    uvicorn.run(create_ui(ws, token), host=host, port=port, log_level="warning",
                access_log=False)
