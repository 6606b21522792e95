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

from serving.errors import RequestError
from serving.models import ModelSet
from serving.protocol import HEADER_LENGTH, encode_response, parse_infer

log = logging.getLogger("mfstore.serving")
Handler = Callable[[Request], Awaitable[Response]]
INLINE_ELEMENTS = 1 << 16  # smaller requests run on the event loop; larger in a thread


def _json(status: int, data: Any) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status,
                    media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise RequestError(413 if length.isdigit() else 400,
                           f"request of {length} bytes exceeds the limit of {limit} bytes"
                           if length.isdigit() else "Content-Length must be a whole number")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(models: ModelSet, token: str | None = None,
               max_request_bytes: int = 64 << 20) -> Starlette:
    """The v2 server for `models`; with `token`, every endpoint but health needs
    `Authorization: Bearer <token>`."""
    from mfstore import __version__

    expected = f"Bearer {token}".encode() if token else None

    def guarded(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            if expected is not None and not hmac.compare_digest(
                    request.headers.get("authorization", "").encode(), expected):
                return _error(401, "missing or wrong bearer token")
            try:
                return await handler(request)
            except RequestError as err:
                return _error(err.status, err.message)
        return wrapped

    async def live(_: Request) -> Response:
        return _json(200, {"live": True})

    async def ready(_: Request) -> Response:
        return _json(200, {"ready": True})

    async def server_metadata(_: Request) -> Response:
        return _json(200, {"name": "mfstore", "version": __version__,
                           "extensions": ["binary_tensor_data"]})

    def _model(request: Request):
        p = request.path_params
        return models.get(p["name"], p.get("version"))

    async def model_metadata(request: Request) -> Response:
        model = _model(request)
        return _json(200, model.describe(models.versions(model.name)))

    async def model_ready(request: Request) -> Response:
        model = _model(request)
        return _json(200, {"name": model.name, "version": str(model.version), "ready": True})

    async def infer(request: Request) -> Response:
        model = _model(request)
        body = await _body(request, max_request_bytes)
        req = parse_infer(body, request.headers.get(HEADER_LENGTH), model.inputs,
                          list(model.outputs))
        try:
            if sum(a.size for a in req.inputs.values()) <= INLINE_ELEMENTS:
                results = model.run(req.inputs, req.outputs)
            else:
                results = await run_in_threadpool(model.run, req.inputs, req.outputs)
        except (InvalidArgument, Fail) as err:
            raise RequestError(400, f"the model refused the input: {err}") from None
        payload, headers = encode_response(
            model.name, str(model.version), req, results,
            {n: s.datatype for n, s in model.outputs.items()})
        return Response(payload, 200, headers=headers)

    async def not_found(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, f"{exc.detail}: see the v2 protocol's endpoints under /v2")

    async def internal(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return _error(500, f"internal error: {exc}")

    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    routes = [Route("/v2/health/live", live), Route("/v2/health/ready", ready),
              Route("/v2", guarded(server_metadata))]
    for prefix in (model, version):
        routes += [Route(prefix, guarded(model_metadata)),
                   Route(f"{prefix}/ready", guarded(model_ready)),
                   Route(f"{prefix}/infer", guarded(infer), methods=["POST"])]
    return Starlette(routes=routes,
                     exception_handlers={HTTPException: not_found, Exception: internal})
