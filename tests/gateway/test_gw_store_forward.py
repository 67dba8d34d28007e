"""Store-and-forward end to end: broker outage and restart (readings in the database, none twice,
gap fill for what the broker dropped) and SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml
from test_gw_helpers import (  # noqa: F401
    ROOT,
    RunningGateway,
    collector,
    gateway_process,
    make_config,
    sim_factory,
)

from parkpulse.registry import ParkFile, import_registry
from parkpulse.tcp_proxy import TcpProxy


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
                                {"id": d, "kind": "meter", "profile": "eastron-sdm630"} for d in devices
                            ],
                        }
                    ],
                }
            ],
        }
    )
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)


def _ingest(dsn: str, broker_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PARKPULSE_DATABASE_URL": dsn,
        "PARKPULSE_MQTT_URL": broker_url,
        "PARKPULSE_INGEST_HTTP_PORT": "0",
    }
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest", "run"], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _db_count(dsn: str, park: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM v_readings WHERE park_id = %s", (park,)).fetchone()
        return int(row[0]) if row else 0


def _ingest_state(dsn: str, park: str) -> tuple[int, int, int, int]:
    """(readings, duplicate readings, open seq gaps, seq gaps ever recorded) of the park's gateway."""
    with psycopg.connect(dsn) as conn:
        n, dup = conn.execute(
            "SELECT count(*), count(*) - count(DISTINCT (device_id, metric, ts)) FROM v_readings WHERE park_id = %s",
            (park,),
        ).fetchone() or (0, 0)
        open_, total = conn.execute(
            "SELECT count(*) FILTER (WHERE filled_at IS NULL), count(*) FROM seq_gaps WHERE gateway_id = 'gw1'"
        ).fetchone() or (0, 0)
    return int(n), int(dup), int(open_), int(total)


@pytest.mark.slow
def test_broker_down_60s_every_reading_arrives_in_the_database_once(
    sim_factory: Any,  # noqa: F811
    own_broker: Any,
    db: str,
    unique_id: str,
    tmp_path: Path,
) -> None:
    """The gateway polls while the broker is stopped for 60 s. The broker comes back; the gateway
    reconnects first and sends its spool; ingest comes back ~10 s later. Mosquitto (2.0.11)
    restores ingest's persistent session with its `$share/ingest/...` subscription but does not
    deliver messages published to the group before the member reconnects: it acknowledges them
    to the gateway and drops them. Ingest sees the seq gap, asks the gateway to re-send the range
    (gap fill, pp/v1/.../resend), and the gateway re-sends the acknowledged batches it keeps.
    Afterwards every reading is in the database exactly once and no seq gap is left open.

    Ingest is held off through a TCP proxy only to fix the order (gateway first): the gateway
    talks to the broker directly."""
    broker = own_broker
    devices = ["m1", "m2", "m3"]
    _register(db, unique_id, devices)
    sim = sim_factory()
    for i in range(1, 4):
        sim.add_device(device_id=i, model="eastron-sdm630", seed=i)
    sim.start()
    ingest_proxy = TcpProxy("127.0.0.1", broker.port).start()
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        devices=[
            {"id": d, "bus": "lan", "device_id": i + 1, "profile": "eastron-sdm630", "interval_s": 1.0}
            for i, d in enumerate(devices)
        ],
    )
    ingest_log = tmp_path / "ingest.log"
    ingest = _ingest(db, f"mqtt://127.0.0.1:{ingest_proxy.port}", ingest_log)
    try:
        with RunningGateway(cfg) as rg:
            gw = rg.gw
            assert gw is not None and gw.uplink is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _ingest_state(db, unique_id)[0] < 30:
                time.sleep(0.5)
            assert _ingest_state(db, unique_id)[0] >= 30, ingest_log.read_text()[-3000:]
            ingest_proxy.cut(drop=False)  # ingest stays away until the gateway has re-sent its spool
            broker.stop()
            t_down = time.monotonic()
            time.sleep(5)
            assert not gw.uplink.connected
            while time.monotonic() - t_down < 60:
                time.sleep(1)
            assert gw.spool.depth > 30, "batches were kept on disk during the outage"
            broker.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (gw.spool.depth == 0 and not gw._inflight):
                time.sleep(0.2)
            assert gw.spool.depth == 0 and gw.uplink.connected, (
                "the gateway reconnected and the broker acked its spool"
            )
            assert gw.spool.acked > 30, "acknowledged batches are kept for resend requests"
            time.sleep(10)  # the broker keeps taking the gateway's batches while ingest is away
            ingest_proxy.restore()
            deadline = time.monotonic() + 90
            state = _ingest_state(db, unique_id)
            while time.monotonic() < deadline:
                state = _ingest_state(db, unique_id)
                if state[2] == 0 and state[0] >= gw.readings_in - 3 * 20:
                    break
                time.sleep(1)
            produced = gw.readings_in
        # the gateway has stopped: its last batch is sealed and sent; wait for ingest to store it
        last_seq = gw.spool.last_seq
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _ingest_state(db, unique_id)
            if state[0] >= produced and state[2] == 0:
                break
            time.sleep(1)
        n, dup, open_gaps, gaps_seen = state
        log_tail = ingest_log.read_text()[-3000:]
        assert dup == 0, "no reading twice"
        assert n == produced, f"every reading once: {n} of {produced} stored\n{log_tail}"
        assert open_gaps == 0, f"no seq gap left open\n{log_tail}"
        with psycopg.connect(db) as conn:
            row = conn.execute(
                "SELECT max_seq, contiguous_seq FROM gateway_seq WHERE gateway_id = 'gw1'"
            ).fetchone()
        assert row == (last_seq, last_seq)
        if gaps_seen:  # the broker dropped batches (the Mosquitto limitation): gap fill brought them back
            assert gw.resend_requests["accepted"] >= 1 and gw.resend_batches["batch"] >= 1
            assert "asked gateway gw1 to re-send" in ingest_log.read_text()
    finally:
        _stop(ingest)
        ingest_proxy.close()


def test_sigkill_loses_nothing_already_spooled(
    sim_factory: Any,  # noqa: F811
    own_broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory()
    for i in range(1, 3):
        sim.add_device(device_id=i, model="chint-dtsu666", seed=i)
    sim.start()
    own_broker.stop()  # the uplink is down: everything stays in the spool
    spool = tmp_path / "spool.db"
    cfg_doc = {
        "gateway": {"park": unique_id, "firm": "f1", "id": "gw1"},
        "uplink": {"url": own_broker.url, "reconnect_min_s": 1, "reconnect_max_s": 2},
        "spool": {"path": str(spool)},
        "batching": {"max_readings": 100, "max_age_s": 0.3},
        "http": {"listen": None},
        "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        "devices": [
            {"id": f"m{i}", "bus": "lan", "device_id": i, "profile": "chint-dtsu666", "interval_s": 0.2}
            for i in (1, 2)
        ],
    }
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(cfg_doc), encoding="utf-8")
    proc = gateway_process(config, tmp_path / "gw.log")
    try:
        deadline = time.monotonic() + 30
        spooled: dict[int, list[Any]] = {}
        while time.monotonic() < deadline and len(spooled) < 15:
            time.sleep(0.5)
            if spool.exists():
                try:
                    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True) as ro:
                        spooled = {s: orjson.loads(r) for s, r in ro.execute("SELECT seq, rows FROM batches")}
                except sqlite3.OperationalError:
                    continue
        assert len(spooled) >= 15, (tmp_path / "gw.log").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    own_broker.start()
    with collector(own_broker.port, unique_id) as col:
        proc = gateway_process(config, tmp_path / "gw.log")
        try:
            assert col.wait(lambda c: set(spooled) <= set(c.unique_batches()), 30), (
                "every spooled batch is sent after restart"
            )
        finally:
            _stop(proc)
        got = col.unique_batches()
    for seq, rows in spooled.items():
        assert got[seq]["readings"] == rows, f"batch {seq} arrives exactly as spooled (original timestamps)"
    assert max(got) > max(spooled), "new batches continue the sequence"
    assert len(got) == max(got) + 1 or set(range(max(spooled) + 1)) <= set(got)


def test_birth_and_last_will_on_the_retained_status_topic(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory()
    sim.add_device(device_id=1, model="cems-analyser", seed=1)
    sim.start()
    cfg_doc = {
        "gateway": {"park": unique_id, "firm": "f1", "id": "gw1"},
        "uplink": {"url": broker.url, "keepalive_s": 5},
        "spool": {"path": str(tmp_path / "spool.db")},
        "http": {"listen": None},
        "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        "devices": [
            {"id": "stack-1", "bus": "lan", "device_id": 1, "profile": "cems-analyser", "interval_s": 0.5}
        ],
    }
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(cfg_doc), encoding="utf-8")
    with collector(broker.port, unique_id) as col:
        proc = gateway_process(config, tmp_path / "gw.log")
        try:
            assert col.wait(lambda c: any(s["state"] == "online" for s in c.status), 20)
            assert col.wait(lambda c: len(c.unique_batches()) >= 2, 20)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # no clean disconnect: the broker publishes the last will after 1.5 × keepalive
            assert col.wait(lambda c: c.status and c.status[-1]["state"] == "offline", 20), (
                tmp_path / "gw.log"
            ).read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    birth = next(s for s in col.status if s["state"] == "online")
    assert birth["gateway"] == "gw1" and birth["devices"] == ["stack-1"] and "spool_depth" in birth
    # a late subscriber gets the retained state
    with collector(broker.port, unique_id) as late:
        assert late.wait(lambda c: bool(c.status), 5)
        assert late.status[-1]["state"] == "offline"
