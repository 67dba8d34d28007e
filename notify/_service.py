"""`parkpulse notify serve`: intake and composition in one task, delivery in another, each on its
own database connection; an optional `/healthz` and `/metrics` endpoint. No threads of its own
(SMTP sends run in the loop's default executor, which asyncio.run shuts down)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import orjson
import psycopg

from notify._compose import compose_once
from notify._deliver import Deliverer
from notify._intake import ensure_cursor, take_events
from notify._settings import NotifySettings
from parkpulse.redact import redact_text

__all__ = ["NotifyService", "ServiceStats"]

log = logging.getLogger("parkpulse.notify")


@dataclass
class ServiceStats:
    events: int = 0
    items: int = 0
    messages: dict[str, int] = field(default_factory=lambda: {"single": 0, "group": 0, "digest": 0})
    errors: int = 0


class NotifyService:
    def __init__(self, settings: NotifySettings) -> None:
        self.s = settings
        self.stats = ServiceStats()
        self.stop = asyncio.Event()
        self.deliverer = Deliverer(settings, self.stop)
        self.http_port: int | None = None
        self.db_ok = False

    async def run(self) -> None:
        server = await self._serve_http() if self.s.http_port is not None else None
        try:
            await asyncio.gather(
                self._forever("intake", self._pipeline), self._forever("deliver", self._delivery)
            )
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()

    async def _forever(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run a task until stop; a database or network failure is logged (redacted) and retried."""
        while not self.stop.is_set():
            try:
                await body()
            except (psycopg.Error, OSError, httpx.HTTPError) as exc:
                self.stats.errors += 1
                self.db_ok = False
                log.warning("%s: %s (restarting in 1 s)", name, redact_text(f"{type(exc).__name__}: {exc}"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 1.0)

    async def _pipeline(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.s.dsn(), autocommit=True) as conn:
            await ensure_cursor(conn, self.s.start)
            await conn.execute("LISTEN pp_alerts")
            self.db_ok = True
            rules, url = self.s.rules(), self.s.public_console_url()
            blocked: dict[int, datetime] = {}
            while not self.stop.is_set():
                n, items = await take_events(conn)
                self.stats.events += n
                self.stats.items += items
                for p in await compose_once(conn, rules, url, blocked=blocked):
                    self.stats.messages[p.form] += 1
                if n == 0:
                    await self._wait(conn)

    async def _wait(self, conn: psycopg.AsyncConnection) -> None:
        """Until a NOTIFY on pp_alerts, the poll interval, or stop."""
        waiter = asyncio.ensure_future(self.stop.wait())
        try:
            gen = conn.notifies(timeout=self.s.poll_s, stop_after=1)
            notified = asyncio.ensure_future(_drain(gen))
            await asyncio.wait({waiter, notified}, return_when=asyncio.FIRST_COMPLETED)
            if not notified.done():
                notified.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await notified
        finally:
            waiter.cancel()

    async def _delivery(self) -> None:
        async with (
            await psycopg.AsyncConnection.connect(self.s.dsn(), autocommit=True) as conn,
            httpx.AsyncClient(timeout=self.s.send_timeout_s, trust_env=False) as client,
        ):
            while not self.stop.is_set():
                if await self.deliverer.run_once(conn, client) == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), min(self.s.poll_s, 0.5))

    async def _serve_http(self) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, self.s.http_host, self.s.http_port)
        self.http_port = int(server.sockets[0].getsockname()[1])
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            path = line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "/"
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            if path.startswith("/metrics"):
                status, ctype, body = (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    (await self.metrics_text()).encode(),
                )
            elif path.startswith("/healthz"):
                doc = {"status": "ok" if self.db_ok else "degraded", "database": self.db_ok}
                status = "200 OK" if self.db_ok else "503 Service Unavailable"
                ctype, body = "application/json", orjson.dumps(doc)
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, OSError, psycopg.Error, IndexError):
            pass
        finally:
            writer.close()

    async def metrics_text(self) -> str:
        st, d = self.stats, self.deliverer.stats
        lines = [
            *_metric("events_total", "counter", "alert events taken from alert_events", st.events),
            *_metric("items_total", "counter", "(event, recipient) items created", st.items),
            "# HELP parkpulse_notify_messages_total messages composed, by form",
            "# TYPE parkpulse_notify_messages_total counter",
            *(f'parkpulse_notify_messages_total{{form="{k}"}} {v}' for k, v in st.messages.items()),
            *_metric("sent_total", "counter", "messages the channel accepted", d.sent),
            *_metric("failed_attempts_total", "counter", "delivery attempts that failed", d.failed_attempts),
            *_metric("dead_total", "counter", "messages given up", d.dead),
            *_metric("errors_total", "counter", "task errors (the task was restarted)", st.errors),
        ]
        lines += await self._channel_metrics()
        return "\n".join(lines) + "\n"

    async def _channel_metrics(self) -> list[str]:
        try:
            async with await psycopg.AsyncConnection.connect(self.s.dsn(), autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT channel_id, kind, status, failures_in_row, pending FROM v_notify_channel_health"
                )
                rows = await cur.fetchall()
        except psycopg.Error:
            return []
        out = [
            "# HELP parkpulse_notify_channel_up 1 when the channel's last attempts succeeded (status ok)",
            "# TYPE parkpulse_notify_channel_up gauge",
        ]
        out += [
            f'parkpulse_notify_channel_up{{channel="{c}",kind="{k}"}} {int(s == "ok")}'
            for c, k, s, _, _ in rows
        ]
        out += [
            "# HELP parkpulse_notify_channel_failures_in_row failed attempts since the last success",
            "# TYPE parkpulse_notify_channel_failures_in_row gauge",
        ]
        out += [f'parkpulse_notify_channel_failures_in_row{{channel="{c}"}} {f}' for c, _, _, f, _ in rows]
        out += [
            "# HELP parkpulse_notify_channel_pending messages waiting for the channel",
            "# TYPE parkpulse_notify_channel_pending gauge",
        ]
        out += [f'parkpulse_notify_channel_pending{{channel="{c}"}} {p}' for c, _, _, _, p in rows]
        return out


def _metric(name: str, typ: str, help_: str, value: int) -> list[str]:
    full = f"parkpulse_notify_{name}"
    return [f"# HELP {full} {help_}", f"# TYPE {full} {typ}", f"{full} {value}"]


async def _drain(gen: object) -> None:
    async for _ in gen:  # type: ignore[attr-defined]
        pass
