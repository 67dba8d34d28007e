"""HJ 212 end to end: simulated data loggers (2017 and 2025) → the gateway's HJ 212 receiver → spool
→ real broker → ingest (child process) → PostgreSQL, read back through `v_readings`.

On the way: a packet corrupted on the line (dead-lettered, then resent and stored), a packet the
logger resends because the acknowledgement came late (stored once), a minute lost on the link and
fetched again by the history request, and a calibration flag that lands as `cems_flag` 5.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from test_gw_helpers import ROOT, RunningGateway, make_config

from gateway.http import render_metrics
from gateway.sources.hj212 import Hj212Receiver
from parkpulse.registry import ParkFile, import_registry
from simulators.hj212 import SHANGHAI, Hj212DataLogger

PER_MINUTE = 13  # 9 measured values, 3 converted, cems_flag


def _register(dsn: str, park: str, devices: list[str]) -> None:
    pf = ParkFile.model_validate(
        {
            "park": {"id": park, "name": "test park"},
            "firms": [
                {
                    "id": "f1",
                    "name": "firm",
                    "land_mu": 10,
                    "gateways": [
                        {
                            "id": "gw1",
                            "devices": [
                                {"id": d, "kind": "cems", "fuel": "gas", "age_class": "existing"}
                                for d in devices
                            ],
                        }
                    ],
                }
            ],
        }
    )
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)


def _state(dsn: str, park: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        n, dup = conn.execute(
            "SELECT count(*), count(*) - count(DISTINCT (device_id, metric, ts)) FROM v_readings WHERE park_id = %s",
            (park,),
        ).fetchone() or (0, 0)
    return int(n), int(dup)


def test_loggers_to_the_database_once_with_flags_gaps_and_resends(
    broker: Any, db: str, unique_id: str, tmp_path: Path
) -> None:
    park = unique_id
    _register(db, park, ["cems-a", "cems-b"])
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PARKPULSE_DATABASE_URL": db,
        "PARKPULSE_MQTT_URL": broker.url,
        "PARKPULSE_INGEST_HTTP_PORT": "0",
    }
    log = tmp_path / "ingest.log"
    with open(log, "ab") as fh:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run"], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    cfg = make_config(
        park=park,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[],
        devices=[],
        hj212={
            "listen": "127.0.0.1:0",
            "ack_window_ms": 500,
            "loggers": [
                {"mn": "88888880000001", "password": "123456", "device": "cems-a", "edition": "2017"},
                {"mn": "88888880000002", "password": "654321", "device": "cems-b", "edition": "2025"},
            ],
        },
    )
    t0 = datetime.now(SHANGHAI).replace(second=0, microsecond=0) - timedelta(minutes=30)
    try:
        with RunningGateway(cfg) as rg:
            assert rg.gw is not None
            rx = next(s for s in rg.gw.sources if isinstance(s, Hj212Receiver))
            deadline = time.monotonic() + 5
            while rx.port is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert rx.port
            a = Hj212DataLogger(
                "127.0.0.1", rx.port, mn="88888880000001", password="123456", reply_timeout_s=3
            )
            b = Hj212DataLogger(
                "127.0.0.1",
                rx.port,
                mn="88888880000002",
                password="654321",
                edition="2025",
                reply_timeout_s=3,
            )
            with a, b:
                assert a.send_minute(t0)
                a.reply_timeout_s = 0.2  # the acknowledgement (after the 500 ms commit window) comes too late
                assert a.send_minute(t0 + timedelta(minutes=1))
                assert a.stats["resent"] >= 1
                a.reply_timeout_s = 3
                a.corrupt_next()
                assert a.send_minute(t0 + timedelta(minutes=2))
                assert a.stats["corrupted"] == 1
                a.send_minute(t0 + timedelta(minutes=3))
                a.skip_minute(t0 + timedelta(minutes=4))
                a.send_minute(t0 + timedelta(minutes=5))
                for i in range(3):
                    b.flags = {"a21002": "C"} if i == 1 else {}
                    assert b.send_minute(t0 + timedelta(minutes=i))
                deadline = time.monotonic() + 10
                while rx.counts["history_done"] < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert rx.counts["history_done"] == 1 and a.stats["history_minutes"] == 1
            want = (6 + 3) * PER_MINUTE
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _state(db, park)[0] < want:
                time.sleep(0.5)
            stats = {s.device: s for s in rg.gw.device_stats()}
            dead = (tmp_path / "spool.db.hj212-dead.jsonl").read_text().splitlines()
            health = rg.gw.health()
            metrics_text = render_metrics(rg.gw)
        n, dup = _state(db, park)
        assert (n, dup) == (want, 0), log.read_text()[-3000:]
        assert rg.gw.readings_in > want, "the resent packets were emitted again and stored once"
        with psycopg.connect(db) as conn:
            flags = conn.execute(
                "SELECT device_id, ts, value FROM v_readings WHERE park_id = %s AND metric = 'cems_flag' ORDER BY 1, 2",
                (park,),
            ).fetchall()
            nox_a = conn.execute(
                "SELECT count(*) FROM v_readings WHERE park_id = %s AND device_id = 'cems-a' AND metric = 'nox_zs_mg_m3'",
                (park,),
            ).fetchone()
        assert [f[0] for f in flags] == ["cems-a"] * 6 + ["cems-b"] * 3
        assert [f[2] for f in flags] == [0.0] * 6 + [0.0, 5.0, 0.0]
        assert flags[0][1] == t0 and flags[-1][1] == t0 + timedelta(minutes=2)
        assert nox_a == (6,)
        assert [json.loads(x)["kind"] for x in dead] == ["crc"]
        receiver = health["sources"][rx.name]  # an inspector or installer sees the refusals in /healthz
        assert receiver["dead_letters"]["total"] == 1 and receiver["dead_letters"]["by_kind"] == {"crc": 1}
        assert (
            f'parkpulse_gateway_source_dead_letters_total{{gateway="gw1",source="{rx.name}"}} 1'
            in metrics_text
        )
        assert stats["cems-a"].missed_slots == 1 and stats["cems-a"].transport_errors == 1
    finally:
        if ingest.poll() is None:
            ingest.send_signal(signal.SIGTERM)
            try:
                ingest.wait(20)
            except subprocess.TimeoutExpired:
                ingest.kill()
                ingest.wait()
