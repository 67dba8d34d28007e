"""The `dlt645` source against its simulator on real pseudo-terminals and TCP sockets, through
the real gateway runtime (and, end to end, the gateway process, the broker, ingest and the store)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from test_gw_helpers import ROOT, RunningGateway, collector, gateway_process, make_config

from ingest.harness import IngestProcess
from parkpulse.registry import ParkFile, import_registry
from parkpulse.services import free_port
from simulators.dlt645 import Dlt645Bus


@pytest.fixture
def dlt_bus() -> Iterator[Any]:
    buses: list[Dlt645Bus] = []

    def make(**kw: Any) -> Dlt645Bus:
        b = Dlt645Bus(**kw)
        buses.append(b)
        return b

    yield make
    for b in buses:
        b.stop()


def _addr(i: int) -> str:
    return f"0000123456{i:02d}"


def test_bus_of_eight_with_one_dead_meter_keeps_the_others_on_time(
    dlt_bus: Any, broker: Any, unique_id: str, tmp_path: Path
) -> None:
    bus = dlt_bus(transport="pty", baudrate=9600, parity="E", reply_delay_ms=5)
    meters = [bus.add_meter(_addr(i), seed=i) for i in range(1, 9)]
    meters[4].inject("silence")  # meter 5 never answers
    bus.start()
    interval = 1.5
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[],
        devices=[],
        dlt645_buses=[
            # a pty refuses parity: open it with N; the simulator times the line at 8E1
            {
                "name": "rs485",
                "type": "serial",
                "port": bus.port_path,
                "baudrate": 9600,
                "parity": "N",
                "timeout_s": 0.3,
                "inter_frame_gap_ms": 5,
            }
        ],
        dlt645_meters=[
            {
                "id": f"m{i}",
                "bus": "rs485",
                "address": _addr(i),
                "profile": "dlt645-2007-generic",
                "interval_s": interval,
                "metrics": ["elec_import_kwh", "active_power_kw"],
            }
            for i in range(1, 9)
        ],
    )
    run_s = 9.0
    with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
        time.sleep(run_s)
        assert rg.gw is not None
        stats = {s.device: s for s in rg.gw.device_stats()}
        srcs = [s for s in rg.gw.sources if s.name.startswith("dlt645:")]
        assert len(srcs) == 1, "the eight meters share one line"
        assert col.wait(lambda c: {f"m{i}" for i in range(1, 9)} <= {r[0] for r in c.readings()}, 10)
    dead = stats["m5"]
    assert dead.transport_errors >= 2 and dead.ok == 0 and dead.exception_errors == 0
    assert dead.skipped_backoff >= 1, "the dead meter is backed off"
    for name, s in stats.items():
        if name == "m5":
            continue
        assert s.transport_errors == 0 and s.exception_errors == 0, (name, s.last_error)
        assert s.ok >= run_s / interval - 2, (name, s.ok)  # kept its interval
        assert s.overruns == 0, name
    bad = [r for r in col.readings() if r[0] == "m5"]
    assert bad and all(r[3] is None and r[4] == 4 for r in bad)
    good = [r for r in col.readings() if r[0] == "m1" and r[1] == "elec_import_kwh"]
    assert good and all(r[4] == 0 and r[3] >= 1000.0 for r in good)
    assert bus.collisions == 0, "one request at a time on the line"


def test_tcp_converter_faults_are_counted_apart_and_split_replies_are_joined(
    dlt_bus: Any, broker: Any, unique_id: str, tmp_path: Path
) -> None:
    bus = dlt_bus(transport="tcp", baudrate=9600, reply_delay_ms=2)
    abnormal = bus.add_meter(_addr(1), seed=1)
    garbled = bus.add_meter(_addr(2), seed=2)
    split = bus.add_meter(_addr(3), seed=3, max_data_len=12)  # the 20-byte 0001FF00 comes in 3 frames
    old = bus.add_meter(_addr(4), edition="1997", seed=4, max_data_len=12)
    bus.start()
    abnormal.inject("abnormal", error_word=0x04)
    garbled.inject("bad_checksum")
    split.freeze()
    old.freeze()
    tariffs = [
        "elec_import_kwh",
        "elec_import_kwh_sharp",
        "elec_import_kwh_peak",
        "elec_import_kwh_flat",
        "elec_import_kwh_valley",
    ]
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[],
        devices=[],
        dlt645_buses=[
            {
                "name": "conv",
                "type": "tcp",
                "host": "127.0.0.1",
                "port": bus.port,
                "timeout_s": 0.5,
                "inter_frame_gap_ms": 2,
            }
        ],
        dlt645_meters=[
            {
                "id": "d1",
                "bus": "conv",
                "address": _addr(1),
                "profile": "dlt645-2007-generic",
                "interval_s": 0.5,
                "metrics": ["elec_import_kwh"],
            },
            {
                "id": "d2",
                "bus": "conv",
                "address": _addr(2),
                "profile": "dlt645-2007-generic",
                "interval_s": 0.5,
                "metrics": ["elec_import_kwh"],
            },
            {
                "id": "d3",
                "bus": "conv",
                "address": _addr(3),
                "profile": "dlt645-2007-generic",
                "interval_s": 0.5,
                "metrics": [*tariffs, "voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "power_factor"],
            },
            {
                "id": "d4",
                "bus": "conv",
                "address": _addr(4),
                "profile": "dlt645-1997-generic",
                "interval_s": 0.5,
                "metrics": [*tariffs, "voltage_l1_v", "current_l1_a"],
            },
        ],
    )
    with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
        assert col.wait(lambda c: {"d3", "d4"} <= {r[0] for r in c.readings() if r[4] == 0}, 15)
        time.sleep(1.5)
        assert rg.gw is not None
        stats = {s.device: s for s in rg.gw.device_stats()}
    assert stats["d1"].exception_errors >= 1 and stats["d1"].transport_errors == 0
    assert "error word 0x04: 密码错/未授权" in (stats["d1"].last_error or "")
    assert stats["d2"].transport_errors >= 1 and stats["d2"].exception_errors == 0
    assert "bad checksum" in (stats["d2"].last_error or "")
    for d in ("d3", "d4"):
        assert stats[d].ok >= 3 and stats[d].consecutive_failures == 0, (d, stats[d].last_error)
    got = {(r[0], r[1]): r[3] for r in col.readings() if r[4] == 0}
    for dev, meter in (("d3", split), ("d4", old)):
        truth = meter.truth()
        for metric in (*tariffs, "voltage_l1_v"):
            assert got[(dev, metric)] == pytest.approx(truth[metric], abs=1e-9), (dev, metric)
        assert sum(got[(dev, t)] for t in tariffs[1:]) == pytest.approx(got[(dev, "elec_import_kwh")])
    assert got[("d3", "power_factor")] == pytest.approx(0.92)
    assert all(r[3] is None for r in col.readings() if r[0] in ("d1", "d2"))


def _gateway_file(path: Path, park: str, broker_url: str, spool: Path, dlt: dict[str, Any]) -> Path:
    doc = {
        "gateway": {"park": park, "firm": "f1", "id": "gw1"},
        "uplink": {"url": broker_url, "reconnect_min_s": 1, "reconnect_max_s": 2},
        "spool": {"path": str(spool)},
        "batching": {"max_readings": 500, "max_age_s": 0.3},
        "http": {"listen": None},
        **dlt,
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _gw_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_discover_reads_the_lone_meters_address_and_check_reads_it(dlt_bus: Any, tmp_path: Path) -> None:
    lone = dlt_bus(transport="pty", baudrate=2400, reply_delay_ms=5)
    lone.add_meter("000087654321", seed=1)
    lone.start()
    two = dlt_bus(transport="tcp", baudrate=9600, reply_delay_ms=1)
    two.add_meter(_addr(1), seed=1)
    two.add_meter(_addr(2), seed=2)
    two.start()
    dlt = {
        "dlt645_buses": [
            {"name": "lone", "type": "serial", "port": lone.port_path, "parity": "N", "timeout_s": 1.0},
            {"name": "two", "type": "tcp", "host": "127.0.0.1", "port": two.port, "timeout_s": 0.5},
        ],
        "dlt645_meters": [
            {
                "id": "found",
                "bus": "lone",
                "address": "000087654321",
                "profile": "dlt645-2007-generic",
                "metrics": ["elec_import_kwh", "voltage_l1_v"],
            },
            {
                "id": "nobody",
                "bus": "two",
                "address": _addr(9),
                "profile": "dlt645-2007-generic",
                "metrics": ["elec_import_kwh"],
            },
        ],
    }
    cfg = _gateway_file(tmp_path / "gw.yaml", "p1", "mqtt://127.0.0.1:1883", tmp_path / "s.db", dlt)
    r = _gw_cli("check", "-c", str(cfg), "--discover-dlt645", "lone")
    assert r.returncode == 0, r.stderr
    assert "one meter answers at address 000087654321" in r.stdout
    r = _gw_cli("check", "-c", str(cfg), "--discover-dlt645", "two")
    assert r.returncode == 1 and "only with one meter on the bus" in r.stderr, r.stderr
    assert two.collisions >= 1
    r = _gw_cli("check", "-c", str(cfg), "--discover-dlt645", "nosuch")
    assert r.returncode == 2 and "known: lone, two" in r.stderr
    r = _gw_cli("check", "-c", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr  # the meter at address …09 is not there
    assert "elec_import_kwh" in r.stdout and "voltage_l1_v" in r.stdout and "no reply within" in r.stdout


def test_end_to_end_into_the_store(
    dlt_bus: Any, broker: Any, db: str, unique_id: str, tmp_path: Path
) -> None:
    """Simulator (pty, 2400 8E1 timing) → gateway process → broker → ingest → v_readings and v_counter_daily."""
    bus = dlt_bus(transport="pty", baudrate=2400, reply_delay_ms=5)
    bus.add_meter(_addr(1), seed=1, rated_power_kw=100, time_scale=3600.0)  # an hour of energy a second
    bus.add_meter(_addr(2), edition="1997", seed=2, rated_power_kw=40, time_scale=3600.0)
    bus.start()
    pf = ParkFile.model_validate(
        {
            "park": {"id": unique_id, "name": "test park"},
            "firms": [
                {
                    "id": "f1",
                    "name": "firm",
                    "land_mu": 10,
                    "gateways": [
                        {
                            "id": "gw1",
                            "devices": [
                                {"id": "new", "kind": "meter", "profile": "dlt645-2007-generic"},
                                {"id": "old", "kind": "meter", "profile": "dlt645-1997-generic"},
                            ],
                        }
                    ],
                }
            ],
        }
    )
    with psycopg.connect(db) as conn:
        import_registry(conn, pf)
    tariffs = [
        "elec_import_kwh",
        "elec_import_kwh_sharp",
        "elec_import_kwh_peak",
        "elec_import_kwh_flat",
        "elec_import_kwh_valley",
    ]
    dlt = {
        "dlt645_buses": [
            {
                "name": "rs485",
                "type": "serial",
                "port": bus.port_path,
                "parity": "N",
                "timeout_s": 1.0,
                "inter_frame_gap_ms": 5,
            }
        ],
        "dlt645_meters": [
            {
                "id": "new",
                "bus": "rs485",
                "address": _addr(1),
                "profile": "dlt645-2007-generic",
                "interval_s": 1,
                "metrics": [*tariffs, "active_power_kw", "voltage_l1_v"],
            },
            {
                "id": "old",
                "bus": "rs485",
                "address": _addr(2),
                "profile": "dlt645-1997-generic",
                "interval_s": 1,
                "metrics": ["elec_import_kwh", "voltage_l1_v"],
            },
        ],
    }
    cfg = _gateway_file(tmp_path / "gw.yaml", unique_id, broker.url, tmp_path / "spool.db", dlt)
    ingest = IngestProcess(
        db,
        broker.url,
        f"pp-test-{unique_id}",
        free_port(),
        park=unique_id,
        flush_interval_s=0.05,
        rollup_interval_s=0,
    )
    ingest.start(log_path=str(tmp_path / "ingest.log"))
    gw = gateway_process(cfg, tmp_path / "gateway.log")
    try:
        deadline = time.monotonic() + 40
        n = 0
        while time.monotonic() < deadline:
            with psycopg.connect(db, autocommit=True) as c:
                row = c.execute(
                    "SELECT count(DISTINCT ts) FROM v_readings WHERE park_id = %s AND device_id = 'new' "
                    "AND metric = 'elec_import_kwh' AND quality = 0",
                    (unique_id,),
                ).fetchone()
            n = int(row[0]) if row else 0
            if n >= 4:
                break
            time.sleep(0.5)
        assert n >= 4, (tmp_path / "gateway.log").read_text()[-3000:]
    finally:
        gw.terminate()
        gw.wait(20)
        ingest.stop()
    with psycopg.connect(db, autocommit=True) as c:
        rows = c.execute(
            "SELECT ts, metric, value, quality, unit FROM v_readings WHERE park_id = %s AND device_id = 'new' "
            "AND metric = ANY(%s)",
            (unique_id, tariffs),
        ).fetchall()
        by_ts: dict[Any, dict[str, float]] = {}
        for ts, metric, value, q, _unit in rows:
            assert q == 0
            by_ts.setdefault(ts, {})[metric] = float(value)
        full = [v for v in by_ts.values() if len(v) == 5]  # one block read: one timestamp for all five
        assert full, by_ts
        for v in full:
            assert sum(v[t] for t in tariffs[1:]) == pytest.approx(v["elec_import_kwh"], abs=1e-6)
        old = c.execute(
            "SELECT value FROM v_readings WHERE park_id = %s AND device_id = 'old' AND metric = 'voltage_l1_v' "
            "AND quality = 0",
            (unique_id,),
        ).fetchall()
        assert old and all(float(r[0]) in (229.0, 230.0, 231.0) for r in old)
        c.execute("SELECT pp_refresh_rollups()")
        inc = c.execute(
            "SELECT sum(cd.increase) FROM v_counter_daily cd JOIN devices d USING (device_pk) "
            "JOIN metrics m ON m.metric_id = cd.metric_id WHERE d.gateway_id = 'gw1' AND d.device_id = 'new' "
            "AND m.name = 'elec_import_kwh' AND d.device_pk IN (SELECT device_pk FROM v_readings WHERE park_id = %s)",
            (unique_id,),
        ).fetchone()
    assert inc is not None and inc[0] is not None and float(inc[0]) > 20.0, (
        inc
    )  # ≥ 4 simulated hours at ≥ 40 kW
