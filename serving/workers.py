"""`serve --workers N`: N server processes on one port, watched by the process that started
them (the supervisor).

The supervisor binds N REST sockets on the port with SO_REUSEPORT (the kernel spreads new
connections over them) and holds the gRPC port the same way, so a port that cannot be had is a
one-line refusal before any model loads. Each process (`python -m serving.workers`) gets its
socket, loads every model itself and serves REST (and gRPC, on the shared port) exactly as a
single server does; "listening" is announced once every process is ready, and the first
process that fails to start fails the whole start with its error. Statistics and /metrics are
added over the processes, and repository load / unload is carried out in all of them, through
the supervisor (serving.siblings). A process that dies is replaced (its socket is kept, so the
connections queued on it wait for its successor); SIGINT or SIGTERM stops every process, each
finishing its requests. Each process batches its own requests and polls the sources for new
versions on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from mfstore import errors
from mfstore.errors import ConfigError, MFStoreError, one_line
from serving.launch import ServeSpec, announced, build_server, run, serve
from serving.listening import bind
from serving.siblings import Siblings

log = logging.getLogger("mfstore.serving")
MAX_WORKERS = 256
STOP_GRACE_S = 20.0  # uvicorn's own graceful shutdown is 10 s, gRPC's 5 s
RESTART_PAUSE_S = 5.0  # before replacing a process that died soon after it started


def check_workers(count: int) -> int:
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"the number of server processes must lie in 1..{MAX_WORKERS}, "
                          f"got {count}")
    return count


def per_worker_threads(count: int) -> int:
    """ONNX Runtime intra-op threads for each of `count` processes: the cores shared out (a
    single server takes up to 4)."""
    return max(1, min(os.cpu_count() or 1, 4 * count) // count)


@dataclass
class _Worker:
    index: int
    rest: socket.socket
    process: subprocess.Popen[bytes] | None = None
    conn: Connection | None = None
    ready: bool = False
    started: float = 0.0
    restart_at: float | None = None


@dataclass
class _Broadcast:
    origin: _Worker
    key: int  # the origin's
    waiting: set[int]
    replies: list[Any] = field(default_factory=list)


class Supervisor:
    def __init__(self, spec: ServeSpec, sockets: list[socket.socket]) -> None:
        self.spec = spec
        self.workers = [_Worker(i, s) for i, s in enumerate(sockets)]
        self.broadcasts: dict[int, _Broadcast] = {}
        self.next_key = 0
        self.stopping = False

    def start(self) -> None:
        """Start every process and wait until all serve; the first failure is raised."""
        for w in self.workers:
            self._spawn(w)
        while not all(w.ready for w in self.workers):
            if self.stopping:
                raise KeyboardInterrupt
            for w in self._readable(0.25):
                message = self._receive(w)
                if message is None:
                    raise MFStoreError(f"server process {w.index} exited with code "
                                       f"{self._reap(w)} while starting")
                if message[0] == "failed":
                    raise _rebuilt(*message[1:])
                if message[0] == "ready":
                    w.ready = True

    def supervise(self) -> None:
        """Relay requests between processes and replace the ones that die, until stopped."""
        while not self.stopping:
            for w in self._readable(0.25):
                message = self._receive(w)
                if message is None:
                    self._died(w)
                else:
                    self._handle(w, message)
            now = time.monotonic()
            for w in self.workers:
                if w.process is None and w.restart_at is not None and now >= w.restart_at:
                    self._spawn(w)

    def stop(self) -> None:
        """SIGTERM to every process; SIGKILL to those still running after the grace."""
        self.stopping = True
        running = [w for w in self.workers if w.process is not None]
        for w in running:
            assert w.process is not None
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
            if w.conn is not None:
                w.conn.close()
                w.conn = None
        deadline = time.monotonic() + STOP_GRACE_S
        for w in running:
            assert w.process is not None
            try:
                w.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("server process %d did not stop in %.0f s: killed", w.index,
                          STOP_GRACE_S)
                w.process.kill()
                w.process.wait()
        for w in self.workers:
            w.rest.close()

    def _spawn(self, w: _Worker) -> None:
        mine, theirs = socket.socketpair()
        w.process = subprocess.Popen(
            [sys.executable, "-m", "serving.workers", str(theirs.fileno()),
             str(w.rest.fileno())], pass_fds=(theirs.fileno(), w.rest.fileno()))
        theirs.close()
        w.conn = Connection(mine.detach())
        w.conn.send((self.spec, w.index))
        w.ready, w.started, w.restart_at = False, time.monotonic(), None

    def _readable(self, timeout: float) -> list[_Worker]:
        by_conn = {w.conn: w for w in self.workers if w.conn is not None}
        return [by_conn[c] for c in wait(list(by_conn), timeout)]  # type: ignore[index]

    def _receive(self, w: _Worker) -> Any:
        assert w.conn is not None
        try:
            return w.conn.recv()
        except (EOFError, OSError):
            return None

    def _send(self, w: _Worker, message: Any) -> None:
        if w.conn is None:
            return
        with contextlib.suppress(OSError):  # it is dying; its end of file comes next
            w.conn.send(message)

    def _handle(self, w: _Worker, message: Any) -> None:
        kind = message[0]
        if kind == "ask":
            _, key, op, args = message
            ours, self.next_key = self.next_key, self.next_key + 1
            ready = [v for v in self.workers if v.ready and v.conn is not None]
            self.broadcasts[ours] = _Broadcast(w, key, {v.index for v in ready})
            for v in ready:
                self._send(v, ("do", ours, op, args))
        elif kind == "reply":
            _, ours, reply = message
            broadcast = self.broadcasts.get(ours)
            if broadcast is not None and w.index in broadcast.waiting:
                broadcast.waiting.discard(w.index)
                broadcast.replies.append(reply)
                self._finish(ours)
        elif kind == "ready":
            w.ready = True
            log.info("server process %d replaced and ready", w.index)
        elif kind == "failed":
            log.error("server process %d failed to start: %s", w.index, message[2])

    def _finish(self, ours: int) -> None:
        broadcast = self.broadcasts[ours]
        if not broadcast.waiting:
            del self.broadcasts[ours]
            self._send(broadcast.origin, ("done", broadcast.key, broadcast.replies))

    def _died(self, w: _Worker) -> None:
        code = self._reap(w)
        quick = time.monotonic() - w.started < RESTART_PAUSE_S
        log.error("server process %d exited with code %s; starting another%s", w.index, code,
                  f" in {RESTART_PAUSE_S:.0f} s" if quick else "")
        w.restart_at = time.monotonic() + (RESTART_PAUSE_S if quick else 0.0)
        for ours, broadcast in list(self.broadcasts.items()):
            if w.index in broadcast.waiting:
                broadcast.waiting.discard(w.index)
                self._finish(ours)
            elif broadcast.origin is w:
                del self.broadcasts[ours]

    def _reap(self, w: _Worker) -> int | None:
        if w.conn is not None:
            w.conn.close()
        w.conn, w.ready = None, False
        process, w.process = w.process, None
        if process is None:
            return None
        try:
            return process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _rebuilt(kind: str, message: str, fixes: tuple[errors.Fix, ...]) -> MFStoreError:
    """A server process's start-up error, as the same class of error here."""
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, MFStoreError)):
        cls = MFStoreError
    return cls(message, *fixes)


@contextlib.contextmanager
def _stop_on_signals(supervisor: Supervisor) -> Iterator[None]:
    def stop(*_: Any) -> None:
        supervisor.stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_workers(spec: ServeSpec, count: int,
                  on_listening: Callable[[str, str | None], None]) -> None:
    """Serve with `count` processes on the port of `spec.listen` until SIGINT or SIGTERM
    (KeyboardInterrupt when stopped before every process was ready)."""
    check_workers(count)
    listen = spec.listen
    port = _free_port(listen.host, listen.port, "port")
    sockets = [bind(listen.host, port, reuse_port=True) for _ in range(count)]
    held = None
    if listen.grpc_port is not None:  # held until every process has bound it
        grpc_port = _free_port(listen.host, listen.grpc_port, "gRPC port")
        held = bind(listen.host, grpc_port, reuse_port=True, listen=False, what="gRPC port")
        listen = replace(listen, grpc_port=grpc_port)
    if spec.runtime.threads is None:
        spec = replace(spec, runtime=replace(spec.runtime, threads=per_worker_threads(count)))
    supervisor = Supervisor(replace(spec, listen=listen), sockets)
    try:
        with _stop_on_signals(supervisor):
            try:
                supervisor.start()
            finally:
                if held is not None:
                    held.close()
            on_listening(f"http://{announced(listen.host, port)}",
                         None if listen.grpc_port is None else
                         announced(listen.host, listen.grpc_port))
            supervisor.supervise()
    finally:
        supervisor.stop()


def _free_port(host: str, port: int, what: str) -> int:
    """`port` (or, for 0, a free port), checked free with a socket that does not share it: a
    port that another server holds, even one sharing it among its own processes, is refused
    rather than joined."""
    with bind(host, port, listen=False, what=what) as probe:
        return int(probe.getsockname()[1])


def _worker(control_fd: int, rest_fd: int) -> int:
    """One server process: build the server the supervisor describes, serve on `rest_fd`."""
    conn = Connection(control_fd)
    spec, index = conn.recv()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rest = socket.socket(fileno=rest_fd)
    try:
        server = build_server(spec)
        server.siblings = Siblings(conn, server.answer_sibling)
        run(serve(server, spec.listen, lambda *_: conn.send(("ready",)), rest=rest))
    except MFStoreError as err:
        conn.send(("failed", type(err).__name__, err.message, err.fixes))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # reported to the supervisor, which stops
        log.exception("server process %d", index, exc_info=err)
        conn.send(("failed", "MFStoreError", f"server process {index}: {one_line(err)}", ()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker(int(sys.argv[1]), int(sys.argv[2])))
