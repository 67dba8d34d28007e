"""The spool: seq never reused across restarts; bounded size thins gauges first, keeps energy, reports gaps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from test_gw_helpers import RunningGateway, collector, make_config, sim_factory  # noqa: F401

from gateway.spool import Spool


def _rows(t0: int, n: int, devices: int = 5) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for i in range(n):
        ts = t0 + i * 1000
        for d in range(devices):
            rows.append([f"m{d}", "elec_import_kwh", ts, 1000.0 + i, 0])
            rows.append([f"m{d}", "active_power_kw", ts, 50.0 + i % 7, 0])
            rows.append([f"m{d}", "voltage_l1_v", ts, 230.0, 0])
    return rows


def test_seq_is_monotonic_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_bytes=10_000_000) as s:
        seqs = [s.append(_rows(0, 2)) for _ in range(3)]
        s.ack(seqs)
        assert s.depth == 0
    with Spool(path, max_bytes=10_000_000) as s:
        assert s.append(_rows(0, 1)) == 3  # not reused even though the spool was emptied
        assert [b.seq for b in s.pending(-1, 10)] == [3]


def test_full_spool_thins_gauges_first_keeps_energy_and_records_gaps(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=200_000, thin_window_s=60) as s:
        t0 = 1_700_000_000_000
        for k in range(40):
            s.append(_rows(t0 + k * 10_000, 10))
        assert s.bytes <= 200_000
        assert s.dropped_readings > 0
        kept = [r for b in s.pending(-1, 1000) for r in orjson.loads(b.rows)]
        gaps = [g for b in s.pending(-1, 1000) if b.gaps for g in orjson.loads(b.gaps)]
        energy = [r for r in kept if r[1] == "elec_import_kwh"]
        assert len(energy) == 40 * 10 * 5, "no cumulative energy reading dropped"
        assert {g["metric"] for g in gaps} <= {"active_power_kw", "voltage_l1_v"}
        dropped = sum(g["count"] for g in gaps)
        assert dropped == s.dropped_readings == 40 * 10 * 5 * 3 - len(kept)
        for g in gaps:
            assert g["reason"].startswith("spool_full") and g["start"] <= g["end"] and g["device"]
        assert sum(x["count"] for x in s.dropped_spans()) == dropped


def test_when_only_energy_is_left_counters_are_thinned_before_dropped(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=40_000, counter_window_s=900) as s:
        t0 = 1_700_000_000_000
        for k in range(30):
            s.append(
                [
                    [f"m{d}", "elec_import_kwh", t0 + (k * 20 + i) * 1000, 1.0 * i, 0]
                    for i in range(20)
                    for d in range(5)
                ]
            )
        assert s.bytes <= 40_000
        kept = [r for b in s.pending(-1, 1000) for r in orjson.loads(b.rows)]
        assert kept, "thinning keeps one counter reading per window rather than dropping everything"
        assert {r[0] for r in kept} == {f"m{d}" for d in range(5)}


def test_gap_reaches_the_platform(sim_factory: Any, broker: Any, unique_id: str, tmp_path: Path) -> None:  # noqa: F811
    """With the broker unreachable the small spool fills; after reconnect the batches carry the gaps."""
    sim = sim_factory()
    for i in range(1, 4):
        sim.add_device(device_id=i, model="eastron-sdm630", seed=i)
    sim.start()
    from parkpulse.services import free_port

    dead_port = free_port()
    cfg = make_config(
        park=unique_id,
        broker_url=f"mqtt://127.0.0.1:{dead_port}",
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        devices=[
            {"id": f"m{i}", "bus": "lan", "device_id": i, "profile": "eastron-sdm630", "interval_s": 0.1}
            for i in range(1, 4)
        ],
        spool_extra={"max_mb": 0.05},
    )
    with RunningGateway(cfg) as rg:
        deadline = time.monotonic() + 20
        while rg.gw is not None and rg.gw.spool.dropped_readings == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rg.gw is not None and rg.gw.spool.dropped_readings > 0
    cfg.uplink.url = broker.url
    with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
        assert rg.gw is not None
        assert col.wait(lambda c: any(b.get("gaps") for b in c.batches), 20)
        assert col.wait(lambda c: rg.gw is not None and rg.gw.spool.depth == 0, 20)
    gaps = [g for b in col.unique_batches().values() for g in b.get("gaps", [])]
    energy = [r for r in col.readings() if r[1] == "elec_import_kwh"]
    assert gaps and all(g["metric"] != "elec_import_kwh" for g in gaps)
    assert energy


def test_replay_is_in_order_with_original_timestamps_at_a_bounded_rate(
    broker: Any, unique_id: str, tmp_path: Path
) -> None:
    """A backlog of 60 spooled batches (e.g. after an outage) goes out oldest first, at most at the configured rate."""
    path = tmp_path / "spool.db"
    t0 = 1_700_000_000_000
    with Spool(path, max_bytes=50_000_000) as s:
        for k in range(60):
            s.append([["m1", "elec_import_kwh", t0 + k * 1000, 100.0 + k, 0]])
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=path,
        buses=[],
        devices=[],
        uplink={"replay_batches_per_s": 20, "max_inflight": 4},
    )
    with collector(broker.port, unique_id) as col:
        start = time.monotonic()
        with RunningGateway(cfg):
            assert col.wait(lambda c: len(c.unique_batches()) == 60, 20)
            took = time.monotonic() - start
    seqs = [b["seq"] for b in col.batches]
    assert seqs == sorted(seqs) == list(range(60)), "replayed in order"
    assert [b["readings"][0][2] for b in col.batches] == [t0 + k * 1000 for k in range(60)], (
        "original timestamps"
    )
    assert took >= (60 - 4) / 20 - 0.2, f"60 batches at ≤ 20/s (burst 4) cannot take {took:.2f} s"


def test_unwritable_spool_keeps_a_bounded_buffer_and_reports_the_gap(
    broker: Any, unique_id: str, tmp_path: Path
) -> None:
    """Disk full cannot be produced here without mounting a filesystem, so the spool's write is made
    to fail (the one stand-in in these tests): readings wait in memory up to queue_readings, the
    excess is dropped and reported as a gap in the first batch that can be written."""
    from gateway.runtime import Gateway
    from gateway.spool import SpoolError

    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[],
        devices=[],
        batching={"max_readings": 50, "queue_readings": 100},
    )
    gw = Gateway(cfg)
    gw.spool.open()
    try:
        real = gw.spool.append

        def full(*a: Any, **k: Any) -> int:
            raise SpoolError("spool: database or disk is full")

        gw.spool.append = full  # type: ignore[method-assign]
        for k in range(6):
            gw._emit([["m1", "active_power_kw", 1_700_000_000_000 + k * 50 + i, 1.0, 0] for i in range(50)])
        assert len(gw._buf) == 100 and gw.memory_dropped == 200 and gw.spool_errors >= 1
        gw.spool.append = real  # type: ignore[method-assign]
        gw._seal()
        batches = gw.spool.pending(-1, 10)
        assert sum(b.n for b in batches) == 100
        gaps = [g for b in batches if b.gaps for g in orjson.loads(b.gaps)]
        assert gaps == [
            {
                "device": "m1",
                "metric": "active_power_kw",
                "start": "2023-11-14T22:13:20.000Z",
                "end": "2023-11-14T22:13:20.199Z",
                "count": 200,
                "reason": "spool_unwritable",
            }
        ]
    finally:
        gw.spool.close()
