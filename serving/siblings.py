"""How one server process of `serve --workers N` reaches the others: through its supervisor
(serving.workers), over a local socket pair, with pickled messages.

    worker -> supervisor   ("ask", key, op, args)    do `op` in every ready process, me too
    supervisor -> worker   ("do", key, op, args)     do it here, then
    worker -> supervisor   ("reply", key, (ok, value or (status, message)))
    supervisor -> worker   ("done", key, replies)    every ready process's reply
    worker -> supervisor   ("ready",)  or  ("failed", error class, message, fixes)

A process that loses its supervisor stops as on SIGTERM (finishing its requests).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from mfstore.errors import MFStoreError
from serving.errors import RequestError, request_error

log = logging.getLogger("mfstore.serving")
Answer = Callable[[str, tuple[Any, ...]], Awaitable[Any]]
Reply = tuple[bool, Any]  # (True, value) or (False, (status, message))
TIMEOUTS = {"statistics": 30.0}  # seconds; loading may take as long as it takes
LOAD_TIMEOUT = 3600.0


class Siblings:
    """The other server processes on this port, as seen from one of them."""

    def __init__(self, conn: Connection, answer: Answer) -> None:
        self.conn, self.answer = conn, answer
        self.keys = itertools.count()
        self.waiting: dict[int, asyncio.Future[list[Reply]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.gone = False

    def start(self) -> None:
        """Listen to the supervisor on the running loop."""
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._readable)

    def close(self) -> None:
        if not self.gone:
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
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
            self.conn.send(("ask", key, op, args))
            replies = await asyncio.wait_for(future, TIMEOUTS.get(op, LOAD_TIMEOUT))
        except TimeoutError:
            raise RequestError(503, f"the server processes did not all answer ({op})") from None
        finally:
            self.waiting.pop(key, None)
        for ok, value in replies:
            if not ok:
                raise RequestError(*value)
        return [value for _, value in replies]

    def _readable(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            log.error("the supervising process is gone: stopping")
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self._lost()
            signal.raise_signal(signal.SIGTERM)
            return
        if message[0] == "do":
            task = asyncio.create_task(self._do(*message[1:]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif message[0] == "done":
            future = self.waiting.get(message[1])
            if future is not None and not future.done():
                future.set_result(message[2])

    async def _do(self, key: int, op: str, args: tuple[Any, ...]) -> None:
        reply: Reply
        try:
            reply = (True, await self.answer(op, args))
        except (RequestError, MFStoreError) as err:
            failure = request_error(err)
            reply = (False, (failure.status, failure.message))
        except Exception as err:  # the asking process answers 500 with it
            log.exception("answering another server process", exc_info=err)
            reply = (False, (500, f"internal error: {err}"))
        if not self.gone:
            try:
                self.conn.send(("reply", key, reply))
            except OSError:
                self._lost()

    def _lost(self) -> None:
        self.gone = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(RequestError(503, "the server is stopping"))
