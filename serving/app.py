"""The REST endpoints of the v2 protocol and Triton's extensions, over Starlette (inference
itself in front of it: serving.rest_infer).

    /v2/health/live|ready   /v2   /v2/models/{m}[/versions/{v}][/ready|/config|/stats|/infer]
    /v2/models/stats   POST /v2/repository/index   POST /v2/repository/models/{m}/load|unload
    /metrics (Prometheus)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mfstore.errors import MFStoreError
from serving.errors import RequestError, request_error
from serving.model_config import config_json
from serving.models import ModelVersion
from serving.rest_infer import InferFirst, read_body
from serving.rest_protocol import read_json
from serving.server import InferenceServer

log = logging.getLogger("mfstore.serving")
Handler = Callable[[Request], Awaitable[Response]]


def _json(status: int, data: Any) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status,
                    media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class V2Endpoints:
    """One method per endpoint."""

    def __init__(self, server: InferenceServer) -> None:
        self.server, self.limit = server, server.max_request_bytes

    def guarded(self, handler: Handler) -> Handler:
        """Checks the bearer token; a `RequestError` or library error becomes its status and
        message (serving.errors.STATUS); a client that leaves mid-request is let go."""
        async def wrapped(request: Request) -> Response:
            if not self.server.authorized(request.headers.get("authorization")):
                return _error(401, "missing or wrong bearer token")
            try:
                return await handler(request)
            except (RequestError, MFStoreError) as err:
                failure = request_error(err)
                return _error(failure.status, failure.message)
        return wrapped

    async def live(self, _: Request) -> Response:
        return _json(200, {"live": True})

    async def ready(self, _: Request) -> Response:
        return _json(200, {"ready": True})

    async def server_metadata(self, _: Request) -> Response:
        return _json(200, self.server.server_metadata())

    @staticmethod
    def _names(request: Request) -> tuple[str, str | None]:
        return request.path_params["name"], request.path_params.get("version")

    def _model(self, request: Request) -> ModelVersion:
        return self.server.model(*self._names(request))

    async def model_metadata(self, request: Request) -> Response:
        return _json(200, self.server.model_metadata(*self._names(request)))

    async def model_ready(self, request: Request) -> Response:
        model = self._model(request)
        return _json(200, {"name": model.name, "version": str(model.version), "ready": True})

    async def model_config(self, request: Request) -> Response:
        return _json(200, config_json(self._model(request).config))

    async def model_stats(self, request: Request) -> Response:
        name, version = request.path_params.get("name", ""), request.path_params.get("version")
        stats = await self.server.all_statistics(name, version or "")
        return _json(200, {"model_stats": [s.to_dict() for s in stats]})

    async def repository_index(self, request: Request) -> Response:
        body = await _body(request, self.limit)
        ready = read_json(body).get("ready", False) if body.strip() else False
        if not isinstance(ready, bool):
            raise RequestError(400, "ready must be true or false")
        return _json(200, self.server.repository.index(ready))

    async def repository_load(self, request: Request) -> Response:
        body = await _body(request, self.limit)
        params = read_json(body).get("parameters", {}) if body.strip() else {}
        if not isinstance(params, dict) or params:
            raise RequestError(400, "loading with a configuration or files given in the "
                                    "request is not supported; change the model's folder and "
                                    "load it again")
        await self.server.load(request.path_params["name"])
        return Response(b"", 200)

    async def repository_unload(self, request: Request) -> Response:
        await _body(request, self.limit)  # parameters (unload_dependents): nothing depends
        await self.server.unload(request.path_params["name"])
        return Response(b"", 200)

    async def metrics(self, _: Request) -> Response:
        return Response(await self.server.metrics(), 200,
                        media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        """Every endpoint but inference (serving.rest_infer)."""
        g = self.guarded
        routes = [Route("/v2/health/live", self.live), Route("/v2/health/ready", self.ready),
                  Route("/v2", g(self.server_metadata)), Route("/metrics", g(self.metrics)),
                  Route("/v2/models/stats", g(self.model_stats)),
                  Route("/v2/repository/index", g(self.repository_index), methods=["POST"])]
        for action in ("load", "unload"):
            routes.append(Route(f"/v2/repository/models/{{name}}/{action}",
                                g(getattr(self, f"repository_{action}")), methods=["POST"]))
        for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [Route(prefix, g(self.model_metadata)),
                       Route(f"{prefix}/ready", g(self.model_ready)),
                       Route(f"{prefix}/config", g(self.model_config)),
                       Route(f"{prefix}/stats", g(self.model_stats))]
        return routes


async def _body(request: Request, limit: int) -> bytes:
    return await read_body(request.receive, request.headers.get("content-length"), limit)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, f"{exc.detail}: see the v2 protocol's endpoints under /v2")


async def _internal(_: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return _error(500, f"internal error: {exc}")


def create_app(server: InferenceServer) -> InferFirst:
    """The REST server; with a token, every endpoint but health needs
    `Authorization: Bearer <token>`."""
    return InferFirst(server, Starlette(
        routes=V2Endpoints(server).routes(),
        exception_handlers={HTTPException: _http_error, Exception: _internal}))
