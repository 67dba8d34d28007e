"""Read deadlines for the console's HTTP server (slowloris and slow-body protection).

uvicorn's only read timeout is the keep-alive timer, which runs between requests and is reset by
every byte received; a connection that trickles a request line, or never sends anything, or
announces a body and stalls, is kept open for ever (uvicorn issue #157 lists the missing
request-start and request-complete timeouts). `guarded_h11` returns uvicorn's h11 protocol with
two absolute deadlines per request:

- headers: from the connection (or from the first byte of the next request on a kept-alive
  connection) until the request line and all headers are in;
- body: from the end of the headers until the whole body is in.

On expiry the connection gets `408 Request Timeout` (when no response was started) and is closed.
Responses, including the long-lived live feed, are never limited: the deadlines cover reading
the request only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "guarded_h11"]

_TIMEOUT_BODY = b"request not received in time\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a body deadline (class attributes)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._guarding: str | None = None  # "headers" | "body" | None

    # asyncio.Protocol / uvicorn hooks --------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # narrowed as in uvicorn H11Protocol
        super().connection_made(transport)
        self._arm("headers")  # even a connection that never sends a byte

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle time
        self._disarm()
        self._follow_state(idle_ok=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # deadlines ---------------------------------------------------------------------------------
    def _follow_state(self, idle_ok: bool = False) -> None:
        """Guard whatever part of the request h11 is still waiting for."""
        if self.transport is None or self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # waiting for a request line and headers; on an idle kept-alive connection (no byte
            # of the next request yet) uvicorn's keep-alive timer is the guard
            if not idle_ok and self._guarding != "headers":
                self._arm("headers")
        elif state is h11.SEND_BODY:
            if self._guarding != "body":
                self._arm("body")
        else:
            self._disarm()

    def _arm(self, what: str) -> None:
        self._disarm()
        delay = self.header_timeout_s if what == "headers" else self.body_timeout_s
        self._guarding = what
        self._deadline = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._guarding = None

    def _expired(self) -> None:
        what = self._guarding
        self._deadline, self._guarding = None, None
        if self.transport.is_closing():
            return
        limit = self.header_timeout_s if what == "headers" else self.body_timeout_s
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        self.logger.warning(
            "closing connection from %s: request %s not received within %g s", peer, what, limit
        )
        cycle = self.cycle if what == "body" else None
        if cycle is None or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        if cycle is not None:
            cycle.disconnected = True  # the app sees http.disconnect; its late writes are dropped
            cycle.message_event.set()
        self.transport.close()


def guarded_h11(header_timeout_s: float, body_timeout_s: float) -> type[GuardedH11Protocol]:
    """The protocol class to pass as uvicorn's `http=`, with these deadlines."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": float(header_timeout_s), "body_timeout_s": float(body_timeout_s)},
    )
