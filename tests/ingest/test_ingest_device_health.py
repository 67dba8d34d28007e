"""Issue 5: the gateway's per-device poll health in its status message lands in v_device_last_seen."""

from __future__ import annotations

import orjson
from ingest_testkit import Park, q1, send, wait_for

from parkpulse.services import MosquittoBroker
from parkpulse.wire import status_topic


def _rows(dsn: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(sql, args).fetchall()


def test_status_device_health_lands_in_v_device_last_seen(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    start_ingest(broker.url)
    g = park.gateways[0]
    d0, d1 = g.devices[0], g.devices[1]
    health = {
        d0: {
            "poll_lag_ms_last": 3.5,
            "poll_lag_ms_p99": 41.25,
            "overruns": 1,
            "timeouts": 2,
            "exceptions": 0,
        },
        d1: {"timeouts": 7},  # every field optional
        "not-registered": {"poll_lag_ms_p99": 9.0},  # ignored
    }
    status = {
        "v": 1,
        "gateway": g.gateway,
        "state": "online",
        "ts": "2026-11-25T08:00:30Z",
        "version": "0.1.0",
        "devices": g.devices,
        "spool_depth": 0,
        "last_seq": None,
        "device_health": health,
    }
    send(broker.url, [(status_topic(g.park, g.firm, g.gateway), orjson.dumps(status))])
    wait_for(lambda: q1(db, "SELECT count(*) FROM device_health") == 2, what="device health stored")
    assert q1(db, "SELECT state FROM gateway_status WHERE gateway_id = %s", g.gateway) == "online"
    rows = _rows(
        db,
        """SELECT device_id, poll_lag_ms_last, poll_lag_ms_p99, health_reported_at
                        FROM v_device_last_seen WHERE gateway_id = %s ORDER BY device_id""",
        g.gateway,
    )
    by_dev = {r[0]: r[1:] for r in rows}
    assert by_dev[d0][:2] == (3.5, 41.25)
    assert by_dev[d0][2] is not None and by_dev[d0][2].isoformat().startswith("2026-11-25T")
    assert by_dev[d1][:2] == (None, None) and by_dev[d1][2] is not None
    assert all(v == (None, None, None) for k, v in by_dev.items() if k not in (d0, d1))
    assert (
        q1(
            db,
            "SELECT timeouts FROM device_health h JOIN devices d USING (device_pk) WHERE d.device_id = %s",
            d1,
        )
        == 7
    )
    # devices of other gateways (same device ids) are untouched: health maps through (gateway, device)
    assert (
        q1(
            db,
            "SELECT count(*) FROM v_device_last_seen WHERE gateway_id <> %s AND health_reported_at IS NOT NULL",
            g.gateway,
        )
        == 0
    )
    # the view keeps its earlier columns in order; the health columns come last
    cols = [
        r[0]
        for r in _rows(
            db,
            """SELECT column_name FROM information_schema.columns
                                       WHERE table_name = 'v_device_last_seen' ORDER BY ordinal_position""",
        )
    ]
    assert cols[:13] == [
        "park_id",
        "firm_id",
        "gateway_id",
        "device_id",
        "device_pk",
        "kind",
        "poll_interval_s",
        "last_ts",
        "received_at",
        "last_quality",
        "readings",
        "silent_s",
        "enabled",
    ]
    assert cols[13:] == ["poll_lag_ms_last", "poll_lag_ms_p99", "health_reported_at"]

    # a newer status replaces the figures; no dead letter for any of it
    health2 = {
        d0: {"poll_lag_ms_last": 1.0, "poll_lag_ms_p99": 12.0, "overruns": 1, "timeouts": 2, "exceptions": 0}
    }
    status2 = {**status, "ts": "2026-11-25T08:01:00Z", "device_health": health2}
    send(broker.url, [(status_topic(g.park, g.firm, g.gateway), orjson.dumps(status2))])
    wait_for(
        lambda: q1(db, "SELECT poll_lag_ms_p99 FROM v_device_last_seen WHERE device_id = %s", d0) == 12.0,
        what="newer health",
    )
    assert q1(db, "SELECT count(*) FROM dead_letters") == 0


def test_bad_device_health_is_a_dead_letter_naming_the_field(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    start_ingest(broker.url)
    g = park.gateways[0]
    bad = {
        "v": 1,
        "gateway": g.gateway,
        "state": "online",
        "device_health": {g.devices[0]: {"poll_lag_ms_p99": "slow"}},
    }
    send(broker.url, [(status_topic(g.park, g.firm, g.gateway), orjson.dumps(bad))])
    wait_for(lambda: q1(db, "SELECT count(*) FROM dead_letters") == 1, what="dead letter")
    field = q1(db, "SELECT field FROM dead_letters")
    assert field == f"device_health.{g.devices[0]}.poll_lag_ms_p99", field
    assert q1(db, "SELECT count(*) FROM device_health") == 0
