"""A tiny HTTP endpoint of the engine: `/healthz` (JSON) and `/metrics` (Prometheus text).

Served on the engine's own event loop (asyncio.start_server, no threads); off unless
`PARKPULSE_ALERTS_HTTP_PORT` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson

from alerts._stats import EngineStats

__all__ = ["health_doc", "metrics_text", "serve_http"]

_HELP = {
    "batches": "data batches evaluated",
    "rejected_batches": "data batches refused (bad envelope)",
    "statuses": "gateway status messages seen",
    "fired": "alerts fired",
    "cleared": "alerts resolved automatically",
    "refreshed": "open alerts whose value was refreshed",
    "events_published": "alert events published on MQTT",
    "webhooks_delivered": "webhook deliveries acknowledged by the receiver",
    "errors": "task errors (the task was restarted)",
}


def metrics_text(stats: EngineStats, queue_depth: int, open_alerts: int) -> str:
    lines: list[str] = []
    for k, v in asdict(stats).items():
        name = f"parkpulse_alerts_{k}_total"
        lines += [f"# HELP {name} {_HELP.get(k, k)}", f"# TYPE {name} counter", f"{name} {v}"]
    lines += [
        "# HELP parkpulse_alerts_queue_depth batches waiting for evaluation",
        "# TYPE parkpulse_alerts_queue_depth gauge",
        f"parkpulse_alerts_queue_depth {queue_depth}",
        "# HELP parkpulse_alerts_open open alerts tracked by this engine",
        "# TYPE parkpulse_alerts_open gauge",
        f"parkpulse_alerts_open {open_alerts}",
    ]
    return "\n".join(lines) + "\n"


def health_doc(stats: EngineStats, subscribed: bool, queue_depth: int, queue_size: int) -> dict[str, Any]:
    ok = subscribed and queue_depth < queue_size
    return {
        "status": "ok" if ok else "degraded",
        "mqtt_subscribed": subscribed,
        "queue_depth": queue_depth,
        "queue_size": queue_size,
        "stats": asdict(stats),
    }


async def serve_http(
    host: str, port: int, health: Callable[[], dict[str, Any]], metrics: Callable[[], str]
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/healthz":
                doc = health()
                body, ctype = orjson.dumps(doc), "application/json"
                status = "200 OK" if doc["status"] == "ok" else "503 Service Unavailable"
            elif path == "/metrics":
                body, ctype, status = metrics().encode(), "text/plain; version=0.0.4", "200 OK"
            else:
                body, ctype, status = b"not found\n", "text/plain", "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
