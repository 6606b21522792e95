"""Binding a listening socket, for the inference server and the web UI: a port or address that
cannot be listened on is one `ConfigError` naming the option to change (`--port` for a port
out of range, taken or forbidden; `--host` for an address that does not resolve or is not
this machine's)."""

from __future__ import annotations

import errno
import socket

from mfstore.errors import ConfigError, option

PORT_ERRORS = {errno.EADDRINUSE, errno.EACCES}  # the port is the trouble; otherwise the host


def check_port(port: int, what: str = "port") -> int:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {port} does not exist: use 1..65535, or 0 for any free port")
    return port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a `ConfigError` saying why not."""
    check_port(port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"cannot listen on {host}: {err.strerror}", option("host")) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        blamed = "port" if err.errno in PORT_ERRORS else "host"
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}",
                          option(blamed)) from None
    return sock
