"""A deadline for a request's headers on the REST port: a client that opens a connection and
sends its request line and headers slowly (slowloris) is cut off once `seconds` pass without
a complete set of headers, instead of holding the connection for ever. uvicorn's own
keep-alive timeout covers only an idle connection; once a byte arrives it waits as long as
the client likes. Bodies are not timed (a large upload may be slow)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

DEFAULT_SECONDS = 30.0


def header_deadline(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11, as it chooses), closing a connection whose
    next request's headers are not complete within `seconds` of its first byte (or of the
    connection opening)."""
    base: Any = AutoHTTPProtocol

    class HeaderDeadline(base):  # a subclass of whichever class uvicorn chose
        def connection_made(self, transport: Any) -> None:
            self._deadline: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            self._arm()

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before and not self._waiting_for_headers():
                self._disarm()  # this request's headers are complete
            elif self._waiting_for_headers():
                self._arm()  # the next request began: its headers are timed

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm()  # idle now: uvicorn's keep-alive timeout applies

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline
