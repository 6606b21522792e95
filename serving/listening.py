"""Binding a listening socket, for the inference server and the web UI: a port or address that
cannot be listened on is one `ConfigError` naming the option to change (`--port` for a port
out of range, taken or forbidden; `--host` for an address that does not resolve or is not
this machine's)."""

from __future__ import annotations

import errno
import socket

from mfstore.errors import ConfigError
from mfstore.fixes import option

PORT_ERRORS = {errno.EADDRINUSE, errno.EACCES}
BACKLOG = 2048  # the port is the trouble; otherwise the host


def check_port(port: int, what: str = "port") -> int:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {port} does not exist: use 1..65535, or 0 for any free port")
    return port


def bind(host: str, port: int, reuse_port: bool = False, listen: bool = True,
         what: str = "port") -> socket.socket:
    """A listening TCP socket on host:port, or a `ConfigError` saying why not. With
    `reuse_port`, other sockets of this user may bind the same port with it too (the kernel
    spreads connections over them: `serve --workers`); without `listen`, the socket only holds
    the port. `what`: the port's name in messages, "port" or "gRPC port"."""
    check_port(port, what)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"cannot listen on {host}: {err.strerror}", option("host")) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        if listen:
            sock.listen(BACKLOG)
    except OSError as err:
        sock.close()
        blamed = ("grpc-port" if what == "gRPC port" else "port") if (
            err.errno in PORT_ERRORS) else "host"
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(f"cannot listen on {where}: {err.strerror}",
                          option(blamed)) from None
    return sock
