"""Local HTTP: `/metrics` (Prometheus text) and `/healthz` (JSON), on a small asyncio server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["render_metrics", "serve"]


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(gw: Gateway) -> str:
    """Prometheus text exposition format 0.0.4."""
    out: list[str] = []

    def metric(
        name: str, kind: str, help_: str, samples: Sequence[tuple[dict[str, str], float | int | None]]
    ) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    g = {"gateway": gw.cfg.gateway.id}
    up = gw.uplink
    metric("parkpulse_gateway_up", "gauge", "1 while the gateway runs", [(g, 1)])
    metric(
        "parkpulse_gateway_uplink_connected",
        "gauge",
        "1 when connected to the broker",
        [(g, int(bool(up and up.connected)))],
    )
    metric(
        "parkpulse_gateway_uplink_connects_total",
        "counter",
        "successful broker connections",
        [(g, up.connects if up else 0)],
    )
    metric(
        "parkpulse_gateway_uplink_disconnects_total",
        "counter",
        "lost broker connections",
        [(g, up.disconnects if up else 0)],
    )
    metric(
        "parkpulse_gateway_batches_sealed_total",
        "counter",
        "batches written to the spool",
        [(g, gw.batches_sealed)],
    )
    metric(
        "parkpulse_gateway_batches_acked_total",
        "counter",
        "batches acknowledged by the broker",
        [(g, gw.batches_acked)],
    )
    metric(
        "parkpulse_gateway_inflight_batches",
        "gauge",
        "published batches awaiting PUBACK",
        [(g, len(gw._inflight))],
    )
    metric(
        "parkpulse_gateway_readings_total",
        "counter",
        "readings produced by all sources",
        [(g, gw.readings_in)],
    )
    metric(
        "parkpulse_gateway_spool_depth_batches",
        "gauge",
        "batches waiting in the spool",
        [(g, gw.spool.depth)],
    )
    metric("parkpulse_gateway_spool_bytes", "gauge", "payload bytes in the spool", [(g, gw.spool.bytes)])
    metric("parkpulse_gateway_spool_max_bytes", "gauge", "size bound of the spool", [(g, gw.spool.max_bytes)])
    metric(
        "parkpulse_gateway_spool_dropped_readings_total",
        "counter",
        "readings thinned out of a full spool",
        [(g, gw.spool.dropped_readings)],
    )
    metric(
        "parkpulse_gateway_spool_write_errors_total",
        "counter",
        "failed spool writes (disk full, read-only)",
        [(g, gw.spool_errors)],
    )
    metric(
        "parkpulse_gateway_memory_dropped_readings_total",
        "counter",
        "readings dropped while the spool was unwritable",
        [(g, gw.memory_dropped)],
    )
    metric("parkpulse_gateway_last_seq", "gauge", "last sequence number assigned", [(g, gw.spool.last_seq)])
    metric(
        "parkpulse_gateway_spool_acked_batches",
        "gauge",
        "acknowledged batches kept for resend requests",
        [(g, gw.spool.acked)],
    )
    metric(
        "parkpulse_gateway_spool_acked_bytes",
        "gauge",
        "bytes of acknowledged batches kept",
        [(g, gw.spool.acked_bytes)],
    )
    metric(
        "parkpulse_gateway_spool_evicted_batches_total",
        "counter",
        "acknowledged batches evicted from the spool (a tombstone remains)",
        [(g, gw.spool.evicted)],
    )
    metric(
        "parkpulse_gateway_resend_requests_total",
        "counter",
        "resend requests received, by outcome",
        [({**g, "outcome": k}, v) for k, v in sorted(gw.resend_requests.items())],
    )
    metric(
        "parkpulse_gateway_resend_batches_total",
        "counter",
        "batches re-sent on request (kind=batch: as first sent; kind=evicted: empty, with the gap of what was lost)",
        [({**g, "kind": k}, v) for k, v in sorted(gw.resend_batches.items())],
    )
    metric(
        "parkpulse_gateway_counter_events_total",
        "counter",
        "counter steps flagged (reset, rollover, replaced, jump)",
        [(g, gw.counters.events)],
    )
    stats = gw.device_stats()

    def per(name: str, kind: str, help_: str, attr: str) -> None:
        metric(
            name,
            kind,
            help_,
            [({**g, "device": s.device, "source": s.source}, getattr(s, attr)) for s in stats],
        )

    per("parkpulse_gateway_device_polls_total", "counter", "poll attempts", "polls")
    per("parkpulse_gateway_device_ok_total", "counter", "successful polls / messages", "ok")
    per(
        "parkpulse_gateway_device_transport_errors_total",
        "counter",
        "timeouts and connection failures",
        "transport_errors",
    )
    per(
        "parkpulse_gateway_device_exception_errors_total",
        "counter",
        "Modbus exception replies",
        "exception_errors",
    )
    per(
        "parkpulse_gateway_device_decode_errors_total",
        "counter",
        "payloads that could not be mapped",
        "decode_errors",
    )
    per("parkpulse_gateway_device_overruns_total", "counter", "polls that ran past the next slot", "overruns")
    per(
        "parkpulse_gateway_device_missed_slots_total",
        "counter",
        "poll slots skipped after an overrun",
        "missed_slots",
    )
    per(
        "parkpulse_gateway_device_consecutive_failures",
        "gauge",
        "failures since the last success",
        "consecutive_failures",
    )
    metric(
        "parkpulse_gateway_device_poll_latency_ms",
        "gauge",
        "duration of the last poll",
        [({**g, "device": s.device, "source": s.source}, s.last_latency_ms) for s in stats],
    )
    lags = []
    for s in stats:
        vals = sorted(s.lags_ms)
        if vals:
            lags.append(
                (
                    {**g, "device": s.device, "source": s.source},
                    round(vals[min(len(vals) - 1, int(0.99 * len(vals)))], 3),
                )
            )
    metric(
        "parkpulse_gateway_device_poll_lag_p99_ms",
        "gauge",
        "99th percentile of poll start lag (recent polls)",
        lags,
    )
    details = gw.source_details()
    metric(
        "parkpulse_gateway_source_events_total",
        "counter",
        "what a receiving source counted (connections, packets by kind, refusals …)",
        [
            ({**g, "source": name, "event": event}, n)
            for name, d in details.items()
            for event, n in sorted((d.get("counts") or {}).items())
        ],
    )
    metric(
        "parkpulse_gateway_source_dead_letters_total",
        "counter",
        "packets a receiving source refused and wrote to its dead letters",
        [({**g, "source": name}, (d.get("dead_letters") or {}).get("total")) for name, d in details.items()],
    )
    return "\n".join(out) + "\n"


async def serve(gw: Gateway, listen: str) -> asyncio.Server:
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            while True:
                h = await asyncio.wait_for(reader.readline(), 5.0)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            target = parts[1] if len(parts) >= 2 else "/"
            path, _, query = target.partition("?")
            params = dict(p.partition("=")[::2] for p in query.split("&") if p)
            if path == "/metrics":
                body = render_metrics(gw).encode()
                status, ctype = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
            elif path == "/healthz":
                try:
                    window = float(params["lag_window_s"]) if "lag_window_s" in params else None
                except ValueError:
                    window = None
                health = gw.health(window)
                body = orjson.dumps(health)
                status = "200 OK" if health["status"] != "failing" else "503 Service Unavailable"
                ctype = "application/json"
            else:
                body, status, ctype = b'{"error":"not found"}', "404 Not Found", "application/json"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host.strip("[]"), int(port))
