"""Alert latency benchmark: readings that break a rule are published to the broker; the time until
the alert is stored and until its signed webhook is received is measured over many alerts.

Runs real processes: a private Mosquitto, `parkpulse ingest run` (stores the background readings,
if installed), `parkpulse alerts run`, and a local HTTP webhook receiver in this process. Alerts
alternate between a threshold rule (flue temperature above 250 °C) and a gap rule (the gateway's
last will: status offline); each is resolved again before its subject fires the next time.

    python bench/alerts.py [--alerts 200] [--gateways 20] [--background 20]

Last line: JSON {"alerts": n, "latency_p50_s": …, "latency_p95_s": …, …} (end-to-end = the webhook
received; the stored figures are in the same line).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the service packages (alerts/, ingest/) live at the repository root; make them importable when this
# file is run as a script (the editable install maps only the packages present when it was made)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from alerts.harness import WebhookReceiver, sample_park
from parkpulse.db import migrate, server_dsn
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker, ensure_postgres
from parkpulse.wire import alerts_topic, batch_payload, data_topic, status_payload, status_topic

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789abcdef"


def _scalar(conn: psycopg.Connection, sql: str, params: tuple[object, ...] = ()) -> Any:
    """The first column of the first row (queries here always return one)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row[0]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _proc(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "parkpulse"), *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        start_new_session=True,
    )


def _stop(p: subprocess.Popen[bytes] | None) -> None:
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=200)
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument(
        "--background", type=float, default=20.0, help="background readings per second per gateway"
    )
    ap.add_argument(
        "--admin-dsn",
        default=os.environ.get("PARKPULSE_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--no-ingest", action="store_true", help="do not start `parkpulse ingest run`")
    return ap.parse_args()


def _prepare_database(dsn: str, park: str, gateways: int) -> tuple[str, list[str]]:
    """A migrated database with a sample park and the bench's webhook; its firm and gateway ids."""
    migrate(dsn, prefer="plain")
    pf = sample_park(park, gateways=gateways)
    firm = pf.firms[0].id
    gws = [g.id for g in pf.firms[0].gateways]
    with psycopg.connect(dsn, autocommit=True) as conn:
        import_registry(conn, pf)
        conn.execute(
            "INSERT INTO webhook_subscriptions (name, url, secret, actions) VALUES ('bench', %s, %s, '{fired}')",
            ("http://127.0.0.1:1/placeholder", SECRET),
        )
    return firm, gws


def _child_env(dsn: str, mqtt_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PARKPULSE_DATABASE_URL": dsn,
        "PARKPULSE_MQTT_URL": mqtt_url,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PARKPULSE_ALERTS_PERIODIC_INTERVAL_S": "1",
        "PARKPULSE_ALERTS_PUBLISH_POLL_S": "1",
    }


def _engine_up(port: int, park: str) -> bool:
    """The engine is up once it has published the park's retained current-alerts topic (60 s at most)."""
    seen = threading.Event()
    watch = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{park}")
    watch.on_message = lambda c, u, m: seen.set()
    watch.connect("127.0.0.1", port)
    watch.subscribe(alerts_topic(park, "current"), qos=1)
    watch.loop_start()
    ok = seen.wait(60)
    watch.loop_stop()
    watch.disconnect()
    return ok


@dataclass
class _Publisher:
    """Publishes the park's gateways' batches (each with its own sequence) and statuses."""

    client: mqtt.Client
    park: str
    firm: str
    gws: list[str]
    seqs: dict[str, int] = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.seqs = dict.fromkeys(self.gws, 0)

    def send(self, gw: str, readings: list[list[Any]]) -> None:
        with self.lock:
            payload = batch_payload(gw, self.seqs[gw], readings)
            self.seqs[gw] += 1
            self.client.publish(data_topic(self.park, self.firm, gw), payload, qos=1)

    def status(self, gw: str, state: str) -> None:
        self.client.publish(
            status_topic(self.park, self.firm, gw), status_payload(gw, state), qos=1, retain=True
        )

    def fire(self, kind: str, gw: str, data_t: int) -> None:
        """Break the rule of `kind` for one gateway: a hot flue reading, or its last will."""
        if kind == "threshold":
            self.send(gw, [["cems-1", "flue_temp_c", data_t, 300.0, 0]])
        else:
            self.status(gw, "offline")

    def resolve(self, kind: str, gw: str, data_t: int) -> None:
        """Resolve the alert of `kind` again, so the next wave fires a new one for the same subject."""
        if kind == "threshold":
            self.send(
                gw,
                [
                    ["cems-1", "flue_temp_c", data_t + 1000, 200.0, 0],
                    ["cems-1", "flue_temp_c", data_t + 62_000, 200.0, 0],
                ],
            )
        else:
            self.status(gw, "online")

    def background(self, per_second: float, stop: threading.Event) -> None:
        """Normal meter readings (20 per second per gateway by default), stored by ingest."""
        n = max(1, int(per_second))
        while not stop.wait(1.0):
            ts = int(time.time() * 1000)
            for gw in self.gws:
                self.send(gw, [["meter-1", "active_power_kw", ts + i, 20.0 + i % 5, 0] for i in range(n)])


_RULE_OF_KIND = {"threshold": "flue-temp-high", "gap": "gateway-offline"}


@dataclass
class _Latencies:
    """Seconds from publishing to the alert stored, and to its webhook received, per kind of rule."""

    store: dict[str, list[float]] = field(default_factory=lambda: {"threshold": [], "gap": []})
    hook: dict[str, list[float]] = field(default_factory=lambda: {"threshold": [], "gap": []})


def _await_alerts(
    conn: psycopg.Connection, recv: WebhookReceiver, rule: str, since: int, n_hooks: int, n: int
) -> tuple[dict[str, float], dict[str, float]]:
    """When each gateway's new alert of `rule` was stored and its webhook received (60 s at most)."""
    deadline = time.monotonic() + 60
    stored: dict[str, float] = {}
    hooks: dict[str, float] = {}
    while time.monotonic() < deadline and (len(stored) < n or len(hooks) < n):
        for gid, opened in conn.execute(
            "SELECT gateway_id, extract(epoch FROM opened_at) FROM alerts WHERE alert_id > %s AND rule_id = %s",
            (since, rule),
        ):
            stored.setdefault(gid, float(opened))
        for r in recv.received[n_hooks:]:
            if r.body["alert"]["rule_id"] == rule and r.body["alert"]["alert_id"] > since:
                hooks.setdefault(r.body["alert"]["gateway_id"], r.at)
        time.sleep(0.02)
    return stored, hooks


def _await_resolved(conn: psycopg.Connection, rule: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _scalar(
        conn, "SELECT count(*) FROM alerts WHERE rule_id = %s AND state <> 'resolved'", (rule,)
    ):
        time.sleep(0.05)


def _wave(
    conn: psycopg.Connection,
    pub: _Publisher,
    recv: WebhookReceiver,
    wave: int,
    batch: list[str],
    data_t: int,
    lat: _Latencies,
) -> None:
    """Wave `wave` fires one alert per gateway of `batch` and times them, then resolves them again;
    even waves break the threshold rule, odd ones the gap rule."""
    kind = "threshold" if wave % 2 == 0 else "gap"
    rule = _RULE_OF_KIND[kind]
    since = _scalar(conn, "SELECT coalesce(max(alert_id), 0) FROM alerts")
    n_hooks = len(recv.received)
    sent: dict[str, float] = {}
    for gw in batch:
        sent[gw] = time.time()
        pub.fire(kind, gw, data_t)
    stored, hooks = _await_alerts(conn, recv, rule, since, n_hooks, len(batch))
    for gw in batch:
        if gw in stored:
            lat.store[kind].append(stored[gw] - sent[gw])
        if gw in hooks:
            lat.hook[kind].append(hooks[gw] - sent[gw])
    for gw in batch:
        pub.resolve(kind, gw, data_t)
    _await_resolved(conn, rule)
    print(
        f"wave {wave} {kind}: {len(batch)} alerts, stored {len(stored)}, webhooks {len(hooks)}",
        flush=True,
    )


def _run_waves(
    conn: psycopg.Connection, requested: int, pub: _Publisher, recv: WebhookReceiver
) -> _Latencies:
    """Waves alternate threshold and gap alerts over the gateways until `requested` alerts were fired."""
    lat = _Latencies()
    data_t = int(time.time() * 1000) - 4 * 3600_000  # past data time: ingest refuses readings from the future
    done = 0
    wave = 0
    while done < requested:
        batch = pub.gws[: min(len(pub.gws), requested - done)]
        data_t += 120_000
        _wave(conn, pub, recv, wave, batch, data_t, lat)
        done += len(batch)
        wave += 1
    return lat


def _result(a: argparse.Namespace, lat: _Latencies, n_readings: int, n_dead: int) -> dict[str, Any]:
    """The JSON line's figures; the end-to-end time is the webhook's arrival (sent after the commit)."""
    all_store = lat.store["threshold"] + lat.store["gap"]
    all_hook = lat.hook["threshold"] + lat.hook["gap"]
    e2e = all_hook  # the webhook is sent after the alert is committed: its arrival is the end-to-end time
    return {
        "alerts": len(all_hook),
        "latency_p50_s": round(pct(e2e, 50), 4),
        "latency_p95_s": round(pct(e2e, 95), 4),
        "stored": len(all_store),
        "store_p50_s": round(pct(all_store, 50), 4),
        "store_p95_s": round(pct(all_store, 95), 4),
        "threshold_p95_s": round(pct(lat.hook["threshold"], 95), 4),
        "gap_p95_s": round(pct(lat.hook["gap"], 95), 4),
        "max_s": round(max(all_hook), 4) if all_hook else None,
        "requested": a.alerts,
        "gateways": a.gateways,
        "readings_stored": n_readings,
        "dead_letters": n_dead,
        "ingest": not a.no_ingest,
    }


def _print_latencies(lat: _Latencies) -> None:
    store, hook = lat.store, lat.hook
    print(
        f"threshold: stored p50 {pct(store['threshold'], 50):.3f} s, webhook p95 {pct(hook['threshold'], 95):.3f} s; "
        f"gap: stored p50 {pct(store['gap'], 50):.3f} s, webhook p95 {pct(hook['gap'], 95):.3f} s"
    )


def _measure(a: argparse.Namespace, dsn: str, pub: _Publisher, recv: WebhookReceiver) -> dict[str, Any]:
    """Run the waves; the figures of the JSON line."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        lat = _run_waves(conn, a.alerts, pub, recv)
        time.sleep(1.0)
        n_readings = _scalar(conn, "SELECT count(*) FROM readings")
        n_dead = _scalar(conn, "SELECT count(*) FROM dead_letters")
        if n_dead:
            print("dead letters:", conn.execute("SELECT reason FROM dead_letters LIMIT 3").fetchall())
    result = _result(a, lat, n_readings, n_dead)
    _print_latencies(lat)
    return result


@dataclass
class _Rig:
    """What the benchmark starts, stopped again in reverse by `close`."""

    broker: MosquittoBroker
    recv: WebhookReceiver
    pub: _Publisher
    ingest: subprocess.Popen[bytes] | None = None
    alerts: subprocess.Popen[bytes] | None = None
    stop_bg: threading.Event = field(default_factory=threading.Event)
    bg_thread: threading.Thread | None = None

    def start_background(self, per_second: float) -> None:
        self.bg_thread = threading.Thread(
            target=self.pub.background, args=(per_second, self.stop_bg), name="bench-background", daemon=True
        )
        self.bg_thread.start()

    def close(self) -> None:
        self.stop_bg.set()
        if self.bg_thread is not None:
            self.bg_thread.join(5)
        with contextlib.suppress(Exception):
            self.pub.client.loop_stop()
            self.pub.client.disconnect()
        _stop(self.alerts)
        _stop(self.ingest)
        self.recv.stop()
        self.broker.close()


def main() -> int:
    a = _parse_args()
    ensure_postgres()
    park = "bench-" + uuid.uuid4().hex[:6]
    dbname = f"pp_bench_alerts_{os.getpid()}"
    dsn = server_dsn(a.admin_dsn, dbname)
    firm, gws = _prepare_database(dsn, park, a.gateways)

    broker = MosquittoBroker().start()
    recv = WebhookReceiver(SECRET).start()
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"pp-bench-alerts-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    env = _child_env(dsn, broker.url)
    pub = _Publisher(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{park}"), park, firm, gws)
    rig = _Rig(broker, recv, pub)
    result: dict[str, Any] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE webhook_subscriptions SET url = %s WHERE name = 'bench'", (recv.url,))
        if not a.no_ingest:
            rig.ingest = _proc(["ingest", "run", "--log-level", "WARNING"], env, logs / "ingest.log")
        rig.alerts = _proc(["alerts", "run", "--log-level", "WARNING"], env, logs / "alerts.log")
        pub.client.connect("127.0.0.1", broker.port)
        pub.client.loop_start()
        if not _engine_up(broker.port, park):
            print(
                "alert engine did not come up; log:",
                (logs / "alerts.log").read_text()[-2000:],
                file=sys.stderr,
            )
            return 1
        time.sleep(1.0)
        rig.start_background(a.background)
        result = _measure(a, dsn, pub, recv)
    finally:
        rig.close()
        with contextlib.suppress(Exception), psycopg.connect(a.admin_dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(orjson.dumps(result).decode())
    return 0 if result.get("alerts") == a.alerts else 1


if __name__ == "__main__":
    raise SystemExit(main())
