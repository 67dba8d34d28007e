"""Exactly-once storage, dead letters, sequence gaps and bookkeeping, against a running ingest process."""

from __future__ import annotations

import json
import time

import orjson
from ingest_testkit import Park, q1, readings_of, send, wait_for

from ingest.harness import wait_stored
from parkpulse.services import MosquittoBroker
from parkpulse.wire import status_topic


def _batch(gw: str, seq: int, readings: list[list[object]], **extra: object) -> bytes:
    return orjson.dumps(
        {"v": 1, "gateway": gw, "seq": seq, "sent_at": int(time.time() * 1000), "readings": readings, **extra}
    )


def test_redelivered_batches_store_nothing_twice(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    ing = start_ingest(broker.url, prune_interval_s=0.3, prune_keep_s=0)
    t0 = int(time.time() * 1000) - 3_600_000
    msgs = []
    for g in park.gateways:
        for i in range(5):
            msgs.append((g.topic, g.batch(t0 + i * 10_000, 120)))
    send(broker.url, msgs)
    wait_stored(db, {g.gateway: 4 for g in park.gateways}, timeout=20)
    assert readings_of(db, park) == (1200, 1200)

    # the broker (or a gateway) sends every batch again: same (gateway, seq)
    send(broker.url, msgs)
    wait_for(
        lambda: ing.metrics().get("pp_ingest_duplicate_batches_skipped_total", 0) >= 10,
        what="duplicates skipped",
    )
    assert readings_of(db, park) == (1200, 1200)
    assert q1(db, "SELECT count(*) FROM ingest_batches") in (0, 10)  # may already be pruned
    assert q1(db, "SELECT sum(max_seq + 1) FROM gateway_seq") == 10
    assert q1(db, "SELECT sum(readings) FROM device_status") == 1200
    # the service prunes batch keys below the watermark; the watermark alone still recognises them
    wait_for(lambda: q1(db, "SELECT count(*) FROM ingest_batches") == 0, what="batch keys pruned")
    send(broker.url, msgs[:3])
    wait_for(
        lambda: ing.metrics().get("pp_ingest_duplicate_batches_skipped_total", 0) >= 13,
        what="watermark dedupe",
    )
    assert readings_of(db, park) == (1200, 1200)

    # same readings re-sent under new sequence numbers: the row key refuses them, counted
    g = park.gateways[0]
    again = [(g.topic, g.batch(t0 + i * 10_000, 120)) for i in range(2)]
    send(broker.url, again)
    wait_for(
        lambda: ing.metrics().get("pp_ingest_duplicate_rows_skipped_total", 0) >= 240, what="duplicate rows"
    )
    assert readings_of(db, park) == (1200, 1200)
    assert ing.metrics()["pp_ingest_readings_stored_total"] == 1200


def test_good_and_bad_readings_of_one_batch(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    ing = start_ingest(broker.url, rollup_interval_s=0.3)
    g = park.gateways[0]
    now = int(time.time() * 1000)
    t = now - 60_000
    dev = g.devices[0]
    rows = [
        [dev, "active_power_kw", t, 10.5, 0],  # 0 good
        [dev, "active_power_kw", t + 1000, "x", 0],  # 1 value not a number
        ["no-such-meter", "active_power_kw", t, 1.0, 0],  # 2 unknown device
        [dev, "no_such_metric", t, 1.0, 0],  # 3 unknown metric
        [dev, "active_power_kw", now + 86_400_000, 1.0, 0],  # 4 future
        [dev, "active_power_kw", t + 2000, 1.0, 9],  # 5 bad quality
        [dev, "active_power_kw", t + 3000, None, 4],  # 6 good: null with quality bad
        [
            dev,
            "elec_import_kwh",
            t,
            5.0,
            0,
            {"event": "reset", "prev": 1000.0, "correction": 1000.0},
        ],  # 7 good + event
        [dev, "voltage_l1_v", t, 230.1, 3],  # 8 good, uncertain
    ]
    payload = _batch(
        g.gateway,
        0,
        rows,
        gaps=[
            {
                "device": dev,
                "metric": "active_power_kw",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T00:10:00Z",
                "count": 600,
                "reason": "spool full",
            },
            {"start": "yesterday", "end": 5, "count": 1, "reason": "x"},
        ],
    )
    # NaN as a bare token, as Python's json writes it
    nan_payload = json.dumps(
        {
            "v": 1,
            "gateway": g.gateway,
            "seq": 1,
            "sent_at": now,
            "readings": [[dev, "current_l1_a", t, float("nan"), 0], [dev, "current_l2_a", t, 2.0, 0]],
        }
    ).encode()
    other = park.gateways[1]
    send(
        broker.url,
        [
            (g.topic, payload),
            (g.topic, nan_payload),
            (g.topic, b"{not json"),
            (
                g.topic,
                _batch(other.gateway, 7, [[dev, "active_power_kw", t, 1.0, 0]]),
            ),  # payload gateway != topic
            (g.topic, orjson.dumps({"v": 2, "gateway": g.gateway, "seq": 3})),
            (
                status_topic(g.park, g.firm, g.gateway),
                orjson.dumps(
                    {
                        "v": 1,
                        "gateway": g.gateway,
                        "state": "online",
                        "version": "1.2.3",
                        "devices": g.devices,
                    }
                ),
            ),
            (status_topic(g.park, g.firm, g.gateway), b'{"v": 1, "gateway": 5}'),
        ],
    )
    wait_stored(db, {g.gateway: 1}, timeout=20)
    wait_for(lambda: q1(db, "SELECT count(*) FROM gateway_status") == 1, what="status stored")
    wait_for(lambda: ing.health() and ing.health()["unacked"] == 0, what="all acknowledged")

    assert readings_of(db, park) == (5, 5)
    dead = {r[0]: r[1] for r in _rows(db, "SELECT field, reason FROM dead_letters")}
    assert set(dead) >= {
        "readings[1].value",
        "readings[2].device",
        "readings[3].metric",
        "readings[4].ts",
        "readings[5].quality",
        "gaps[1].start",
        "readings[0].value",
        "payload",
        "gateway",
        "v",
    }, dead
    assert "no-such-meter" in dead["readings[2].device"] and "no_such_metric" in dead["readings[3].metric"]
    assert "future" in dead["readings[4].ts"] and "NaN" in dead["readings[0].value"]
    assert q1(db, "SELECT count(*) FROM dead_letters WHERE field = 'gateway' AND topic LIKE '%%/status'") == 1
    assert q1(db, "SELECT n_rejected FROM ingest_batches WHERE seq = 0") == 6
    assert _rows(db, "SELECT event, prev, value, correction FROM counter_events") == [
        ("reset", 1000.0, 5.0, 1000.0)
    ]
    assert _rows(db, "SELECT device_id, count, reason, source FROM data_gaps") == [
        (dev, 600, "spool full", "gateway")
    ]
    assert q1(
        db,
        "SELECT value IS NULL AND quality = 4 FROM v_readings WHERE ts = to_timestamp(%s / 1000.0)",
        t + 3000,
    )
    assert q1(db, "SELECT state || ' ' || version FROM gateway_status") == "online 1.2.3"
    assert q1(db, "SELECT readings FROM device_status") == 5
    m = ing.metrics()
    assert m['pp_ingest_dead_letters_total{scope="reading"}'] == 7
    assert m['pp_ingest_dead_letters_total{scope="message"}'] == 4
    # the service refreshes the rollups itself; they see exactly the stored readings
    wait_for(lambda: q1(db, "SELECT count(*) FROM rollup_dirty") == 0, what="rollups refreshed")
    assert q1(db, "SELECT sum(n) FROM rollup_15m") == 4  # count(value): the null reading is not counted
    assert q1(db, "SELECT max(worst_quality) FROM rollup_15m") == 4


def test_sequence_gaps_recorded_filled_and_exported(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    ing = start_ingest(broker.url, gaps_gauge_interval_s=0.2)
    g = park.gateways[0]
    t0 = int(time.time() * 1000) - 3_600_000
    payloads = [g.batch(t0 + i * 10_000, 60) for i in range(7)]
    send(broker.url, [(g.topic, payloads[i]) for i in (0, 1, 3, 6)])
    wait_for(lambda: q1(db, "SELECT max_seq FROM gateway_seq") == 6, what="seq 6")
    gaps = _rows(db, "SELECT from_seq, to_seq, filled_at IS NULL FROM seq_gaps ORDER BY 1")
    assert gaps == [(2, 2, True), (4, 5, True)]
    assert q1(db, "SELECT contiguous_seq FROM gateway_seq") == 1
    m = ing.metrics()
    assert m["pp_ingest_seq_gaps_detected_total"] == 2 and m["pp_ingest_seq_gap_batches_total"] == 3
    wait_for(lambda: ing.metrics()["pp_ingest_open_seq_gap_batches"] == 3, what="open-gap gauge")
    assert q1(db, "SELECT open_seq_gaps FROM v_gateway_status WHERE gateway_id = %s", g.gateway) == 2

    send(broker.url, [(g.topic, payloads[2]), (g.topic, payloads[5])])  # late arrivals
    wait_for(lambda: q1(db, "SELECT contiguous_seq FROM gateway_seq") == 3, what="watermark 3")
    gaps = _rows(db, "SELECT from_seq, to_seq, filled_at IS NULL FROM seq_gaps ORDER BY 1")
    assert gaps == [(2, 2, False), (4, 4, True), (5, 5, False)]
    assert ing.metrics()["pp_ingest_seq_gap_batches_filled_total"] == 2
    wait_for(
        lambda: ing.metrics()["pp_ingest_open_seq_gap_batches"] == 1, what="open-gap gauge after filling"
    )
    assert q1(db, "SELECT count(*) FROM v_data_gaps WHERE kind = 'seq' AND filled_at IS NULL") == 1
    assert readings_of(db, park) == (360, 360)


def _rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        return list(c.execute(sql).fetchall())


def test_content_the_database_refuses_is_isolated(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    """A message PostgreSQL itself refuses is dead-lettered; the rest of its flush is stored.

    NUL in a text once reached the database this way; the decoder now refuses it first (the
    field is named), so a CHECK constraint added here plays the database's refusal."""
    import psycopg

    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            "ALTER TABLE gateway_status ADD CONSTRAINT test_no_beta CHECK (version NOT LIKE '%%beta%%')"
        )
    ing = start_ingest(broker.url, flush_interval_s=0.5)
    g = park.gateways[0]
    t0 = int(time.time() * 1000) - 3_600_000
    refused = orjson.dumps({"v": 1, "gateway": g.gateway, "state": "online", "version": "1.0-beta"})
    nul = orjson.dumps({"v": 1, "gateway": g.gateway, "state": "online", "version": "1.0\u0000beta"})
    st = status_topic(g.park, g.firm, g.gateway)
    send(
        broker.url,
        [(g.topic, g.batch(t0, 60)), (st, refused), (g.topic, g.batch(t0 + 60_000, 60)), (st, nul)],
    )
    wait_stored(db, {g.gateway: 1}, timeout=20)
    wait_for(lambda: ing.health()["unacked"] == 0, what="all acknowledged")
    assert readings_of(db, park) == (120, 120)
    dead = dict(
        _rows(db, "SELECT coalesce(field, ''), reason FROM dead_letters WHERE topic LIKE '%%/status'")
    )
    assert "database refused" in dead[""] and "test_no_beta" in dead[""]
    assert "pattern" in dead["version"]
    assert ing.metrics()['pp_ingest_db_errors_total{kind="refused"}'] >= 1


def test_device_registered_while_running_is_picked_up(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    from parkpulse.db import connect
    from parkpulse.registry import import_registry

    start_ingest(broker.url)
    g = park.gateways[0]
    t = int(time.time() * 1000) - 60_000
    send(broker.url, [(g.topic, _batch(g.gateway, 0, [["m-new", "active_power_kw", t, 1.0, 0]]))])
    wait_stored(db, {g.gateway: 0}, timeout=20)
    assert q1(db, "SELECT field FROM dead_letters") == "readings[0].device"
    gw = park.pf.firms[0].gateways[0]
    gw.devices.append(gw.devices[0].model_copy(update={"id": "m-new"}))
    with connect(db) as conn:
        import_registry(conn, park.pf)
    send(broker.url, [(g.topic, _batch(g.gateway, 1, [["m-new", "active_power_kw", t, 2.0, 0]]))])
    wait_stored(db, {g.gateway: 1}, timeout=20)
    assert q1(db, "SELECT value FROM v_readings WHERE device_id = 'm-new'") == 2.0
    assert q1(db, "SELECT count(*) FROM dead_letters") == 1
