"""Issue 14's "done when", platform to gateway and back, every part real: the fleet library stores
a config that adds a meter, the publisher signs and retains it on Mosquitto, a managed gateway (in
its own thread) applies it without a restart and polls the new meter of a Modbus simulator, ingest
(a real process) stores its readings and the gateway's config state, and v_gateway_fleet shows
desired = applied, no drift."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from ingest_testkit import q1, wait_for
from platform_testkit import KEY, Registry

import fleet
from fleet._publisher import Publisher
from gateway.config import parse_config
from gateway.runtime import Gateway
from parkpulse.services import MosquittoBroker
from simulators.modbus import ModbusSimulator


def _bus(port: int) -> dict[str, Any]:
    return {"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": port, "timeout_s": 0.5}


def _dev(id_: str, unit: int) -> dict[str, Any]:
    return {"id": id_, "bus": "lan", "device_id": unit, "profile": "chint-dtsu666", "interval_s": 0.5}


class _RunningGateway:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.cfg = parse_config(doc, "test")
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.gw: Gateway | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def go() -> None:
            self.stop_event = asyncio.Event()
            self.gw = Gateway(self.cfg, shutdown=self.stop_event)
            await self.gw.run()

        try:
            self.loop.run_until_complete(go())
        finally:
            self.loop.close()

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)


def test_a_meter_added_on_the_platform_reports_through_the_gateway(
    registry: Registry, broker: MosquittoBroker, start_ingest: Any, tmp_path: Path
) -> None:
    sim = ModbusSimulator(host="127.0.0.1", port=0)
    sim.add_device(device_id=1, model="chint-dtsu666", seed=1)
    sim.add_device(device_id=2, model="chint-dtsu666", seed=2)
    sim.start()
    pub_pem = tmp_path / "fleet.pub"
    pub_pem.write_bytes(
        KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with registry.conn() as conn:  # the park file registered the incomer only
        conn.execute(
            "INSERT INTO devices (gateway_id, device_id, kind, meter_level, poll_interval_s) VALUES (%s, 'm1', 'meter', 1, 0.5)",
            (registry.gw,),
        )
    start_ingest(broker.url)
    local = {
        "gateway": {"park": registry.park, "firm": registry.firm, "id": registry.gw},
        "uplink": {"url": broker.url, "reconnect_min_s": 1, "reconnect_max_s": 2, "status_interval_s": 0.5},
        "spool": {"path": str(tmp_path / "spool.db")},
        "batching": {"max_readings": 500, "max_age_s": 0.5},
        "http": {"listen": None},
        "managed": {"verify_key": str(pub_pem), "state_dir": str(tmp_path / "state"), "rollback_after_s": 3},
        "buses": [_bus(sim.port)],
        "devices": [_dev("m1", 1)],
    }
    pub = Publisher(registry.dsn, broker.url, signing_key=KEY, sweep_s=60)
    stop = threading.Event()
    pub_thread = threading.Thread(target=pub.run, args=(stop,), daemon=True)
    pub_thread.start()
    gw = _RunningGateway(local)
    try:
        # the local file runs; the gateway says it is managed
        wait_for(
            lambda: (
                q1(registry.dsn, "SELECT config_mode FROM gateway_status WHERE gateway_id = %s", registry.gw)
                == "managed"
            ),
            what="managed mode in the status",
        )
        # an operator adds a meter from the platform (the console calls the same library)
        with registry.conn() as conn:
            v = fleet.set_desired(
                conn,
                registry.gw,
                {"buses": [_bus(sim.port)], "devices": [_dev("m1", 1), _dev("m2", 2)]},
                by="op1",
                reason="add meter m2",
            )
        t0 = time.monotonic()
        wait_for(
            lambda: (
                q1(
                    registry.dsn,
                    "SELECT config_applied_version FROM gateway_status WHERE gateway_id = %s",
                    registry.gw,
                )
                == 1
            ),
            timeout=30,
            what="applied version 1 reported",
        )
        applied_after = time.monotonic() - t0
        with psycopg.connect(registry.dsn) as c, c.cursor(row_factory=psycopg.rows.dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM v_gateway_fleet WHERE gateway_id = %s", (registry.gw,)
            ).fetchone()
        assert row is not None
        assert (row["mode"], row["desired_version"], row["applied_version"], row["drift"]) == (
            "managed",
            1,
            1,
            False,
        )
        assert row["published_version"] == 1
        # the new meter's readings are in the views, without anyone touching the gateway's host
        wait_for(
            lambda: (
                q1(
                    registry.dsn,
                    "SELECT count(*) FROM v_readings WHERE gateway_id = %s AND device_id = 'm2' AND metric = 'elec_import_kwh'",
                    registry.gw,
                )
                > 0
            ),
            timeout=30,
            what="m2 readings stored",
        )
        assert q1(registry.dsn, "SELECT count(*) FROM dead_letters WHERE gateway_id = %s", registry.gw) == 0
        assert v.sha256 == q1(
            registry.dsn,
            "SELECT config_applied_sha256 FROM gateway_status WHERE gateway_id = %s",
            registry.gw,
        )
        print(f"push applied and reported in {applied_after:.2f} s")
    finally:
        gw.stop()
        stop.set()
        pub_thread.join(15)
        sim.stop()
