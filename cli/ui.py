"""`mfstore ui`: the read-only web UI over the registry and store."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import workspace
from cli.errors import call_of
from cli.fixes import render_fix
from cli.options import given_token
from cli.render import stderr
from serving.bearer import check_token
from serving.listening import bind

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    token: Annotated[str | None, typer.Option(
        envvar="MFSTORE_UI_TOKEN",
        help="Require this token on every page but /health (open one page with "
             "?token=TOKEN, or send Authorization: Bearer TOKEN).")] = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        help="Also answer requests naming this host (a proxy's or the machine's name); "
             "repeat for more. By default only the loopback names and --host are answered "
             "(any name when --host is 0.0.0.0 or ::).")] = None,
) -> None:
    """Browse datasets, layer versions, networks and the lineage graph in a browser: learning
    curves, per-layer accuracy, verify status with repair commands, exports. Read-only; works
    offline and without JavaScript.

    Example: mfstore ui --port 8080
    """
    import uvicorn  # start-up: uvicorn only when this command runs

    # start-up: grpc, starlette only when this command runs
    from pages.app import allowed_hosts, create_ui

    token = check_token(given_token(token, "MFSTORE_UI_TOKEN"))
    hosts = allowed_hosts(host, allow_host or [])
    ws = workspace(ctx)
    ws.store  # noqa: B018  (a store that is not there fails now, in one line, not per page)
    listening = bind(host, port)
    if host not in LOOPBACK and token is None:
        stderr.print(f"warning: listening on {host} without --token: anyone who can reach "
                     "this address can read the whole store", highlight=False)
    address = f"[{host}]" if ":" in host else host
    stderr.print(f"mfstore UI on http://{address}:{listening.getsockname()[1]}/",
                 highlight=False)
    app = create_ui(ws, token, hosts, lambda fix: render_fix(fix, call_of(ctx)))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[listening])
