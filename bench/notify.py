"""Notification benchmark: 1,000 alerts in one minute to 50 subscribers, through the grouping.

A fresh database; 5 parks; 50 console users, each an inspector of every park with an SMS contact
on a local SMS stand-in (an HTTP server in this process); the notification service in this
process (`NotifyService`). Alerts are raised through the alert engine's own `pp_alert_fire`,
spread evenly over the minute, over 5 parks × 4 kinds, 0.5 % of them critical.

Compressed clock: with `--scale N` the minute and every window of the rules (the grouping window,
the rate window) are divided by N, so the run shows the same shape N times faster; latencies are
printed as measured and multiplied back by N ("model" seconds). Default N = 10.

Printed: messages sent against the baseline of one message per alert and recipient (the ratio is
the storm reduction), the largest number of non-critical messages any recipient got within one
rate window (must be ≤ the limit), and the p50 / p95 from the alert's event to its receipt at the
stand-in, for critical and for all items. Last line: JSON.

    python bench/notify.py [--alerts 1000] [--subscribers 50] [--scale 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psycopg

from notify import NotifyService, NotifySettings, add_channel, add_contact, add_subscription, parse_channel
from parkpulse.db import migrate, server_dsn

KINDS = ("emission", "data_gap", "threshold", "tamper")


class SmsStandIn:
    """Records (receipt time, out_id) of every SMS posted to it."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with lock:
                    received.append((time.time(), str(body["out_id"])))
                data = b'{"code": "OK"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog (5) resets connections under 32 concurrent sends

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/sms"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def setup(dsn: str, sms_url: str, subscribers: int) -> None:
    with psycopg.connect(dsn) as conn:
        for p in range(5):
            conn.execute("INSERT INTO parks (park_id, name) VALUES (%s, %s)", (f"park-{p}", f"园区{p}"))
        ch = parse_channel(
            "sms",
            "sms",
            {
                "url": sms_url,
                "headers": {"Authorization": "Bearer $secret_api_key"},
                "body": {"mobile": "$phone", "params": {"text": "$text"}, "out_id": "$idempotency_key"},
            },
            {"api_key": "bench-key-0123"},
        )
        add_channel(conn, ch)
        for u in range(subscribers):
            user = f"user-{u:02d}"
            conn.execute("INSERT INTO console_users (user_name, password_hash) VALUES (%s, 'x')", (user,))
            for p in range(5):
                conn.execute(
                    "INSERT INTO console_roles (user_name, role, park_id) VALUES (%s, 'inspector', %s)",
                    (user, f"park-{p}"),
                )
            add_contact(conn, channel_id="sms", user_name=user, address=f"+861380000{u:04d}")
        add_subscription(conn, role="inspector", min_severity="info")


async def fire_all(dsn: str, n: int, duration_s: float) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + duration_s * i / n - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = KINDS[i % len(KINDS)]
            sev = "critical" if i % 200 == 0 else "warning"
            park = f"park-{(i // 4) % 5}"
            await conn.execute(
                """SELECT pp_alert_fire(%s, 1, %s, %s, %s, NULL, NULL, NULL, NULL, %s, 1.0, 0.5, NULL, %s, %s, NULL)""",
                (f"bench-{kind}", kind, sev, park, f"subject-{i}", f"告警 {i}", f"alert {i}"),
            )


async def run(dsn: str, args: argparse.Namespace, standin: SmsStandIn) -> dict[str, Any]:
    s = NotifySettings(
        database_url=dsn,
        start="beginning",
        poll_s=0.1,
        group_window_s=60.0 / args.scale,
        rate_limit=6,
        rate_window_s=600.0 / args.scale,
        concurrency=32,
    )
    svc = NotifyService(s)
    task = asyncio.ensure_future(svc.run())
    t0 = time.monotonic()
    await fire_all(dsn, args.alerts, 60.0 / args.scale)
    fired_s = time.monotonic() - t0
    # then until every item is delivered (held ones go out as digests when the rate window frees)
    deadline = time.monotonic() + 2 * 600.0 / args.scale + 60
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute(
                """SELECT (SELECT count(*) FROM notify_items i LEFT JOIN notify_messages m USING (message_id)
                           WHERE m.state IS DISTINCT FROM 'sent'),
                          (SELECT count(*) FROM notify_items)"""
            )
            waiting, items = (await cur.fetchone()) or (1, 0)
            if items >= args.alerts * args.subscribers and waiting == 0:
                break
            await asyncio.sleep(0.5)
    total_s = time.monotonic() - t0
    svc.stop.set()
    await task
    return {"fired_s": fired_s, "total_s": total_s}


def measure(dsn: str, args: argparse.Namespace, standin: SmsStandIn) -> dict[str, Any]:
    got = dict((key, at) for at, key in standin.received)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT m.idempotency_key, extract(epoch FROM i.event_at), m.critical
               FROM notify_items i JOIN notify_messages m USING (message_id)"""
        ).fetchall()
        forms: dict[str, int] = dict(
            conn.execute("SELECT form, count(*) FROM notify_messages GROUP BY form").fetchall()
        )
        phases = conn.execute(
            """SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM i.taken_at - i.event_at)),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM m.created_at - i.taken_at)),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM m.sent_at - m.created_at))
               FROM notify_items i JOIN notify_messages m USING (message_id) WHERE m.critical"""
        ).fetchone()
        max_in_window = conn.execute(
            """SELECT coalesce(max(n), 0) FROM (
                 SELECT count(*) OVER (PARTITION BY contact_id ORDER BY created_at
                                       RANGE BETWEEN make_interval(secs => %s) PRECEDING AND CURRENT ROW) AS n
                 FROM notify_messages WHERE NOT critical) w""",
            (600.0 / args.scale,),
        ).fetchone()
    lat_all = [got[k] - float(ev) for k, ev, _ in rows if k in got]
    lat_crit = [got[k] - float(ev) for k, ev, c in rows if k in got and c]
    sent = len(standin.received)
    baseline = args.alerts * args.subscribers
    return {
        "messages_sent": sent,
        "baseline_messages": baseline,
        "reduction_ratio": round(baseline / sent, 1) if sent else None,
        "forms": forms,
        "items": len(rows),
        "delivered_items": len(lat_all),
        "max_noncritical_in_rate_window": int(max_in_window[0]) if max_in_window else 0,
        "rate_limit": 6,
        "within_limits": bool(max_in_window and max_in_window[0] <= 6),
        "latency_p50_s": round(pct(lat_all, 50), 3),
        "latency_p95_s": round(pct(lat_all, 95), 3),
        "critical_latency_p50_s": round(pct(lat_crit, 50), 3),
        "critical_latency_p95_s": round(pct(lat_crit, 95), 3),
        "critical_p95_phases_s": {
            k: round(float(v), 3)
            for k, v in zip(("intake", "compose", "send"), phases or (), strict=False)
            if v is not None
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--scale", type=float, default=10.0, help="clock compression (1 = a real minute)")
    ap.add_argument("--server", default="postgresql://127.0.0.1:5432/postgres")
    args = ap.parse_args()
    name = f"pp_bench_notify_{uuid.uuid4().hex[:8]}"
    dsn = server_dsn(args.server, name)
    migrate(dsn, prefer="plain")
    standin = SmsStandIn()
    try:
        setup(dsn, standin.url, args.subscribers)
        times = asyncio.run(run(dsn, args, standin))
        res = measure(dsn, args, standin) | {k: round(v, 1) for k, v in times.items()}
    finally:
        standin.close()
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    res |= {"alerts": args.alerts, "subscribers": args.subscribers, "scale": args.scale}
    print(
        f"{args.alerts} alerts in {60 / args.scale:.0f} s (a minute compressed ×{args.scale:g}) to "
        f"{args.subscribers} subscribers: {res['messages_sent']} messages sent vs {res['baseline_messages']} "
        f"without grouping (÷{res['reduction_ratio']}); forms {res['forms']}"
    )
    print(
        f"largest non-critical count in one rate window per recipient: {res['max_noncritical_in_rate_window']} "
        f"(limit 6) → within limits: {res['within_limits']}"
    )
    print(
        f"alert → stand-in, all {res['delivered_items']} items: p50 {res['latency_p50_s']} s, p95 "
        f"{res['latency_p95_s']} s (model: ×{args.scale:g} = {res['latency_p95_s'] * args.scale:.0f} s); critical: "
        f"p50 {res['critical_latency_p50_s']} s, p95 {res['critical_latency_p95_s']} s (not compressed: sent at once); "
        f"ratio p95 all / critical {res['latency_p95_s'] / res['critical_latency_p95_s']:.0f}"
    )
    print(orjson.dumps(res).decode())


if __name__ == "__main__":
    main()
