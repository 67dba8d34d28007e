"""Counter steps: rollover, reset, replacement and implausible jumps are flagged, never turned into huge or negative use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_gw_helpers import RunningGateway, collector, make_config, sim_factory  # noqa: F401

from gateway.counters import CounterTracker, detect_step
from parkpulse.wire import decode_batch


def _consumption(prev: float, value: float, ev: dict[str, Any] | None) -> float:
    return value - prev + (ev["correction"] if ev else 0.0)


def test_plain_rise_is_not_flagged() -> None:
    assert detect_step(100.0, 100.5, dt_s=60, max_rate_per_h=100) is None
    assert detect_step(100.0, 100.0, dt_s=1) is None


def test_reset_rollover_replaced_jump() -> None:
    ev = detect_step(5000.0, 0.2, dt_s=5)
    assert ev is not None and ev["event"] == "reset" and _consumption(5000.0, 0.2, ev) == pytest.approx(0.2)
    span = 2**32 * 0.01
    ev = detect_step(span - 1.0, 0.5, dt_s=5, span=span)
    assert (
        ev is not None
        and ev["event"] == "rollover"
        and _consumption(span - 1.0, 0.5, ev) == pytest.approx(1.5)
    )
    ev = detect_step(5000.0, 1234.0, dt_s=5)
    assert ev is not None and ev["event"] == "replaced" and _consumption(5000.0, 1234.0, ev) == 0.0
    ev = detect_step(5000.0, 90000.0, dt_s=5, max_rate_per_h=100)
    assert ev is not None and ev["event"] == "jump" and _consumption(5000.0, 90000.0, ev) == 0.0
    # a rise the rated power can explain is fine
    assert detect_step(5000.0, 5000.1, dt_s=5, max_rate_per_h=100) is None


def test_tracker_keeps_state_per_device_and_metric() -> None:
    t = CounterTracker()
    assert t.observe("a", "elec_import_kwh", 0, 10.0) is None
    assert t.observe("b", "elec_import_kwh", 0, 1.0) is None
    assert t.observe("a", "elec_import_kwh", 1000, 11.0) is None
    ev = t.observe("a", "elec_import_kwh", 2000, 0.0)
    assert ev == {"event": "reset", "prev": 11.0, "correction": 11.0}
    assert t.events == 1
    assert sorted(x[0] for x in t.take_dirty()) == ["a", "b"]


@pytest.mark.parametrize(("fault", "event"), [("counter_reset", "reset"), ("meter_replaced", "replaced")])
def test_simulated_reset_and_replacement_reach_the_wire_flagged(
    fault: str,
    event: str,
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory()
    dev = sim.add_device(device_id=1, model="eastron-sdm630", seed=5)
    sim.start()
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        devices=[{"id": "m1", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630", "interval_s": 0.2}],
    )
    with collector(broker.port, unique_id) as col, RunningGateway(cfg):
        assert col.wait(lambda c: len(c.readings()) > 20, 15)
        before = dev.truth()["elec_import_kwh"]
        if fault == "meter_replaced":
            dev.inject(fault, base=max(1.0, before / 3))
        else:
            dev.inject(fault)
        assert col.wait(lambda c: any(len(r) > 5 for r in c.readings()), 15)
        time.sleep(0.5)
    flagged = [r for r in col.readings() if len(r) > 5]
    assert len({(r[1], r[5]["event"]) for r in flagged if r[1] == "elec_import_kwh"}) == 1
    ev = next(r for r in flagged if r[1] == "elec_import_kwh")
    assert ev[5]["event"] == event
    assert ev[5]["prev"] == pytest.approx(before, rel=1e-3)
    assert 0 <= _consumption(ev[5]["prev"], ev[3], ev[5]) < 1.0  # no negative or huge consumption
    # every batch still passes the platform's decoder with the event attached
    for b in col.unique_batches().values():
        import orjson

        decoded = decode_batch(orjson.dumps(b))
        assert not decoded.rejected
