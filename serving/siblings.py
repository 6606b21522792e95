"""How one server process of `serve --workers N` reaches the others: through its supervisor
(serving.workers), over a local socket pair. A message is a 4-byte big-endian length and a
JSON array (plain data only: what a peer sends is never executed or unpickled).

    supervisor -> worker   (spec record, index, requests)  at start: what to build; the load and
                                                     unload requests made so far, to repeat
    worker -> supervisor   ("ask", key, op, args)    do `op` in every ready process, me too
    supervisor -> worker   ("do", key, op, args)     do it here (key -1: no reply wanted)
    worker -> supervisor   ("reply", key, (ok, value or (status, message)))
    supervisor -> worker   ("done", key, replies)    every ready process's reply
    worker -> supervisor   ("ready",)  or  ("failed", error class, message, fixes)

On the worker's event loop the socket is read and written through asyncio streams (never a
blocking call on the loop); the supervisor uses blocking calls with a timeout. A worker that
loses its supervisor stops as on SIGTERM (finishing its requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from mfstore.errors import MFStoreError
from serving.errors import RequestError, request_error

log = logging.getLogger("mfstore.serving")
HEADER = struct.Struct("!I")
Answer = Callable[[str, tuple[Any, ...]], Awaitable[Any]]
Reply = tuple[bool, Any]  # (True, value) or (False, (status, message))
TIMEOUTS = {"statistics": 30.0}  # seconds; loading takes as long as it takes
LOAD_TIMEOUT = 3600.0
NO_REPLY = -1


def frame(message: Any) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


def send(sock: socket.socket, message: Any) -> None:
    """Blocking send of one message."""
    sock.sendall(frame(message))


def receive(sock: socket.socket) -> Any:
    """Blocking receive of one message; EOFError when the other end has closed."""
    (size,) = HEADER.unpack(_exactly(sock, HEADER.size))
    return json.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


async def _answer_safely(answer: Answer, op: str, args: tuple[Any, ...]) -> Reply:
    try:
        return True, await answer(op, args)
    except (RequestError, MFStoreError) as err:
        failure = request_error(err)
        return False, (failure.status, failure.message)
    except Exception as err:  # the asking process answers 500 with it
        log.exception("answering another server process", exc_info=err)
        return False, (500, f"internal error: {err}")


class Siblings:
    """The other server processes on this port, as seen from one of them."""

    def __init__(self, control: socket.socket, answer: Answer,
                 requests: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.control, self.answer, self.requests = control, answer, requests
        self.keys = itertools.count()
        self.waiting: dict[int, asyncio.Future[list[Reply]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.writer: asyncio.StreamWriter | None = None
        self.gone = self.closing = False

    async def start(self) -> None:
        """Repeat the load / unload requests made before this process started, then listen
        to the supervisor on the running loop."""
        for op, args in self.requests:
            ok, value = await _answer_safely(self.answer, op, args)
            if not ok:
                log.error("repeating %s %s: %s", op, args[0], value[1])
        reader, self.writer = await asyncio.open_unix_connection(sock=self.control)
        self._spawn(self._listen(reader))

    def tell(self, message: Any) -> None:
        """Send without waiting (the stream buffers it)."""
        if self.writer is not None and not self.gone:
            self.writer.write(frame(message))

    def close(self) -> None:
        self.closing = True
        for task in self.tasks:
            task.cancel()
        if self.writer is not None:
            self.writer.close()
        self._lost()

    async def everyone(self, op: str, *args: Any) -> list[Any]:
        """Every ready server process's answer to `op(*args)`, this one's included; the first
        failure among them is raised."""
        if self.gone:
            raise RequestError(503, "the server is stopping")
        key = next(self.keys)
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        try:
            self.tell(("ask", key, op, args))
            replies = await asyncio.wait_for(future, TIMEOUTS.get(op, LOAD_TIMEOUT))
        except TimeoutError:
            raise RequestError(503, f"the server processes did not all answer ({op})") from None
        finally:
            self.waiting.pop(key, None)
        for ok, value in replies:
            if not ok:
                raise RequestError(*value)
        return [value for _, value in replies]

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
                message = json.loads(await reader.readexactly(size))
                if message[0] == "do":
                    self._spawn(self._do(message[1], message[2], tuple(message[3])))
                elif message[0] == "done":
                    future = self.waiting.get(message[1])
                    if future is not None and not future.done():
                        future.set_result(message[2])
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            if not self.closing:
                log.error("the supervising process is gone: stopping")
                self._lost()
                signal.raise_signal(signal.SIGTERM)

    async def _do(self, key: int, op: str, args: tuple[Any, ...]) -> None:
        reply = await _answer_safely(self.answer, op, args)
        if key != NO_REPLY:
            with contextlib.suppress(ConnectionError):
                self.tell(("reply", key, reply))

    def _lost(self) -> None:
        self.gone = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(RequestError(503, "the server is stopping"))
