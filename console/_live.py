"""LISTEN pp_alerts once per console process and fan notifications out to live-feed clients.

Each client gets a bounded queue (`sse_queue`). A client too slow to keep up is not allowed to
hold memory: its queue is cleared and it receives one `resync` marker, after which the page
reloads the list from the API. The listener reconnects with backoff when the database goes away
and sends `resync` to everyone when it is back (notifications may have been missed meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["RESYNC", "AlertHub", "Subscription"]

log = logging.getLogger("console.live")

RESYNC: dict[str, Any] = {"resync": True}


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[dict[str, Any] | None]
    dropped: int = 0
    closed: bool = field(default=False)

    def offer(self, item: dict[str, Any] | None) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC if item is not None else None)


class AlertHub:
    """Owns the LISTEN connection. `run()` is a task of the app's TaskGroup; `stop()` ends it."""

    def __init__(self, dsn: str, queue_size: int) -> None:
        self._dsn = dsn
        self._size = queue_size
        self._subs: set[Subscription] = set()
        self._stop = asyncio.Event()
        self.listening = asyncio.Event()

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.Queue(self._size))
        if self._stop.is_set():
            sub.offer(None)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        self._subs.discard(sub)

    @property
    def clients(self) -> int:
        return len(self._subs)

    def publish(self, payload: dict[str, Any]) -> None:
        for sub in list(self._subs):
            sub.offer(payload)

    def stop(self) -> None:
        self._stop.set()
        for sub in list(self._subs):
            sub.offer(None)

    async def run(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await conn.execute("LISTEN pp_alerts")
                    self.listening.set()
                    if not first:
                        self.publish(RESYNC)
                    first, backoff = False, 0.5
                    while not self._stop.is_set():
                        async for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning(
                    "alert listener lost the database (%s); retrying in %.1f s", type(exc).__name__, backoff
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
        self.listening.clear()

    def _deliver(self, raw: str) -> None:
        try:
            payload = json.loads(raw)
            payload["alert_id"] = int(payload["alert_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("pp_alerts: ignored a notification that is not an alert event")
            return
        self.publish(payload)
