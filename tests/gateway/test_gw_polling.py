"""Polling behaviour: a dead device affects only itself; RTU devices one at a time; two error channels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from test_gw_helpers import RunningGateway, collector, make_config, sim_factory  # noqa: F401


def test_one_dead_device_on_a_bus_of_ten_does_not_slow_the_others(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory()
    devs = [sim.add_device(device_id=i, model="eastron-sdm630", seed=i) for i in range(1, 11)]
    sim.start()
    devs[3].inject("timeout")  # unit 4 never answers
    interval = 0.5
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        # ten units behind ONE endpoint (a TCP-to-RS-485 converter): requests go one at a time
        buses=[{"name": "converter", "type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout_s": 0.4}],
        devices=[
            {
                "id": f"m{i}",
                "bus": "converter",
                "device_id": i,
                "profile": "eastron-sdm630",
                "interval_s": interval,
            }
            for i in range(1, 11)
        ],
    )
    run_s = 6.0
    with RunningGateway(cfg) as rg:
        time.sleep(run_s)
        assert rg.gw is not None
        stats = {s.device: s for s in rg.gw.device_stats()}
    dead = stats["m4"]
    assert dead.transport_errors >= 1 and dead.ok == 0 and dead.exception_errors == 0
    assert dead.polls < run_s / interval - 2, "the dead device is backed off"
    for name, s in stats.items():
        if name == "m4":
            continue
        assert s.transport_errors == 0 and s.exception_errors == 0, name
        assert s.ok >= run_s / interval - 2, (name, s.ok)  # kept its poll rate
        assert s.overruns == 0, name


def test_exception_reply_and_timeout_are_separate_error_channels(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory()
    a = sim.add_device(device_id=1, model="chint-dtsu666", seed=1)
    b = sim.add_device(device_id=2, model="chint-dtsu666", seed=2)
    sim.add_device(device_id=3, model="chint-dtsu666", seed=3)
    sim.start()
    a.inject("exception")
    b.inject("timeout")
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout_s": 0.3}],
        devices=[
            {"id": f"d{i}", "bus": "lan", "device_id": i, "profile": "chint-dtsu666", "interval_s": 0.3}
            for i in (1, 2, 3)
        ],
    )
    with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
        assert col.wait(lambda c: {"d1", "d2", "d3"} <= {r[0] for r in c.readings()}, 15)
        time.sleep(1.0)
        assert rg.gw is not None
        stats = {s.device: s for s in rg.gw.device_stats()}
        a.inject(None)
        assert col.wait(lambda c: any(r[0] == "d1" and r[4] == 0 for r in c.readings()), 30), (
            "recovers after the fault clears"
        )
    assert stats["d1"].exception_errors >= 1 and stats["d1"].transport_errors == 0
    assert stats["d2"].transport_errors >= 1 and stats["d2"].exception_errors == 0
    assert stats["d3"].ok >= 3 and stats["d3"].consecutive_failures == 0
    bad = [r for r in col.readings() if r[0] in ("d1", "d2") and r[4] == 4]
    assert bad and all(r[3] is None for r in bad), "a failed read is sent as quality bad with a null value"
    assert all(r[4] == 0 for r in col.readings() if r[0] == "d3")


def test_rtu_bus_polls_devices_one_at_a_time(broker: Any, unique_id: str, tmp_path: Path) -> None:
    from simulators.rtu import RtuSimulator

    rtu = RtuSimulator(baudrate=19200)
    d1 = rtu.add_device(device_id=1, model="acrel-adl400", seed=1)
    d2 = rtu.add_device(device_id=2, model="chint-dtsu666", seed=2)
    rtu.start()
    try:
        d1.freeze()
        d2.freeze()
        cfg = make_config(
            park=unique_id,
            broker_url=broker.url,
            spool=tmp_path / "spool.db",
            buses=[
                {"name": "rs485", "type": "rtu", "port": rtu.port_path, "baudrate": 19200, "timeout_s": 1.0}
            ],
            devices=[
                {"id": "adl", "bus": "rs485", "device_id": 1, "profile": "acrel-adl400", "interval_s": 0.5},
                {"id": "dtsu", "bus": "rs485", "device_id": 2, "profile": "chint-dtsu666", "interval_s": 0.5},
            ],
        )
        with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
            assert col.wait(lambda c: {"adl", "dtsu"} <= {r[0] for r in c.readings() if r[4] == 0}, 20)
            assert rg.gw is not None
            src = [s for s in rg.gw.sources if s.name.startswith("modbus:rs485")]
            assert len(src) == 1, "both devices share the one serial link"
        got = {(r[0], r[1]): r[3] for r in col.readings() if r[4] == 0}
        for metric, want in d1.truth().items():
            assert abs(got[("adl", metric)] - want) <= 1e-6 * max(1.0, abs(want)) + 0.005, metric
        for metric, want in d2.truth().items():
            assert abs(got[("dtsu", metric)] - want) <= 1e-5 * max(1.0, abs(want)), metric
    finally:
        rtu.stop()
