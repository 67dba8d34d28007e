"""Riding out a database switchover or failover: which errors call for a new connection, and
retrying an operation with backoff until it goes through.

Under a libpq multi-host URL with `target_session_attrs=read-write`, a connection never moves by
itself: when the primary dies or is demoted its connections break (or, on a demoted node that
kept them, refuse writes with `ReadOnlySqlTransaction`). Only a new connection finds the node that
now accepts writes. So the callers here drop their connection on such an error (`on_error`) and
run the whole operation again; the operation must be safe to repeat (an upsert, an idempotent
function, a transaction that rolled back).

Errors the server raised about the data itself (constraint, bad value, missing table) are not
retried: they propagate at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from parkpulse.errors import FieldError, StoreError
from parkpulse.redact import redact_text

__all__ = ["RECONNECT_ERRORS", "Backoff", "retry_async", "retry_sync", "wants_new_connection"]

log = logging.getLogger("parkpulse.reconnect")

T = TypeVar("T")

# lost or refused connections, a server shutting down or starting up, and a read-only session (a
# demoted primary): in every case a new connection is the way forward
RECONNECT_ERRORS: tuple[type[psycopg.Error], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)


def wants_new_connection(exc: BaseException) -> bool:
    """True for the errors after which the operation is retried on a new connection, including a
    StoreError raised for one (`parkpulse.db.connect`: no node accepted the connection)."""
    if isinstance(exc, StoreError):
        return isinstance(exc.__cause__, RECONNECT_ERRORS)
    return isinstance(exc, RECONNECT_ERRORS)


@dataclass
class Backoff:
    """Doubling delays from `min_s` to `max_s`; `reset()` after a success."""

    min_s: float = 0.2
    max_s: float = 5.0
    _next: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.min_s > 0:
            raise FieldError("backoff.min_s", self.min_s, "must be > 0")
        if not self.max_s >= self.min_s:
            raise FieldError("backoff.max_s", self.max_s, f"must be ≥ min_s ({self.min_s})")
        self._next = self.min_s

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.min_s


def _say(what: str, exc: BaseException, delay: float) -> None:
    # psycopg names host and port, not the password; redacted all the same (a StoreError may quote a DSN)
    log.warning(
        "%s: database unavailable (%s: %s); retrying on a new connection in %.1f s",
        what,
        type(exc).__name__,
        redact_text(str(exc).strip())[:200],
        delay,
    )


async def retry_async(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff | None = None,
    stop: asyncio.Event | None = None,
    on_error: Callable[[BaseException], Awaitable[None]] | None = None,
) -> T:
    """Await `op()` until it succeeds. After a reconnect error: `on_error(exc)` (drop the
    connection), wait the next backoff delay, try again. Gives up (re-raising the last error) only
    when `stop` is set; every other error propagates at once."""
    b = backoff or Backoff()
    while True:
        try:
            return await op()
        except Exception as exc:
            if not wants_new_connection(exc):
                raise
            if on_error is not None:
                await on_error(exc)
            if stop is not None and stop.is_set():
                raise
            delay = b.next()
            _say(what, exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


def retry_sync(
    op: Callable[[], T],
    *,
    what: str,
    within_s: float,
    backoff: Backoff | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> T:
    """Call `op()` until it succeeds; after a reconnect error wait and call it again, for at most
    `within_s` seconds from the first call (then the last error is raised). Other errors
    propagate at once."""
    if not within_s >= 0:
        raise FieldError("within_s", within_s, "must be ≥ 0")
    b = backoff or Backoff()
    deadline = time.monotonic() + within_s
    while True:
        try:
            return op()
        except Exception as exc:
            if not wants_new_connection(exc):
                raise
            if on_error is not None:
                on_error(exc)
            delay = b.next()
            if time.monotonic() + delay > deadline:
                raise
            _say(what, exc, delay)
            time.sleep(delay)
