"""The read-only web UI (Starlette): server-rendered pages over one workspace's registry and
store. Nothing here writes; every page is plain HTML with inline CSS and SVG (no script, no
asset from anywhere), and the Content-Security-Policy forbids the browser to fetch any.

    /                       overview: counts, networks, the lineage graph
    /datasets[/NAME]        source, fingerprint, splits, shapes, streams and their sizes
    /layers[/NAME/V]        filters ?q= &dataset= &status= &page=; spec, curves, lineage, used by
    /networks[/NAME/V]      per-layer accuracy, verify status with repair commands, exports
                            (a deleted network's page too, marked deleted)
    /graph                  the lineage graph of the whole store
    /search?q=              names containing q
    /health                 always open, even with a token

With a token, every other page needs it: `Authorization: Bearer TOKEN`, or `?token=TOKEN`
once, which sets a cookie (HttpOnly, SameSite=Strict) and redirects to the page without it.
Only requests naming an allowed Host are answered (the loopback names and the address it
listens on, by default), so a page of another site cannot read a UI without a token through a
name rebound to this machine.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mfstore.errors import MFStoreError
from mfstore.lineage_graph import network_graph, store_graph
from mfstore.workspace import Workspace
from pages import facts
from pages.checks import Checks
from pages.pages import Links, Phrase, Renderer, accuracy_bars, graph_svg, in_words, svg
from pages.statuses import Statuses
from serving.bearer import check_token
from serving.errors import status_of

log = logging.getLogger("mfstore.ui")
COOKIE = "mfstore_ui_token"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store"}
Page = Callable[[Request], Response]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")


class UI:
    """One method per page."""

    def __init__(self, ws: Workspace, token: str | None, phrase: Phrase) -> None:
        self.ws, self.checks, self.token = ws, Checks(ws), token
        self.renderer, self.links = Renderer(phrase), Links()

    def html(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = self.renderer.render(template, shown=self.ws.where.shown, **context)
        return HTMLResponse(body, status, headers=HEADERS)

    def _now(self) -> Statuses:
        return Statuses(self.ws, self.checks)

    def _filters(self, request: Request) -> facts.Filters:
        p = request.query_params
        return facts.Filters(p.get("q", "").strip(), p.get("dataset", ""), p.get("status", ""),
                             facts.page_number(p.get("page")))

    def _store_graph(self, now: Statuses) -> Markup:
        return graph_svg(now.graph(store_graph(self.ws.registry)), self.links.node,
                         "lineage of the store")

    def index(self, _: Request) -> Response:
        now = self._now()
        return self.html("index.html", datasets=now.datasets, layer_count=len(now.layers),
                         damaged=facts.damaged_layers(now),
                         networks=facts.network_rows(now, facts.Filters()),
                         graph=self._store_graph(now))

    def datasets(self, _: Request) -> Response:
        return self.html("datasets.html", datasets=self.ws.registry.datasets())

    def dataset(self, request: Request) -> Response:
        page = facts.dataset_page(self._now(), request.path_params["name"])
        return self.html("dataset.html", page=page)

    def layers(self, request: Request) -> Response:
        filters, now = self._filters(request), self._now()
        return self.html("layers.html", filters=filters, datasets=now.datasets,
                         rows=facts.layer_rows(now, filters), q=filters.q)

    def layer(self, request: Request) -> Response:
        p = request.path_params
        return self.html("layer.html", page=facts.layer_page(self._now(), p["name"],
                                                             p["version"]))

    def networks(self, request: Request) -> Response:
        filters, now = self._filters(request), self._now()
        return self.html("networks.html", filters=filters, datasets=now.datasets,
                         rows=facts.network_rows(now, filters), q=filters.q)

    def network(self, request: Request) -> Response:
        p, now = request.path_params, self._now()
        page = facts.network_page(now, p["name"], p["version"])
        bars = accuracy_bars(page, lambda x: self.links.layer(x.layer.name, x.layer.version))
        graph = graph_svg(now.graph(network_graph(self.ws.registry, page.network)),
                          self.links.node, f"lineage of {page.network.ref}")
        return self.html("network.html", page=page, bars=svg(bars), graph=graph)

    def graph(self, _: Request) -> Response:
        return self.html("graph.html", graph=self._store_graph(self._now()))

    def search(self, request: Request) -> Response:
        p, now = request.query_params, self._now()
        filters = facts.Filters(p.get("q", "").strip(), page=facts.page_number(p.get("page")))
        return self.html("search.html", q=filters.q, filters=filters,
                         datasets=facts.dataset_rows(now, filters),
                         layers=facts.layer_rows(now, filters),
                         networks=facts.network_rows(now, filters))

    def health(self, _: Request) -> Response:
        return JSONResponse({"ok": True})

    def guarded(self, page: Page) -> Page:
        """The token check, and a library error as a page with its status."""
        def wrapped(request: Request) -> Response:
            if not self.authorised(request):
                return self.denied()
            redirect = self.token_redirect(request)
            if redirect is not None:
                return redirect
            try:
                return page(request)
            except MFStoreError as err:
                code = status_of(err)
                return self.html("error.html", code, code=code, title=_TITLES.get(code, "error"),
                                 message=err.message)
        return wrapped

    def authorised(self, request: Request) -> bool:
        """Whether the request carries the token (header, cookie or ?token=), or none is
        needed. Tokens are ASCII (`serving.bearer`), so bytes compare as the text does."""
        if self.token is None:
            return True
        expected = self.token.encode()
        header = request.headers.get("authorization", "").encode()
        return any(hmac.compare_digest(given, wanted) for given, wanted in [
            (header, b"Bearer " + expected),
            (request.cookies.get(COOKIE, "").encode(), expected),
            (request.query_params.get("token", "").encode(), expected)])

    def token_redirect(self, request: Request) -> Response | None:
        """For an authorised `?token=`: the same page without it, and the cookie that stands
        for it from now on (so the token leaves the address bar and the history)."""
        if self.token is None or "token" not in request.query_params:
            return None
        rest = urlencode([(k, v) for k, v in request.query_params.multi_items()
                          if k != "token"])
        path = "/" + request.url.path.lstrip("/")  # never //host: a page of this server
        response = RedirectResponse(path + (f"?{rest}" if rest else ""), 303)
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response

    def denied(self) -> Response:
        return self.html("error.html", 401, code=401, title="token needed",
                         message="this mfstore UI needs its token: open any page once with "
                                 "?token=TOKEN, or send Authorization: Bearer TOKEN")

    def routes(self) -> list[Route]:
        pages: list[tuple[str, Page]] = [
            ("/", self.index), ("/datasets", self.datasets), ("/datasets/{name}", self.dataset),
            ("/layers", self.layers), ("/layers/{name}/{version:int}", self.layer),
            ("/networks", self.networks), ("/networks/{name}/{version:int}", self.network),
            ("/graph", self.graph), ("/search", self.search)]
        return [Route("/health", self.health),
                *(Route(path, self.guarded(page)) for path, page in pages)]


_TITLES = {404: "not found", 400: "bad request", 500: "the store could not be read"}


def allowed_hosts(host: str, more: Sequence[str] = ()) -> list[str]:
    """The Host names the UI answers: the loopback names, the address it listens on and
    `more`; any name when it listens on every address and `more` names none. A page of another
    site whose name was made to resolve to this machine (DNS rebinding) is refused."""
    if host in WILDCARDS and not more:
        return ["*"]
    names = [*LOOPBACK_HOSTS, *([] if host in WILDCARDS else [host]), *more]
    return list(dict.fromkeys(f"[{n}]" if ":" in n and not n.startswith("[") else n
                              for n in names))


def create_ui(ws: Workspace, token: str | None = None,
              hosts: Sequence[str] = LOOPBACK_HOSTS, phrase: Phrase = in_words) -> Starlette:
    """The UI over `ws`; with `token`, every page but /health needs it. Requests naming a
    Host outside `hosts` (see `allowed_hosts`) get a 400. `phrase`: how a fix is told (the
    command line passes its own: the command that applies it)."""
    ui = UI(ws, check_token(token), phrase)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if not ui.authorised(request):
            return ui.denied()
        message = f"no page at {request.url.path}" if status == 404 else (
            f"{request.method} is not allowed here: the UI only reads" if status == 405
            else str(getattr(exc, "detail", exc)))
        return ui.html("error.html", status, code=status, title=_TITLES.get(status, "error"),
                       message=message)

    async def internal(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return ui.html("error.html", 500, code=500, title="internal error",
                       message="the UI met an unexpected error; the server's log says more")

    return Starlette(routes=ui.routes(),
                     exception_handlers={HTTPException: not_found, Exception: internal},
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts),
                                            www_redirect=False)])
