"""Request errors, and the one table from library exceptions to HTTP statuses (and from HTTP
statuses to gRPC codes, so both protocols answer a failure alike)."""

from __future__ import annotations

import asyncio

import grpc

from mfstore import errors


class RequestError(Exception):
    """A request that cannot be answered: `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


STATUS: list[tuple[type[errors.MFStoreError], int]] = [
    (errors.NotFoundError, 404),
    (errors.ConfigError, 400),
    (errors.SpecError, 400),
    (errors.DataFormatError, 400),  # a model file or configuration that cannot be loaded
    (errors.ConflictError, 409),
    (errors.MFStoreError, 500),
]

GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_of(err: errors.MFStoreError) -> int:
    return next(code for cls, code in STATUS if isinstance(err, cls))


def request_error(err: RequestError | errors.MFStoreError) -> RequestError:
    """Any error a request may meet, as a `RequestError`."""
    return err if isinstance(err, RequestError) else RequestError(status_of(err), str(err))


def grpc_code(status: int) -> grpc.StatusCode:
    return GRPC_CODES.get(status, grpc.StatusCode.INTERNAL)


CLIENT_GONE = 499  # the client closed the connection before its request was read


def failure_reason(err: BaseException) -> str:
    """Triton's reason label of a failed request: REJECTED (a bad request), CANCELED (the
    client left), BACKEND (ONNX Runtime failed) or OTHER."""
    if isinstance(err, asyncio.CancelledError):  # a gRPC client gone
        return "CANCELED"
    if not isinstance(err, RequestError):
        return "OTHER"
    if err.status == CLIENT_GONE:
        return "CANCELED"
    return "REJECTED" if err.status < 500 else "BACKEND"
