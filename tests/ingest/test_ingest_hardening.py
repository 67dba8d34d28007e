"""Issue 9: no single message stops ingestion. Each case is a probe that once worked against a
running ingest process (real Mosquitto, real PostgreSQL, `python -m ingest run`)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg
from ingest_testkit import Park, q1, send, wait_for

from ingest.harness import IngestProcess, wait_stored
from parkpulse.services import MosquittoBroker

DAY_MS = 86_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _lenient(gw: str, seq: int, readings: list[list[Any]], **extra: Any) -> bytes:
    """What a gateway written with Python's json can send: integers of any size, bare NaN."""
    return json.dumps(
        {"v": 1, "gateway": gw, "seq": seq, "sent_at": _now_ms(), "readings": readings, **extra}
    ).encode()


def _dead(db: str) -> dict[str, str]:
    with psycopg.connect(db, autocommit=True) as c:
        return {
            f: r for f, r in c.execute("SELECT field, reason FROM dead_letters ORDER BY dead_id").fetchall()
        }


def _healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_seq_2_63_is_dead_lettered_and_the_next_gateway_is_stored(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    ing: IngestProcess = start_ingest(broker.url)
    a, b = park.gateways[0], park.gateways[1]
    poison = _lenient(a.gateway, 2**63, [[a.devices[0], "active_power_kw", _now_ms() - 1000, 5.0, 0]])
    send(broker.url, [(a.topic, poison)])
    t_sent = time.monotonic()
    send(broker.url, [(b.topic, b.batch(_now_ms() - 60_000, 30))])
    wait_stored(db, {b.gateway: 0}, timeout=10)
    assert time.monotonic() - t_sent < 10
    dead = _dead(db)
    assert "seq" in dead and "9223372036854775808" in dead["seq"]
    wait_for(lambda: (ing.health() or {}).get("unacked") == 0, what="both messages acknowledged")
    assert (ing.health() or {})["status"] == "ok"
    # and the gateway's own next batch goes on as usual
    send(broker.url, [(a.topic, a.batch(_now_ms() - 30_000, 12))])
    wait_stored(db, {a.gateway: 0}, timeout=10)


def test_oversized_numbers_lose_only_their_reading_or_gap(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    start_ingest(broker.url)
    g = park.gateways[0]
    dev, t = g.devices[0], _now_ms() - 600_000
    huge = int("9" * 400)
    readings = [
        [dev, "elec_import_kwh", t, huge, 0],
        [dev, "elec_import_kwh", t + 1000, 10.0, 0, {"event": "reset", "prev": huge, "correction": 1.0}],
        [dev, "active_power_kw", t, 4.5, 0],
        [dev, "active_power_kw", t + 1000, 5.5, 0],
    ]
    gaps = [
        {"start": t, "end": t + 1000, "count": 2**31, "reason": "spool full"},
        {"start": t, "end": t + 1000, "count": 7, "reason": "spool full"},
    ]
    send(broker.url, [(g.topic, _lenient(g.gateway, 0, readings, gaps=gaps))])
    wait_stored(db, {g.gateway: 0}, timeout=10)
    assert q1(db, "SELECT count(*) FROM readings") == 2
    assert q1(db, "SELECT count FROM data_gaps") == 7
    dead = _dead(db)
    assert set(dead) == {"readings[0].value", "readings[1].event.prev", "gaps[0].count"}
    assert q1(db, "SELECT count(*) FROM dead_letters WHERE reason LIKE '%%internal error%%'") == 0


def test_readings_from_1970_or_long_before_registration_are_refused(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    start_ingest(broker.url)
    g = park.gateways[0]
    dev = g.devices[0]
    old = [[dev, "active_power_kw", k * 30 * DAY_MS, 1.0, 0] for k in range(30)]  # 1970–72
    now = _now_ms()
    window = [
        [dev, "active_power_kw", now - 400 * DAY_MS, 1.0, 0],  # more than a year before registration
        [dev, "active_power_kw", now - 300 * DAY_MS, 2.0, 0],
        [dev, "active_power_kw", now - 1000, 3.0, 0],
    ]
    send(broker.url, [(g.topic, _lenient(g.gateway, 0, old + window))])
    wait_stored(db, {g.gateway: 0}, timeout=10)
    assert q1(db, "SELECT count(*) FROM readings") == 2
    assert (
        q1(db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'readings_y197%%'") == 0
    )  # once 29 partitions
    assert q1(db, "SELECT count(*) FROM dead_letters WHERE field LIKE 'readings[%%].ts'") == 31
    reason = q1(db, "SELECT reason FROM dead_letters WHERE field = 'readings[30].ts'")
    assert "older than device" in reason and "HISTORY_BEFORE_REGISTRATION" in reason


def test_history_window_is_a_setting(db: str, broker: MosquittoBroker, park: Park, start_ingest: Any) -> None:
    start_ingest(broker.url, history_before_registration_days=1000)
    g = park.gateways[0]
    send(
        broker.url,
        [
            (
                g.topic,
                _lenient(g.gateway, 0, [[g.devices[0], "active_power_kw", _now_ms() - 900 * DAY_MS, 1.0, 0]]),
            )
        ],
    )
    wait_stored(db, {g.gateway: 0}, timeout=10)
    assert q1(db, "SELECT count(*) FROM readings") == 1


def test_a_refused_dead_letter_becomes_a_minimal_one_and_the_stream_goes_on(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    """The database refuses the batch and then its dead letter: real triggers stand in for whatever
    could make it do so (the decoder now stops every number that once did)."""
    a, b = park.gateways[0], park.gateways[1]
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(f"""
            CREATE FUNCTION pp_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE check_violation USING MESSAGE = 'refused by test trigger'; END $$;
            CREATE TRIGGER refuse_batch BEFORE INSERT ON ingest_batches FOR EACH ROW
                WHEN (NEW.gateway_id = '{a.gateway}') EXECUTE FUNCTION pp_test_refuse();
            CREATE TRIGGER refuse_full_dead BEFORE INSERT ON dead_letters FOR EACH ROW
                WHEN (length(NEW.payload) > 0) EXECUTE FUNCTION pp_test_refuse();""")
    ing: IngestProcess = start_ingest(broker.url)
    payload = a.batch(_now_ms() - 60_000, 24)
    send(broker.url, [(a.topic, payload)])
    send(broker.url, [(b.topic, b.batch(_now_ms() - 60_000, 24))])
    wait_stored(db, {b.gateway: 0}, timeout=10)
    wait_for(lambda: q1(db, "SELECT count(*) FROM dead_letters") == 1, what="minimal dead letter")
    with psycopg.connect(db, autocommit=True) as c:
        row = c.execute(
            "SELECT topic, gateway_id, seq, payload, payload_bytes, encode(payload_sha256, 'hex'), reason "
            "FROM dead_letters"
        ).fetchone()
    assert row is not None
    topic, gw, seq, body, size, sha, reason = row
    import hashlib

    assert (topic, gw, seq, bytes(body)) == (a.topic, None, None, b"")
    assert size == len(payload) and sha == hashlib.sha256(payload).hexdigest()
    assert "refused by test trigger" in reason
    wait_for(lambda: (ing.health() or {}).get("unacked") == 0, what="the refused message acknowledged")
    assert ing.metrics()["pp_ingest_dead_letters_minimal_total"] == 1

    # even the minimal dead letter refused: logged with its hash, acknowledged, counted as lost
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            "CREATE TRIGGER refuse_all_dead BEFORE INSERT ON dead_letters FOR EACH ROW "
            "EXECUTE FUNCTION pp_test_refuse()"
        )
    send(broker.url, [(a.topic, a.batch(_now_ms() - 30_000, 24))])
    wait_for(lambda: ing.metrics().get("pp_ingest_dead_letters_lost_total") == 1, what="lost counted")
    send(broker.url, [(b.topic, b.batch(_now_ms() - 30_000, 24))])
    wait_stored(db, {b.gateway: 1}, timeout=10)
    wait_for(lambda: (ing.health() or {}).get("unacked") == 0, what="everything acknowledged")


def test_healthz_fails_when_nothing_commits_while_messages_wait(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    ing: IngestProcess = start_ingest(broker.url, stall_after_s=2)
    g = park.gateways[0]
    assert _healthz(ing.http_port)[1]["status"] == "ok"
    lock = psycopg.connect(db)
    try:
        lock.execute("LOCK TABLE ingest_batches IN ACCESS EXCLUSIVE MODE")
        send(broker.url, [(g.topic, g.batch(_now_ms() - 60_000, 12))])
        wait_for(lambda: _healthz(ing.http_port)[1]["status"] == "failing", timeout=15, what="failing")
        code, body = _healthz(ing.http_port)
        assert code == 503 and body["stalled_s"] > 2
    finally:
        lock.rollback()
        lock.close()
    wait_stored(db, {g.gateway: 0}, timeout=10)
    wait_for(lambda: _healthz(ing.http_port)[1]["status"] == "ok", what="ok again")
