"""The KServe v2 / Triton `inference.GRPCInferenceService`, on the stubs `tritonclient` ships,
served by `grpc.aio` on the same event loop as REST: one set of models, batchers, token and
limits. Failures carry the REST status's gRPC code (serving.errors.GRPC_CODES) and the same
message. Streaming inference, shared memory, tracing and logging are not offered
(UNIMPLEMENTED, said once, nothing logged); bytes that are not the message a method takes are
INVALID_ARGUMENT (never a logged traceback).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from mfstore.errors import MFStoreError
from serving.errors import RequestError, grpc_code, request_error
from serving.grpc_protocol import encode_response, parameter, parse_infer
from serving.server import InferenceServer

Context = Any  # grpc.aio.ServicerContext
Method = Callable[[Any, Any, Context], Awaitable[Any]]


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes are not the protobuf message its method takes."""

    method: str


def tolerant(deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    """`deserialize`, giving an `Undecodable` for bytes it cannot read (raising there would
    end the call UNKNOWN, with a traceback in the log)."""
    def read(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError:
            return Undecodable(method)
    return read


def guarded(method: Method) -> Method:
    """Check the request and the token, then answer; a failure ends the call with its code
    and message."""
    @functools.wraps(method)
    async def wrapped(self: InferenceService, request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"the request is not a valid {request.method} message")
        metadata = dict(context.invocation_metadata() or ())
        if not self.server.authorized(metadata.get("authorization")):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            return await method(self, request, context)
        except (RequestError, MFStoreError) as err:
            failure = request_error(err)
            await context.abort(grpc_code(failure.status), failure.message)
    return wrapped


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, server: InferenceServer) -> None:
        self.server = server

    async def ServerLive(self, request: Any, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    @guarded
    async def ModelReady(self, request: Any, context: Context) -> pb.ModelReadyResponse:
        try:
            self.server.model(request.name, request.version or None)
        except RequestError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @guarded
    async def ServerMetadata(self, request: Any, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.server.server_metadata())

    @guarded
    async def ModelMetadata(self, request: Any, context: Context) -> pb.ModelMetadataResponse:
        meta = self.server.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]])

    @guarded
    async def ModelConfig(self, request: Any, context: Context) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(
            config=self.server.model_config(request.name, request.version or None))

    @guarded
    async def ModelStatistics(self, request: Any,
                              context: Context) -> pb.ModelStatisticsResponse:
        stats = await self.server.all_statistics(request.name, request.version)
        return pb.ModelStatisticsResponse(model_stats=[s.to_proto() for s in stats])

    @guarded
    async def ModelInfer(self, request: Any, context: Context) -> pb.ModelInferResponse:
        model = self.server.model(request.model_name, request.model_version or None)
        with model.answering():
            parsed = parse_infer(request, model)
            return encode_response(model, parsed, await model.infer(parsed))

    @guarded
    async def RepositoryIndex(self, request: Any,
                              context: Context) -> pb.RepositoryIndexResponse:
        rows = self.server.repository.index(request.ready)
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows])

    @guarded
    async def RepositoryModelLoad(self, request: Any,
                                  context: Context) -> pb.RepositoryModelLoadResponse:
        if any(parameter(v) is not None for v in request.parameters.values()):
            raise RequestError(400, "loading with a configuration or files given in the "
                                    "request is not supported; change the model's folder and "
                                    "load it again")
        await self.server.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @guarded
    async def RepositoryModelUnload(self, request: Any,
                                    context: Context) -> pb.RepositoryModelUnloadResponse:
        await self.server.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def grpc_server(server: InferenceServer, reuse_port: bool = False) -> grpc.aio.Server:
    """A gRPC server for `server`, its message size limited like REST's request body. Its port
    is its own unless `reuse_port` (the processes of `serve --workers` share one)."""
    limit = min(server.max_request_bytes, (1 << 31) - 1)
    service = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                       ("grpc.max_send_message_length", -1),
                                       ("grpc.so_reuseport", int(reuse_port))])
    capture = _Handlers()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(server),
                                                                capture)
    handlers = {name: _handler(name, h) for name, h in capture.handlers.items()}
    service.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(capture.name, handlers),))
    service.add_registered_method_handlers(capture.name, handlers)
    return service


class _Handlers:
    """Receives the method handlers the generated code registers, to adjust them first."""

    def __init__(self) -> None:
        self.name, self.handlers = "", dict[str, Any]()

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, name: str, handlers: dict[str, Any]) -> None:
        self.name, self.handlers = name, handlers


def _handler(name: str, handler: Any) -> Any:
    """`handler` reading its request tolerantly; a method the service does not offer ends
    the call UNIMPLEMENTED without raising (the generated default raises, which is logged)."""
    handler = handler._replace(request_deserializer=tolerant(handler.request_deserializer,
                                                             name))
    if getattr(InferenceService, name) is not getattr(
            service_pb2_grpc.GRPCInferenceServiceServicer, name):
        return handler

    async def unimplemented(request: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{name} is not offered by this server")

    kind = "stream_stream" if handler.request_streaming else "unary_unary"
    return handler._replace(**{kind: unimplemented})
