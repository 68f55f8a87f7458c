"""How `lmprint serve` holds its HTTP connections: a connection must send its request's head (the request line
and headers) within the keep-alive timeout of opening, or of its last response, or it is closed.

uvicorn times out a connection that stays idle after a response, but not one that never sends a request, or that
sends its headers a byte at a time: each such connection holds one of the `limit_concurrency` places of its
process until the client goes, and past them every other client gets 503. A web server's header timeout (nginx's
`client_header_timeout`, Apache's `RequestReadTimeout header=`) closes them; this is that, for uvicorn's h11
protocol. A body the application reads has the application's deadline (`ServeSettings.read_timeout_s`, 408); the
rest of one it answered without reading, this one.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline of `timeout_keep_alive` seconds for each request's head, counted
    from when the connection opens or its last answer is sent. A body still arriving after its answer (an upload
    answered 404 before it was read) must be in by then too, as nginx's `lingering_time` bounds reading what is
    thrown away: a client that sent a byte of it and then nothing kept its connection for ever."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle or self.transport.get_protocol() is not self:  # a request began, or a WebSocket
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def _waiting_for_head(self) -> bool:
        """Whether the connection waits for a request's head (or the rest of an answered request's body): no
        request running."""
        return (not self.transport.is_closing() and self.transport.get_protocol() is self
                and (self.cycle is None or self.cycle.response_complete))

    def _await_head(self) -> None:
        """Start the deadline, where the connection waits for a head and it has not started: a head arriving a
        byte at a time does not start it again."""
        if self._head_deadline is None and self._waiting_for_head():
            self._head_deadline = self.loop.call_later(self.timeout_keep_alive, self._head_late)

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        if self._waiting_for_head():
            self.transport.close()
