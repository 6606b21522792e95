"""The HTTP server: v2 REST endpoints over ONNX Runtime sessions (Starlette)."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mfstore.errors import MFStoreError
from serving.errors import RequestError, status_of
from serving.models import ModelSet, ServedModel
from serving.protocol import HEADER_LENGTH, encode_response, parse_infer

log = logging.getLogger("mfstore.serving")
Handler = Callable[[Request], Awaitable[Response]]
INLINE_ELEMENTS = 1 << 16  # smaller requests run on the event loop; larger in a thread


def _json(status: int, data: Any) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status,
                    media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class V2Endpoints:
    """One method per endpoint of the v2 REST protocol."""

    def __init__(self, models: ModelSet, token: str | None, max_request_bytes: int) -> None:
        self.models, self.limit = models, max_request_bytes
        self.expected = f"Bearer {token}".encode() if token else None

    def guarded(self, handler: Handler) -> Handler:
        """Checks the bearer token; a `RequestError` or library error becomes its status and
        message (serving.errors.STATUS)."""
        async def wrapped(request: Request) -> Response:
            if self.expected is not None and not hmac.compare_digest(
                    request.headers.get("authorization", "").encode(), self.expected):
                return _error(401, "missing or wrong bearer token")
            try:
                return await handler(request)
            except RequestError as err:
                return _error(err.status, err.message)
            except MFStoreError as err:  # a library error met while answering
                return _error(status_of(err), str(err))
        return wrapped

    async def live(self, _: Request) -> Response:
        return _json(200, {"live": True})

    async def ready(self, _: Request) -> Response:
        return _json(200, {"ready": True})

    async def server_metadata(self, _: Request) -> Response:
        from mfstore import __version__

        return _json(200, {"name": "mfstore", "version": __version__,
                           "extensions": ["binary_tensor_data"]})

    def _model(self, request: Request) -> ServedModel:
        params = request.path_params
        return self.models.get(params["name"], params.get("version"))

    async def model_metadata(self, request: Request) -> Response:
        model = self._model(request)
        return _json(200, model.describe(self.models.versions(model.name)))

    async def model_ready(self, request: Request) -> Response:
        model = self._model(request)
        return _json(200, {"name": model.name, "version": str(model.version), "ready": True})

    async def infer(self, request: Request) -> Response:
        model = self._model(request)
        body = await _body(request, self.limit)
        req = parse_infer(body, request.headers.get(HEADER_LENGTH), model.inputs,
                          list(model.outputs))
        try:
            if sum(a.size for a in req.inputs.values()) <= INLINE_ELEMENTS:
                results = model.run(req.inputs, req.outputs)
            else:
                results = await run_in_threadpool(model.run, req.inputs, req.outputs)
        except (InvalidArgument, Fail) as err:
            raise RequestError(400, f"the model refused the input: {err}") from None
        payload, headers = encode_response(model.name, str(model.version), req, results,
                                           {n: s.datatype for n, s in model.outputs.items()})
        return Response(payload, 200, headers=headers)

    def routes(self) -> list[Route]:
        routes = [Route("/v2/health/live", self.live), Route("/v2/health/ready", self.ready),
                  Route("/v2", self.guarded(self.server_metadata))]
        for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [Route(prefix, self.guarded(self.model_metadata)),
                       Route(f"{prefix}/ready", self.guarded(self.model_ready)),
                       Route(f"{prefix}/infer", self.guarded(self.infer), methods=["POST"])]
        return routes


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise RequestError(400, "Content-Length must be a whole number")
    if length is not None and int(length) > limit:
        raise RequestError(413, f"request of {length} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, f"{exc.detail}: see the v2 protocol's endpoints under /v2")


async def _internal(_: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return _error(500, f"internal error: {exc}")


def create_app(models: ModelSet, token: str | None = None,
               max_request_bytes: int = 64 << 20) -> Starlette:
    """The v2 server for `models`; with `token`, every endpoint but health needs
    `Authorization: Bearer <token>`."""
    return Starlette(routes=V2Endpoints(models, token, max_request_bytes).routes(),
                     exception_handlers={HTTPException: _http_error, Exception: _internal})
