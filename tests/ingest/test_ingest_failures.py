"""Crashes and outages: SIGKILL, SIGTERM, database down, broker restart, two processes sharing the load."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from ingest_testkit import Park, q1, readings_of, send, wait_for

from ingest.harness import wait_stored
from parkpulse.db import server_dsn
from parkpulse.services import MosquittoBroker
from parkpulse.tcp_proxy import TcpProxy


def _load(park: Park, per_gateway: int, rows: int, t0: int | None = None) -> list[tuple[str, bytes]]:
    t0 = t0 or int(time.time() * 1000) - 86_400_000
    msgs = []
    for i in range(per_gateway):
        for g in park.gateways:
            msgs.append((g.topic, g.batch(t0 + i * rows * 1000, rows)))
    return msgs


def _paced(url: str, msgs: list[tuple[str, bytes]], every: int = 10, pause: float = 0.05) -> None:
    """Publish in small groups with pauses, so a crash in the middle really is in the middle."""
    for i in range(0, len(msgs), every):
        send(url, msgs[i : i + every])
        time.sleep(pause)


def _last(park: Park) -> dict[str, int]:
    return {g.gateway: g.seq - 1 for g in park.gateways}


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    ing = start_ingest(broker.url, "k", flush_max_readings=2000)
    msgs = _load(park, 150, 300)  # 300 messages, 90,000 readings
    total = 300 * 300
    pub = threading.Thread(target=_paced, args=(broker.url, msgs), name="test-publisher")
    pub.start()
    try:
        wait_for(lambda: (q1(db, "SELECT count(*) FROM ingest_batches") or 0) >= 20, what="some stored")
        ing.kill()
        stored_at_kill = readings_of(db, park)[0]
    finally:
        pub.join()
    assert 0 < stored_at_kill < total, "the kill must happen mid-stream"
    start_ingest(broker.url, "k")  # same client id: its session and unacked messages are waiting
    wait_stored(db, _last(park), timeout=40)
    assert readings_of(db, park) == (total, total)
    assert q1(db, "SELECT count(*) FROM ingest_batches") == 300


def test_sigterm_drains_and_commits_what_it_has(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    # a flush would only happen after 60 s: everything received sits in memory until SIGTERM
    ing = start_ingest(
        broker.url,
        "t",
        flush_interval_s=60,
        flush_max_readings=10**6,
        flush_max_messages=400,
        receive_maximum=1000,
    )
    msgs = _load(park, 10, 100)
    send(broker.url, msgs)
    wait_for(lambda: ing.health()["unacked"] == 20, what="all received")
    assert readings_of(db, park) == (0, 0)
    t = time.monotonic()
    assert ing.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - t < 10
    assert readings_of(db, park) == (2000, 2000)
    # nothing left unacknowledged: a restart receives nothing again
    ing2 = start_ingest(broker.url, "t")
    time.sleep(1.0)
    assert ing2.metrics().get('pp_ingest_messages_received_total{kind="data"}', 0) == 0


@pytest.fixture
def pg_proxy(db: str) -> Iterator[tuple[TcpProxy, str]]:
    info = psycopg.conninfo.conninfo_to_dict(db)
    with TcpProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)) as proxy:
        info.update(host="127.0.0.1", port=str(proxy.port))
        yield proxy, psycopg.conninfo.make_conninfo(**info)


def test_database_outage_and_killed_connections_lose_nothing(
    db: str, broker: MosquittoBroker, park: Park, start_ingest, pg_proxy: tuple[TcpProxy, str], pg_admin: str
) -> None:
    proxy, via_proxy = pg_proxy
    ing = start_ingest(broker.url, "d", database_url=via_proxy)
    t0 = int(time.time() * 1000) - 86_400_000
    send(broker.url, _load(park, 5, 200, t0))
    wait_stored(db, _last(park), timeout=20)

    proxy.cut()  # the database vanishes for the ingest process
    send(broker.url, _load(park, 10, 200, t0 + 10**6))
    wait_for(lambda: ing.health()["database_ok"] is False, what="ingest notices the outage")
    time.sleep(1.0)
    assert readings_of(db, park) == (2000, 2000)  # nothing committed, nothing acknowledged
    assert ing.health()["unacked"] > 0
    proxy.restore()
    wait_stored(db, _last(park), timeout=30)
    assert readings_of(db, park) == (6000, 6000)

    # the server kills ingest's connections mid-stream (as a failover or an admin would)
    name = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
    msgs = _load(park, 40, 200, t0 + 3 * 10**6)
    pub = threading.Thread(target=_paced, args=(broker.url, msgs, 4), name="test-publisher")
    pub.start()
    try:
        for _ in range(3):
            time.sleep(0.3)
            q1(
                server_dsn(pg_admin, "postgres"),
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name LIKE 'parkpulse-ingest%%'",
                name,
            )
    finally:
        pub.join()
    wait_stored(db, _last(park), timeout=30)
    assert readings_of(db, park) == (22000, 22000)
    assert ing.metrics()['pp_ingest_db_errors_total{kind="transient"}'] >= 1


def test_broker_restart_resumes(db: str, own_broker: MosquittoBroker, park: Park, start_ingest) -> None:
    ing = start_ingest(own_broker.url, "b")
    t0 = int(time.time() * 1000) - 86_400_000
    send(own_broker.url, _load(park, 3, 100, t0))
    wait_stored(db, _last(park), timeout=20)
    own_broker.restart(down_for=1.0)
    wait_for(lambda: ing.health()["mqtt_connected"], timeout=20, what="reconnected")
    send(own_broker.url, _load(park, 3, 100, t0 + 10**6))
    wait_stored(db, _last(park), timeout=20)
    assert readings_of(db, park) == (1200, 1200)
    assert ing.metrics()["pp_ingest_mqtt_connects_total"] >= 2


def test_two_processes_share_the_load(db: str, broker: MosquittoBroker, park: Park, start_ingest) -> None:
    a = start_ingest(broker.url, "p1", flush_max_readings=1000)
    b = start_ingest(broker.url, "p2", flush_max_readings=1000)
    msgs = _load(park, 100, 200)  # 200 messages, 40,000 readings, both gateways interleaved
    send(broker.url, msgs)
    wait_stored(db, _last(park), timeout=40)
    assert readings_of(db, park) == (40_000, 40_000)
    ra, rb = (p.metrics()["pp_ingest_readings_stored_total"] for p in (a, b))
    assert ra > 0 and rb > 0, (ra, rb)
    assert ra + rb == 40_000
    assert q1(db, "SELECT count(*) FROM ingest_batches") == 200
    assert q1(db, "SELECT count(*) FROM seq_gaps WHERE filled_at IS NULL") == 0
    assert q1(db, "SELECT sum(readings) FROM device_status") == 40_000


def test_a_member_leaving_for_good_hands_its_share_back(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    """Scale-in: with leave_group_on_exit, a stopped member's session ends empty and the broker sends
    everything to the members left (by default a stopped member keeps its share for its restart)."""
    a = start_ingest(broker.url, "stay")
    b = start_ingest(broker.url, "leave", leave_group_on_exit=True)
    send(broker.url, _load(park, 10, 50))
    wait_stored(db, _last(park), timeout=20)
    assert b.stop(signal.SIGTERM, timeout=20) == 0
    send(broker.url, _load(park, 20, 50, int(time.time() * 1000) - 10**7))
    wait_stored(db, _last(park), timeout=20)  # nothing waits for the member that left
    assert readings_of(db, park) == (3000, 3000)
    assert a.metrics()["pp_ingest_readings_stored_total"] >= 2000
