"""Starting a server: load the models, bind the ports (a port that cannot be bound is a
one-line refusal, and nothing says "listening" before both are bound), then serve REST
(uvicorn) and gRPC (`grpc.aio`) on one event loop, polling the sources for new versions, until
SIGINT or SIGTERM; then stop taking connections, finish the requests under way, and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn

from mfstore.errors import ConfigError
from mfstore.workspace import Workspace
from serving.app import create_app
from serving.grpc_service import grpc_server
from serving.header_timeout import DEFAULT_SECONDS as DEFAULT_HEADER_SECONDS
from serving.header_timeout import header_deadline
from serving.listening import BACKLOG, bind, check_port
from serving.model_config import BatchingOptions
from serving.repository import Repository, model_sources
from serving.server import InferenceServer
from serving.sessions import RuntimeOptions


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port
    grpc_port: int | None = None  # None: no gRPC; 0: any free port
    poll_seconds: float = 0.0  # 0: never look for new versions
    header_timeout: float = DEFAULT_HEADER_SECONDS  # a REST request's headers, at most

    def __post_init__(self) -> None:
        if not (math.isfinite(self.header_timeout) and 0 < self.header_timeout <= 3600):
            raise ConfigError(f"the header timeout must lie in (0, 3600] seconds, got "
                              f"{self.header_timeout}")
        check_port(self.port)
        if self.grpc_port is not None:
            check_port(self.grpc_port, "gRPC port")
        if not (math.isfinite(self.poll_seconds) and self.poll_seconds >= 0):
            raise ConfigError(f"the polling interval must be a number of seconds >= 0 (0: "
                              f"never), got {self.poll_seconds}")


@dataclass(frozen=True)
class ServeSpec:
    """Everything a server process needs to build its server; plain data, so that
    `serve --workers` can hand it to each process it starts."""
    listen: Listen
    model_repo: str | None = None
    networks: tuple[str, ...] = ()  # NET, NET@VERSION, NET@ALIAS
    locations: tuple[str | None, str | None, str | None] = (None, None, None)  # home,
    # registry, store: the workspace the networks are read from
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    token: str | None = None
    max_request_bytes: int = 64 << 20

    def to_record(self) -> dict[str, Any]:
        """Plain data (JSON), for the processes `serve --workers` starts."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ServeSpec:
        return cls(Listen(**record["listen"]), record["model_repo"], tuple(record["networks"]),
                   tuple(record["locations"]),
                   RuntimeOptions(**record["runtime"]), BatchingOptions(**record["batching"]),
                   record["token"], record["max_request_bytes"])


def build_server(spec: ServeSpec) -> InferenceServer:
    """The server `spec` describes, its models not loaded yet."""
    sources, roots = model_sources(spec.model_repo, list(spec.networks),
                                   lambda: Workspace.open(*spec.locations))
    return InferenceServer(Repository(sources, roots, spec.runtime, spec.batching),
                           spec.token, spec.max_request_bytes)


def request_limit(megabytes: float) -> int:
    """The largest request body in bytes, from a size in MiB."""
    if not (math.isfinite(megabytes) and megabytes > 0):
        raise ConfigError(f"the request size limit must be a positive number of MB, got "
                          f"{megabytes}")
    return max(int(megabytes * (1 << 20)), 1)


class _Uvicorn(uvicorn.Server):
    """uvicorn, told to stop by the loop's signal handlers rather than its own (which re-raise
    the signal once it has stopped, ending the process before gRPC has)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve(server: InferenceServer, listen: Listen,
                on_listening: Callable[[str, str | None], None],
                rest: socket.socket | None = None) -> None:
    """Load, bind, announce (`on_listening(rest_url, grpc_address)`), serve until a signal.
    `rest`: a socket already listening (`serve --workers` binds them; the gRPC port is then
    shared with the other processes)."""
    await server.repository.start()
    shared = rest is not None
    if rest is not None:
        rest.listen(BACKLOG)  # shared: the first process to get here opens the port
    else:
        rest = bind(listen.host, listen.port)
    grpc_service, grpc_address = None, None
    if listen.grpc_port is not None:
        grpc_service = grpc_server(server, reuse_port=shared)
        grpc_address = _bind_grpc(grpc_service, listen.host, listen.grpc_port)
    if server.siblings is not None:
        await server.siblings.start()
    web = _Uvicorn(uvicorn.Config(create_app(server), http=header_deadline(listen.header_timeout),
                                  log_level="warning", access_log=False,
                                  lifespan="off", proxy_headers=False, server_header=False,
                                  date_header=False, timeout_graceful_shutdown=10))
    poller = asyncio.create_task(server.repository.poll(listen.poll_seconds)) \
        if listen.poll_seconds > 0 else None
    try:
        if grpc_service is not None:
            await grpc_service.start()
        on_listening(f"http://{announced(listen.host, rest.getsockname()[1])}", grpc_address)
        with _stop_on_signals(lambda: setattr(web, "should_exit", True)):
            await web.serve(sockets=[rest])
    finally:
        if server.siblings is not None:
            server.siblings.close()
        if poller is not None:
            poller.cancel()
        if grpc_service is not None:
            await grpc_service.stop(grace=5)
        server.repository.close()


def announced(host: str, port: int) -> str:
    """A host and port as URLs and gRPC targets write them."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_grpc(service: Any, host: str, port: int) -> str:
    check_port(port, "gRPC port")
    address = f"[{host}]" if ":" in host else host
    try:
        bound = service.add_insecure_port(f"{address}:{port}")
    except RuntimeError as err:
        raise ConfigError(f"cannot listen for gRPC on {host}:{port}: {err}") from None
    if not bound:
        raise ConfigError(f"cannot listen for gRPC on {host}:{port}")
    return f"{address}:{bound}"


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop  # optional: uvicorn's faster loop where it is installed
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
