"""`serve --workers N`: N server processes on one port, watched by the process that started
them (the supervisor).

The supervisor binds the REST port (a port in use, even by another server's processes, is a
one-line refusal before any model loads) and shares that one socket with every process, as
gunicorn does: a process that dies leaves the others accepting. The gRPC port, which gRPC
binds itself, is shared with SO_REUSEPORT and held by the supervisor until every process has
bound it. Each process (`python -m serving.workers`, in a session of its own, stopped by the
kernel if the supervisor dies) loads every model itself and serves REST and gRPC exactly as a
single server does; the port takes connections once the first process serves, "listening"
is announced once all do, and the first that fails to start fails the start with its error.
Through the supervisor (serving.siblings) the processes add their statistics and /metrics,
and carry out repository load / unload in every ready process; the supervisor remembers those
requests and repeats them to a process it starts later. A process that dies is replaced at
once if it had served a while, else after a pause that doubles; after `MAX_FAILED_STARTS` failed
starts in a row the server stops with the last error. SIGINT or SIGTERM stops every process,
each finishing its requests (the supervisor relays until they have exited). Each process batches
its own requests and polls the sources for new versions on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from typing import Any

from mfstore import errors
from mfstore.errors import ConfigError, MFStoreError, one_line
from mfstore.fixes import Fix
from serving.launch import ServeSpec, announced, build_server, run, serve
from serving.listening import bind
from serving.siblings import NO_REPLY, Siblings, receive, send

log = logging.getLogger("mfstore.serving")
MAX_WORKERS = 256
STOP_GRACE_S = 20.0  # uvicorn's own graceful shutdown is 10 s, gRPC's 5 s
RESTART_PAUSE_S = 5.0  # before replacing a process that died before serving this long
MAX_PAUSE_S = 60.0
MAX_FAILED_STARTS = 5
CONTROL_TIMEOUT_S = 30.0  # a process that takes no message for this long is hung
REPOSITORY_OPS = ("load", "unload")


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
    process: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    ready: bool = False
    generation: int = 0  # starts so far
    started: float = 0.0
    restart_at: float | None = None
    failed_starts: int = 0  # in a row
    last_error: str = ""
    seen: int = 0  # repository requests made before it started


@dataclass
class _Broadcast:
    origin: _Worker
    generation: int  # the origin's, when it asked
    key: int  # the origin's
    waiting: set[int]
    replies: list[Any] = field(default_factory=list)


class Supervisor:
    def __init__(self, spec: ServeSpec, rest: socket.socket, count: int) -> None:
        self.spec, self.rest = spec, rest
        self.workers = [_Worker(i) for i in range(count)]
        self.broadcasts: dict[int, _Broadcast] = {}
        self.next_key = 0
        self.requested: dict[str, tuple[int, str]] = {}  # model -> (order, load or unload)
        self.orders = 0  # repository requests so far
        self.stopping = False

    def start(self) -> None:
        """Start every process and wait until all serve; the first failure is raised."""
        for w in self.workers:
            self._spawn(w)
        while not all(w.ready for w in self.workers):
            self._turn(starting=True)

    def supervise(self) -> None:
        """Relay requests between processes and replace the ones that die, until stopped."""
        while not self.stopping:
            self._turn()
            now = time.monotonic()
            for w in self.workers:
                if w.process is None and w.restart_at is not None and now >= w.restart_at:
                    self._spawn(w)

    def stop(self) -> None:
        """SIGTERM to every process, relaying while they finish; SIGKILL after the grace."""
        self.stopping = True
        for w in self.workers:
            if w.process is not None and w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(w.process is not None for w in self.workers) and (
                time.monotonic() < deadline):
            self._turn()
        for w in self.workers:
            if w.process is not None:
                log.error("server process %d did not stop in %.0f s: killed", w.index,
                          STOP_GRACE_S)
                w.process.kill()
                self._reap(w)
        self.rest.close()

    def _turn(self, starting: bool = False) -> None:
        if starting and self.stopping:
            raise KeyboardInterrupt
        for w in self._readable(0.25):
            message = self._receive(w)
            if message is None:
                if starting and not self.stopping:
                    raise MFStoreError(f"server process {w.index} exited with code "
                                       f"{self._reap(w)} while starting")
                self._died(w)
            elif message[0] == "failed" and starting:
                if self.stopping:
                    raise KeyboardInterrupt
                raise _rebuilt(*message[1:])
            else:
                self._handle(w, message)

    def _spawn(self, w: _Worker) -> None:
        mine, theirs = socket.socketpair()
        w.process = subprocess.Popen(
            [sys.executable, "-m", "serving.workers", str(theirs.fileno()),
             str(self.rest.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(), self.rest.fileno()), start_new_session=True)
        theirs.close()
        mine.settimeout(CONTROL_TIMEOUT_S)
        w.control = mine
        w.ready, w.started, w.restart_at = False, time.monotonic(), None
        w.generation += 1
        w.seen = self.orders
        requests = [(op, (name,)) for name, (_, op) in sorted(
            self.requested.items(), key=lambda item: item[1][0])]
        self._send(w, (self.spec.to_record(), w.index, requests))

    def _readable(self, timeout: float) -> list[_Worker]:
        by_control = {w.control: w for w in self.workers if w.control is not None}
        if not by_control:
            time.sleep(timeout)
            return []
        return [by_control[c] for c in wait(list(by_control), timeout)]  # type: ignore[index]

    def _receive(self, w: _Worker) -> Any:
        assert w.control is not None
        try:
            return receive(w.control)
        except (EOFError, OSError, ValueError):  # it exited, hangs mid-message, or sent
            # what is not a message: done with it
            return None

    def _send(self, w: _Worker, message: Any) -> None:
        if w.control is None:
            return
        try:
            send(w.control, message)
        except OSError as err:  # dying (its end of file comes next) or hung
            if isinstance(err, TimeoutError) and w.process is not None:
                log.error("server process %d takes no messages: killed", w.index)
                w.process.kill()

    def _handle(self, w: _Worker, message: Any) -> None:
        kind = message[0]
        if kind == "ask":
            _, key, op, args = message
            if op in REPOSITORY_OPS:
                self.orders += 1
                self.requested.pop(args[0], None)
                self.requested[args[0]] = (self.orders, op)
            ours, self.next_key = self.next_key, self.next_key + 1
            ready = [v for v in self.workers if v.ready and v.control is not None]
            self.broadcasts[ours] = _Broadcast(w, w.generation, key, {v.index for v in ready})
            for v in ready:
                self._send(v, ("do", ours, op, args))
            self._finish(ours)
        elif kind == "reply":
            _, ours, reply = message
            broadcast = self.broadcasts.get(ours)
            if broadcast is not None and w.index in broadcast.waiting:
                broadcast.waiting.discard(w.index)
                broadcast.replies.append(reply)
                self._finish(ours)
        elif kind == "ready":
            self._ready(w)
        elif kind == "failed":
            w.last_error = message[2]
            log.error("server process %d failed to start: %s", w.index, message[2])

    def _ready(self, w: _Worker) -> None:
        w.ready, w.failed_starts = True, 0
        for name, (order, op) in sorted(self.requested.items(), key=lambda i: i[1][0]):
            if order > w.seen:  # made while it started: it has not heard of it
                self._send(w, ("do", NO_REPLY, op, (name,)))
        if w.generation > 1:
            log.info("server process %d replaced and ready", w.index)

    def _finish(self, ours: int) -> None:
        broadcast = self.broadcasts[ours]
        if broadcast.waiting:
            return
        del self.broadcasts[ours]
        if broadcast.origin.generation == broadcast.generation:
            self._send(broadcast.origin, ("done", broadcast.key, broadcast.replies))

    def _died(self, w: _Worker) -> None:
        code, was_ready = self._reap(w), w.ready
        w.ready = False
        for ours, broadcast in list(self.broadcasts.items()):
            if broadcast.origin is w:
                del self.broadcasts[ours]
            elif w.index in broadcast.waiting:
                broadcast.waiting.discard(w.index)
                self._finish(ours)
        if self.stopping:
            return
        if was_ready and time.monotonic() - w.started >= RESTART_PAUSE_S:
            w.restart_at, pause = time.monotonic(), 0.0
        else:
            w.failed_starts += 1
            if w.failed_starts >= MAX_FAILED_STARTS:
                raise MFStoreError(f"server process {w.index} failed {w.failed_starts} times "
                                   f"in a row (exit code {code}"
                                   + (f": {w.last_error}" if w.last_error else "")
                                   + "); stopping")
            pause = min(RESTART_PAUSE_S * 2 ** (w.failed_starts - 1), MAX_PAUSE_S)
            w.restart_at = time.monotonic() + pause
        log.error("server process %d exited with code %s; starting another%s", w.index, code,
                  f" in {pause:.0f} s" if pause else "")

    def _reap(self, w: _Worker) -> int | None:
        if w.control is not None:
            w.control.close()
        w.control = None
        process, w.process = w.process, None
        if process is None:
            return None
        try:  # its control socket closed: it has exited or is about to
            return process.wait(1)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _rebuilt(kind: str, message: str, fixes: list[dict[str, Any]]) -> MFStoreError:
    """A server process's start-up error, as the same class of error here."""
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, MFStoreError)):
        cls = MFStoreError
    return cls(message, *(Fix.from_dict(f) for f in fixes))


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


def _free_port(host: str, port: int, what: str) -> int:
    """`port` (or, for 0, a free port), checked free with a socket that does not share it: a
    port another server holds, even one sharing it among its own processes, is refused."""
    with bind(host, port, listen=False, what=what) as probe:
        return int(probe.getsockname()[1])


def serve_workers(spec: ServeSpec, count: int,
                  on_listening: Callable[[str, str | None], None]) -> None:
    """Serve with `count` processes on the port of `spec.listen` until SIGINT or SIGTERM
    (KeyboardInterrupt when stopped before every process was ready)."""
    check_workers(count)
    listen = spec.listen
    rest = bind(listen.host, listen.port, listen=False)  # the first process to serve listens
    held = None
    if listen.grpc_port is not None:  # held until every process has bound it
        try:
            grpc_port = _free_port(listen.host, listen.grpc_port, "gRPC port")
            held = bind(listen.host, grpc_port, reuse_port=True, listen=False,
                        what="gRPC port")
        except ConfigError:
            rest.close()
            raise
        listen = replace(listen, grpc_port=grpc_port)
    if spec.runtime.threads is None:
        spec = replace(spec, runtime=replace(spec.runtime, threads=per_worker_threads(count)))
    supervisor = Supervisor(replace(spec, listen=listen), rest, count)
    try:
        with _stop_on_signals(supervisor):
            try:
                supervisor.start()
            finally:
                if held is not None:
                    held.close()
            on_listening(f"http://{announced(listen.host, rest.getsockname()[1])}",
                         None if listen.grpc_port is None else
                         announced(listen.host, listen.grpc_port))
            supervisor.supervise()
    finally:
        supervisor.stop()


def _die_with_parent(parent: int) -> None:
    """Be sent SIGTERM when the supervisor dies (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(1)


def _worker(control_fd: int, rest_fd: int, parent: int) -> int:
    """One server process: build the server the supervisor describes, serve on `rest_fd`."""
    _die_with_parent(parent)
    control = socket.socket(fileno=control_fd)
    record, index, requests = receive(control)
    spec = ServeSpec.from_record(record)
    requests = [(op, tuple(args)) for op, args in requests]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rest = socket.socket(fileno=rest_fd)

    def tell(*message: Any) -> None:
        with contextlib.suppress(OSError):
            send(control, message)

    try:
        server = build_server(spec)
        siblings = server.siblings = Siblings(control, server.answer_sibling, requests)
        run(serve(server, spec.listen, lambda *_: siblings.tell(("ready",)), rest=rest))
    except MFStoreError as err:
        tell("failed", type(err).__name__, err.message, [f.to_dict() for f in err.fixes])
        return 1
    except Exception as err:  # reported to the supervisor, which stops
        log.exception("server process %d", index, exc_info=err)
        tell("failed", "MFStoreError", f"server process {index}: {one_line(err)}", ())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker(*map(int, sys.argv[1:4])))
