"""The reconnect helper (parkpulse/reconnect.py) and the alert engine's writer on errors a failover
produces, against a real PostgreSQL and Mosquitto (no Patroni needed: fast).

A demoted primary that kept a session answers writes with ReadOnlySqlTransaction; here the
engine's own writer session is made read-only (`SET SESSION CHARACTERISTICS … READ ONLY`), which
draws the same SQLSTATE 25006 from the same server code path.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from ha_testkit import wait_for
from paho.mqtt.enums import CallbackAPIVersion

from alerts import AlertSettings
from alerts.harness import EngineThread, sample_park
from parkpulse.errors import FieldError, StoreError
from parkpulse.reconnect import Backoff, retry_async, retry_sync, wants_new_connection
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker, free_port
from parkpulse.wire import status_topic


def test_unreachable_server_is_retried_with_backoff_then_the_last_error_is_raised() -> None:
    port = free_port()  # nothing listens there
    calls: list[float] = []

    def op() -> None:
        calls.append(time.monotonic())
        psycopg.connect(f"postgresql://127.0.0.1:{port}/x", connect_timeout=1).close()

    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        retry_sync(op, what="test", within_s=1.0, backoff=Backoff(0.1, 0.4))
    assert len(calls) >= 3, "tried again after each delay"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2, f"delays double: {gaps}"
    assert time.monotonic() - t0 < 2.5, "gave up within the window"


def test_errors_about_the_data_are_not_retried(db: str) -> None:
    calls = 0

    def op() -> None:
        nonlocal calls
        calls += 1
        with psycopg.connect(db) as c:
            c.execute("SELECT * FROM no_such_table_here")

    with pytest.raises(psycopg.errors.UndefinedTable):
        retry_sync(op, what="test", within_s=5.0)
    assert calls == 1
    cause = psycopg.OperationalError("gone")
    wrapped = StoreError("cannot connect")
    wrapped.__cause__ = cause
    assert wants_new_connection(wrapped) and not wants_new_connection(StoreError("no tables"))


def test_backoff_settings_are_checked_and_async_retry_stops_when_asked() -> None:
    with pytest.raises(FieldError, match=r"backoff.max_s: must be ≥ min_s \(1.0\) \(got 0.5\)"):
        Backoff(1.0, 0.5)
    with pytest.raises(FieldError, match=r"backoff.min_s"):
        Backoff(0.0, 1.0)

    async def main() -> int:
        stop = asyncio.Event()
        dropped: list[str] = []
        n = 0

        async def op() -> None:
            nonlocal n
            n += 1
            if n == 3:
                stop.set()
            raise psycopg.OperationalError("connection lost")

        async def drop(exc: BaseException) -> None:
            dropped.append(str(exc))

        with pytest.raises(psycopg.OperationalError):
            await retry_async(op, what="test", backoff=Backoff(0.01, 0.02), stop=stop, on_error=drop)
        assert dropped == ["connection lost"] * 3, "the connection is dropped after every failure"
        return n

    assert asyncio.run(main()) == 3, "gave up once stop was set"


def test_alert_write_on_a_read_only_session_moves_to_a_new_connection(
    db: str, broker: MosquittoBroker, unique_id: str
) -> None:
    park = unique_id
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, sample_park(park))
    settings = AlertSettings(
        database_url=db,
        mqtt_url=broker.url,
        park=park,
        group=f"alerts-{park}",
        periodic_interval_s=60,
        emission_interval_s=3600,
    )
    topic = status_topic(park, f"{park}-f1", f"{park}-g1")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{park}")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        with EngineThread(settings) as eng:

            async def make_read_only(engine: object) -> int:
                conn = await eng.engine._writer_conn()  # type: ignore[union-attr]
                await conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                return conn.info.backend_pid

            async def writer_pid(engine: object) -> int | None:
                w = eng.engine._writer  # type: ignore[union-attr]
                return None if w is None else w.info.backend_pid

            ro_pid = eng.call(make_read_only)
            doc = {"v": 1, "gateway": f"{park}-g1", "state": "offline"}
            pub.publish(topic, orjson.dumps(doc), qos=1, retain=True).wait_for_publish(5)
            with psycopg.connect(db, autocommit=True) as conn:
                row = wait_for(
                    lambda: conn.execute(
                        "SELECT rule_id, state FROM alerts WHERE park_id = %s", (park,)
                    ).fetchall(),
                    15,
                    "the gateway-offline alert",
                )
                fired = conn.execute(
                    "SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id) "
                    "WHERE a.park_id = %s AND e.action = 'fired'",
                    (park,),
                ).fetchone()
            new_pid = eng.call(writer_pid)
    finally:
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
    assert row == [("gateway-offline", "firing")]
    assert fired == (1,)
    assert new_pid is not None and new_pid != ro_pid, "the write went through on a new session"
