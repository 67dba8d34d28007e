"""An OPC UA line through the real gateway, broker, ingest and database, down to v_readings: the readings look like the MQTT line sensors' (machine_state, good/reject counts,
ideal rate), so OEE and the smart-workshop telemetry work from an OPC UA line too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from test_gw_helpers import ROOT, RunningGateway, make_config

from parkpulse.registry import ParkFile, import_registry
from simulators.opcua_line import OpcuaLine

STATE_MAP = {100: "off", 110: "idle", 120: "running", 130: "fault", 140: "planned_stop"}


def _register(dsn: str, park: str, devices: list[str]) -> None:
    pf = ParkFile.model_validate(
        {
            "park": {"id": park, "name": "test park"},
            "firms": [
                {
                    "id": "f1",
                    "name": "firm",
                    "land_mu": 10,
                    "gateways": [{"id": "gw1", "devices": [{"id": d, "kind": "line"} for d in devices]}],
                }
            ],
        }
    )
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)


def test_opcua_line_readings_reach_the_views(broker: Any, db: str, unique_id: str, tmp_path: Path) -> None:
    line = OpcuaLine("line1", ("filler", "capper"), port=0, update_s=0.2, time_scale=60)
    line.start()
    devices = ["line1-filler", "line1-capper"]
    _register(db, unique_id, devices)
    opcua = [
        {
            "name": "line1",
            "url": line.url,
            "publishing_interval_ms": 200,
            "sampling_interval_ms": 100,
            "repeat_s": 1,
            "devices": [
                {
                    "id": f"line1-{m}",
                    "nodes": [
                        {"node": line.node_id(m, "State"), "metric": "machine_state", "value_map": STATE_MAP},
                        {"browse_path": line.browse_path(m, "GoodCount"), "metric": "good_count"},
                        {"node": line.node_id(m, "RejectCount"), "metric": "reject_count"},
                        {"node": line.node_id(m, "IdealRate"), "metric": "ideal_rate_pcs_h"},
                        {"node": line.node_id(m, "EnergyKWh"), "metric": "elec_import_kwh", "mode": "poll"},
                    ],
                    "poll_interval_s": 0.5,
                }
                for m in ("filler", "capper")
            ],
        }
    ]
    cfg = make_config(
        park=unique_id, broker_url=broker.url, spool=tmp_path / "spool.db", devices=[], buses=[], opcua=opcua
    )
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
    try:
        with RunningGateway(cfg):
            deadline = time.monotonic() + 40
            got: dict[tuple[str, str], int] = {}
            while time.monotonic() < deadline:
                with psycopg.connect(db) as conn:
                    got = {
                        (d, m): int(n)
                        for d, m, n in conn.execute(
                            "SELECT device_id, metric, count(*) FROM v_readings WHERE park_id = %s AND quality = 0 GROUP BY 1, 2",
                            (unique_id,),
                        )
                    }
                if len(got) == 10 and all(n >= 3 for n in got.values()):
                    break
                time.sleep(0.5)
        truth = line.truth()
    finally:
        line.close()
        if ingest.poll() is None:
            ingest.send_signal(signal.SIGTERM)
            try:
                ingest.wait(20)
            except subprocess.TimeoutExpired:
                ingest.kill()
                ingest.wait()
    assert len(got) == 10 and all(n >= 3 for n in got.values()), (
        f"every metric of both machines stored, steady ones repeated: {sorted(got)}\n{log.read_text()[-2000:]}"
    )
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            """SELECT device_id, metric, value, unit FROM v_readings
               WHERE park_id = %s AND quality = 0 ORDER BY ts DESC""",
            (unique_id,),
        ).fetchall()
        states = {r[2] for r in rows if r[1] == "machine_state"}
        assert states <= {0.0, 1.0, 2.0, 3.0, 4.0}, "catalogue states, not the machine's 100..140"
        last_good = next(r[2] for r in rows if r[0] == "line1-filler" and r[1] == "good_count")
        assert last_good <= truth["filler"]["good_count"] and last_good > 0
        assert {r[3] for r in rows if r[1] == "elec_import_kwh"} == {"kWh"}
