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


def main() -> int:
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
    a = ap.parse_args()

    ensure_postgres()
    park = "bench-" + uuid.uuid4().hex[:6]
    dbname = f"pp_bench_alerts_{os.getpid()}"
    dsn = server_dsn(a.admin_dsn, dbname)
    migrate(dsn, prefer="plain")
    pf = sample_park(park, gateways=a.gateways)
    firm = pf.firms[0].id
    gws = [g.id for g in pf.firms[0].gateways]
    with psycopg.connect(dsn, autocommit=True) as conn:
        import_registry(conn, pf)
        conn.execute(
            "INSERT INTO webhook_subscriptions (name, url, secret, actions) VALUES ('bench', %s, %s, '{fired}')",
            ("http://127.0.0.1:1/placeholder", SECRET),
        )

    broker = MosquittoBroker().start()
    recv = WebhookReceiver(SECRET).start()
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"pp-bench-alerts-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PARKPULSE_DATABASE_URL": dsn,
        "PARKPULSE_MQTT_URL": broker.url,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PARKPULSE_ALERTS_PERIODIC_INTERVAL_S": "1",
        "PARKPULSE_ALERTS_PUBLISH_POLL_S": "1",
    }
    ingest = alerts = None
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{park}")
    stop_bg = threading.Event()
    bg_thread: threading.Thread | None = None
    result: dict[str, Any] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE webhook_subscriptions SET url = %s WHERE name = 'bench'", (recv.url,))
        if not a.no_ingest:
            ingest = _proc(["ingest", "run", "--log-level", "WARNING"], env, logs / "ingest.log")
        alerts = _proc(["alerts", "run", "--log-level", "WARNING"], env, logs / "alerts.log")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        # the engine is up once it has published the park's retained current-alerts topic
        seen = threading.Event()
        watch = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{park}")
        watch.on_message = lambda c, u, m: seen.set()
        watch.connect("127.0.0.1", broker.port)
        watch.subscribe(alerts_topic(park, "current"), qos=1)
        watch.loop_start()
        ok = seen.wait(60)
        watch.loop_stop()
        watch.disconnect()
        if not ok:
            print(
                "alert engine did not come up; log:",
                (logs / "alerts.log").read_text()[-2000:],
                file=sys.stderr,
            )
            return 1
        time.sleep(1.0)
        seqs = dict.fromkeys(gws, 0)
        lock = threading.Lock()

        def send(gw: str, readings: list[list[Any]]) -> None:
            with lock:
                payload = batch_payload(gw, seqs[gw], readings)
                seqs[gw] += 1
                pub.publish(data_topic(park, firm, gw), payload, qos=1)

        def background() -> None:
            # normal meter readings (20 per second per gateway by default), stored by ingest
            n = max(1, int(a.background))
            while not stop_bg.wait(1.0):
                ts = int(time.time() * 1000)
                for gw in gws:
                    send(gw, [["meter-1", "active_power_kw", ts + i, 20.0 + i % 5, 0] for i in range(n)])

        bg_thread = threading.Thread(target=background, name="bench-background", daemon=True)
        bg_thread.start()

        store_lat: dict[str, list[float]] = {"threshold": [], "gap": []}
        hook_lat: dict[str, list[float]] = {"threshold": [], "gap": []}
        data_t = (
            int(time.time() * 1000) - 4 * 3600_000
        )  # past data time: ingest refuses readings from the future
        done = 0
        wave = 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            while done < a.alerts:
                kind = "threshold" if wave % 2 == 0 else "gap"
                batch = gws[: min(len(gws), a.alerts - done)]
                rule = "flue-temp-high" if kind == "threshold" else "gateway-offline"
                since = _scalar(conn, "SELECT coalesce(max(alert_id), 0) FROM alerts")
                n_hooks = len(recv.received)
                sent: dict[str, float] = {}
                data_t += 120_000
                for gw in batch:
                    sent[gw] = time.time()
                    if kind == "threshold":
                        send(gw, [["cems-1", "flue_temp_c", data_t, 300.0, 0]])
                    else:
                        pub.publish(
                            status_topic(park, firm, gw), status_payload(gw, "offline"), qos=1, retain=True
                        )
                deadline = time.monotonic() + 60
                stored: dict[str, float] = {}
                hooks: dict[str, float] = {}
                while time.monotonic() < deadline and (len(stored) < len(batch) or len(hooks) < len(batch)):
                    for gid, opened in conn.execute(
                        "SELECT gateway_id, extract(epoch FROM opened_at) FROM alerts WHERE alert_id > %s AND rule_id = %s",
                        (since, rule),
                    ):
                        stored.setdefault(gid, float(opened))
                    for r in recv.received[n_hooks:]:
                        if r.body["alert"]["rule_id"] == rule and r.body["alert"]["alert_id"] > since:
                            hooks.setdefault(r.body["alert"]["gateway_id"], r.at)
                    time.sleep(0.02)
                for gw in batch:
                    if gw in stored:
                        store_lat[kind].append(stored[gw] - sent[gw])
                    if gw in hooks:
                        hook_lat[kind].append(hooks[gw] - sent[gw])
                done += len(batch)
                # resolve again so the next wave fires new alerts for the same subjects
                for gw in batch:
                    if kind == "threshold":
                        send(
                            gw,
                            [
                                ["cems-1", "flue_temp_c", data_t + 1000, 200.0, 0],
                                ["cems-1", "flue_temp_c", data_t + 62_000, 200.0, 0],
                            ],
                        )
                    else:
                        pub.publish(
                            status_topic(park, firm, gw), status_payload(gw, "online"), qos=1, retain=True
                        )
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _scalar(
                    conn, "SELECT count(*) FROM alerts WHERE rule_id = %s AND state <> 'resolved'", (rule,)
                ):
                    time.sleep(0.05)
                print(
                    f"wave {wave} {kind}: {len(batch)} alerts, stored {len(stored)}, webhooks {len(hooks)}",
                    flush=True,
                )
                wave += 1
            time.sleep(1.0)
            n_readings = _scalar(conn, "SELECT count(*) FROM readings")
            n_dead = _scalar(conn, "SELECT count(*) FROM dead_letters")
            if n_dead:
                print("dead letters:", conn.execute("SELECT reason FROM dead_letters LIMIT 3").fetchall())
        all_store = store_lat["threshold"] + store_lat["gap"]
        all_hook = hook_lat["threshold"] + hook_lat["gap"]
        e2e = all_hook  # the webhook is sent after the alert is committed: its arrival is the end-to-end time
        result = {
            "alerts": len(all_hook),
            "latency_p50_s": round(pct(e2e, 50), 4),
            "latency_p95_s": round(pct(e2e, 95), 4),
            "stored": len(all_store),
            "store_p50_s": round(pct(all_store, 50), 4),
            "store_p95_s": round(pct(all_store, 95), 4),
            "threshold_p95_s": round(pct(hook_lat["threshold"], 95), 4),
            "gap_p95_s": round(pct(hook_lat["gap"], 95), 4),
            "max_s": round(max(all_hook), 4) if all_hook else None,
            "requested": a.alerts,
            "gateways": a.gateways,
            "readings_stored": n_readings,
            "dead_letters": n_dead,
            "ingest": not a.no_ingest,
        }
        print(
            f"threshold: stored p50 {pct(store_lat['threshold'], 50):.3f} s, webhook p95 {pct(hook_lat['threshold'], 95):.3f} s; "
            f"gap: stored p50 {pct(store_lat['gap'], 50):.3f} s, webhook p95 {pct(hook_lat['gap'], 95):.3f} s"
        )
    finally:
        stop_bg.set()
        if bg_thread is not None:
            bg_thread.join(5)
        with contextlib.suppress(Exception):
            pub.loop_stop()
            pub.disconnect()
        _stop(alerts)
        _stop(ingest)
        recv.stop()
        broker.close()
        with contextlib.suppress(Exception), psycopg.connect(a.admin_dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    print(orjson.dumps(result).decode())
    return 0 if result.get("alerts") == a.alerts else 1


if __name__ == "__main__":
    raise SystemExit(main())
