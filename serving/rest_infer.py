"""REST inference as a bare ASGI app in front of the Starlette one: `…/infer`, the hot path,
skips Starlette's routing, middleware, request and response objects (about 25 µs of the
server's own time per request, measured on 2 cores); every other path goes on to Starlette.
It answers exactly as the other endpoints do: the token, `{"error": …}` with the status from
`serving.errors`, the request size limit, a client that leaves counted as CANCELED."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mfstore.errors import MFStoreError
from mfstore.numbers import NumberError, whole_number
from serving.errors import CLIENT_GONE, RequestError, request_error
from serving.rest_protocol import HEADER_LENGTH, encode_response, parse_infer
from serving.server import InferenceServer

log = logging.getLogger("mfstore.serving")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
JSON = {"content-type": "application/json"}


async def read_body(receive: Receive, length: str | None, limit: int) -> bytes:
    """A request's body, at most `limit` bytes (413 beyond)."""
    if length is not None:
        try:
            declared = whole_number(length)
        except NumberError as err:
            raise RequestError(400, f"Content-Length {err}") from None
        if declared > limit:
            raise RequestError(413, f"request of {declared} bytes exceeds the limit of {limit} "
                                    "bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(CLIENT_GONE, "the client left before sending its request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()


class InferFirst:
    def __init__(self, server: InferenceServer, app: ASGIApp) -> None:
        self.server, self.app = server, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            await _send(send, 405, error_body("Method Not Allowed: see the v2 protocol's "
                                              "endpoints under /v2"), {**JSON, "allow": "POST"})
        else:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            await _send(send, *await self._answer(match[1], match[2], headers, receive))

    async def _answer(self, name: str, version: str | None, headers: dict[str, str],
                      receive: Receive) -> tuple[int, bytes, dict[str, str]]:
        try:
            if not self.server.authorized(headers.get("authorization")):
                raise RequestError(401, "missing or wrong bearer token")
            model = self.server.model(name, version)
            with model.answering():
                body = await read_body(receive, headers.get("content-length"),
                                       self.server.max_request_bytes)
                request = parse_infer(body, headers.get(HEADER_LENGTH), model)
                payload, extra = encode_response(model, request, await model.infer(request))
            return 200, payload, extra
        except (RequestError, MFStoreError) as err:
            failure = request_error(err)
            return failure.status, error_body(failure.message), JSON
        except Exception as err:
            log.exception("unexpected error", exc_info=err)
            return 500, error_body(f"internal error: {err}"), JSON


async def _send(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(payload)).encode()),
                            *((k.encode(), v.encode()) for k, v in headers.items())]})
    await send({"type": "http.response.body", "body": payload})
