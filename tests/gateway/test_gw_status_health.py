"""The retained status carries per-device poll health (issue 5): birth and every status_interval_s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from test_gw_helpers import RunningGateway, collector, make_config, sim_factory  # noqa: F401

from parkpulse.wire import Status


def test_status_is_refreshed_with_the_health_of_each_polled_device(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory()
    sim.add_device(device_id=1, model="chint-dtsu666", seed=1)
    flaky = sim.add_device(device_id=2, model="chint-dtsu666", seed=2)
    sim.start()
    flaky.inject("exception")
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout_s": 0.3}],
        devices=[
            {"id": "main", "bus": "lan", "device_id": 1, "profile": "chint-dtsu666", "interval_s": 0.2},
            {"id": "flaky", "bus": "lan", "device_id": 2, "profile": "chint-dtsu666", "interval_s": 0.2},
        ],
        uplink={"status_interval_s": 0.5},
    )
    t0 = time.monotonic()
    with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
        assert col.wait(lambda c: any(s["state"] == "online" for s in c.status), 15), "birth"

        def healthy(c: Any) -> bool:
            return any(
                s["state"] == "online"
                and s.get("device_health", {}).get("main", {}).get("poll_lag_ms_p99") is not None
                and s["device_health"].get("flaky", {}).get("exceptions", 0) >= 1
                for s in c.status
            )

        assert col.wait(healthy, 15), col.status[-3:]
        assert col.wait(lambda c: sum(s["state"] == "online" for s in c.status) >= 4, 15), (
            "refreshed every status_interval_s"
        )
        assert rg.gw is not None
        stats = {s.device: s for s in rg.gw.device_stats()}
    elapsed = time.monotonic() - t0
    online = [s for s in col.status if s["state"] == "online"]
    assert len(online) >= 4
    assert len(online) <= elapsed / 0.5 + 3, "not more often than the interval"
    last = Status.model_validate(next(s for s in reversed(online) if "main" in s.get("device_health", {})))
    main = last.device_health["main"]
    assert main.poll_lag_ms_p99 is not None and 0 <= main.poll_lag_ms_p99 < 5000
    assert main.poll_lag_ms_last is not None and main.poll_lag_ms_last >= 0
    assert main.exceptions == 0 and main.timeouts == 0
    flaky_h = last.device_health["flaky"]
    assert flaky_h.exceptions is not None and 1 <= flaky_h.exceptions <= stats["flaky"].exception_errors
    # the last will / clean stop stays "offline"
    assert col.wait(lambda c: c.status[-1]["state"] == "offline", 10)


def test_poll_lag_reaches_v_device_last_seen_end_to_end(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    db: str,
    unique_id: str,
    tmp_path: Path,
) -> None:
    """Simulator → gateway status → MQTT → ingest process → device_health → the contract view."""
    import psycopg
    from test_gw_store_forward import _ingest, _register, _stop

    sim = sim_factory()
    sim.add_device(device_id=1, model="eastron-sdm630", seed=1)
    sim.start()
    _register(db, unique_id, ["main"])
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        devices=[
            {"id": "main", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630", "interval_s": 0.3}
        ],
        uplink={"status_interval_s": 0.5},
    )
    ing = _ingest(db, broker.url, tmp_path / "ingest.log")

    def row() -> tuple[Any, ...] | None:
        with psycopg.connect(db, autocommit=True) as c:
            return c.execute(
                "SELECT poll_lag_ms_p99, poll_lag_ms_last, health_reported_at FROM v_device_last_seen WHERE device_id = 'main'"
            ).fetchone()

    try:
        with RunningGateway(cfg):
            deadline = time.monotonic() + 30
            got = row()
            while (got is None or got[0] is None) and time.monotonic() < deadline:
                time.sleep(0.2)
                got = row()
    finally:
        _stop(ing)
    assert got is not None and got[0] is not None, (tmp_path / "ingest.log").read_text()[-2000:]
    assert 0 <= got[0] < 5000 and got[1] is not None and got[1] >= 0 and got[2] is not None
