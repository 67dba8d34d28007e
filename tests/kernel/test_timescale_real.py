"""The TimescaleDB path on a real TimescaleDB (issue 10).

These run when PARKPULSE_TEST_TIMESCALE_URL names a server with the extension preloaded, and
PARKPULSE_TEST_TIMESCALE_NOPRELOAD_URL one where it is installed but not preloaded; otherwise
they are reported as skipped. The emulation in test_timescale_path.py cannot see what these
check: it has no materialization watermark, no policies and no compression.

Each test makes its own database on the server and drops it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from psycopg import sql

from ingest.harness import IngestProcess, wait_stored
from ingest.loadgen import publish
from parkpulse.db import migrate, refresh_rollups, server_dsn, store_health
from parkpulse.errors import StoreError
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker, free_port
from parkpulse.synthetic import (
    ReadingRow,
    SyntheticGateway,
    synthetic_gateways,
    synthetic_park,
    write_readings,
)

TS_URL = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")
NOPRELOAD_URL = os.environ.get("PARKPULSE_TEST_TIMESCALE_NOPRELOAD_URL")
needs_ts = pytest.mark.skipif(
    not TS_URL, reason="PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB here)"
)
needs_nopreload = pytest.mark.skipif(
    not NOPRELOAD_URL,
    reason="PARKPULSE_TEST_TIMESCALE_NOPRELOAD_URL is not set (no server without the preload)",
)

VIEWS = {
    "v_readings_15m": "device_id, metric, bucket",
    "v_readings_1h": "device_id, metric, bucket",
    "v_readings_1d": "device_id, metric, bucket",
    "v_energy_daily": "device_id, metric, day",
    "v_firm_energy_daily": "firm_id, carrier, direction, day",
}


def _fresh_db(server: str, made: list[str]) -> str:
    name = f"pp_ts_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    made.append(name)
    return server_dsn(server, name)


def _drop_all(server: str, made: list[str]) -> None:
    with psycopg.connect(server_dsn(server, "postgres"), autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def ts_db() -> Iterator[Callable[[], str]]:
    assert TS_URL
    made: list[str] = []
    yield lambda: _fresh_db(TS_URL, made)
    _drop_all(TS_URL, made)


def _readings(dev: dict[str, int], start: datetime, hours: int) -> list[ReadingRow]:
    """Every 10 minutes: a rising electricity counter (metric 1) on two meters and a gauge (metric 4)."""
    rows: list[ReadingRow] = []
    for i in range(hours * 6):
        ts = start + timedelta(minutes=10 * i)
        rows.append((dev["m000"], 1, ts, 1000.0 + 2.5 * i, 0))
        rows.append((dev["m001"], 1, ts, 500.0 + 1.25 * i, 0))
        rows.append((dev["m000"], 4, ts, 100.0 + i % 13, i % 3))
    return rows


def _write(dsn: str, rows: list[ReadingRow]) -> None:
    with psycopg.connect(dsn) as conn:
        write_readings(conn, rows)


def _register(dsn: str, park: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        import_registry(conn, synthetic_park(park, firms=1, meters_per_gateway=2))
        conn.commit()
        return {r[0]: r[1] for r in conn.execute("SELECT device_id, device_pk FROM devices")}


def _dump(dsn: str, view: str, order: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT * FROM {view} ORDER BY {order}")  # names from VIEWS above
        cols = [c.name for c in cur.description or []]
        keep = [i for i, c in enumerate(cols) if c not in ("device_pk", "metric_id")]
        return [
            tuple(round(r[i], 6) if isinstance(r[i], float) else r[i] for i in keep) for r in cur.fetchall()
        ]


def _run_policy_jobs(dsn: str, proc: str = "policy_refresh_continuous_aggregate") -> int:
    """What a live server does within minutes: run every policy job of a kind, finest aggregate first."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        jobs = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s ORDER BY job_id", (proc,)
        ).fetchall()
        for (job,) in jobs:
            conn.execute("CALL run_job(%s)", (job,))
        return len(jobs)


def _refresh_all(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return refresh_rollups(conn)


@needs_ts
def test_history_below_the_watermark_survives_the_policies(
    make_db: Callable[[], str], ts_db: Callable[[], str], unique_id: str
) -> None:
    plain, ts = make_db(), ts_db()
    migrate(ts)
    with psycopg.connect(ts) as c:
        assert c.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone() == ("timescale",)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for dsn in (plain, ts):
        dev = _register(dsn, unique_id)
        # history older than every policy window (60 days), then recent data
        _write(
            dsn, _readings(dev, now - timedelta(days=200), 40) + _readings(dev, now - timedelta(days=2), 30)
        )
    _refresh_all(plain)

    # the failure this guards against: the policies move the watermark past history never materialized
    assert _run_policy_jobs(ts) == 3
    before = _dump(ts, "v_firm_energy_daily", VIEWS["v_firm_energy_daily"])
    assert len(before) < len(_dump(plain, "v_firm_energy_daily", VIEWS["v_firm_energy_daily"])), (
        "expected the policies alone to hide the history (else this test proves nothing)"
    )
    # the shared refresher materializes exactly the touched ranges
    assert _refresh_all(ts) > 0
    _run_policy_jobs(ts)  # and the policies, run again, take nothing away
    for view, order in VIEWS.items():
        a, b = _dump(plain, view, order), _dump(ts, view, order)
        assert a, f"{view} is empty"
        assert a == b, f"{view} differs between plain PostgreSQL and TimescaleDB after the policies"
    with psycopg.connect(ts) as c:
        h = store_health(c)
    assert h.path == "timescale" and h.timescaledb_version and h.lag.dirty_buckets == 0


@needs_ts
def test_refresh_rounds_are_bounded_and_finish(ts_db: Callable[[], str], unique_id: str) -> None:
    ts = ts_db()
    migrate(ts)
    dev = _register(ts, unique_id)
    _write(
        ts,
        _readings(dev, datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=90), 24),
    )
    with psycopg.connect(ts) as c:
        waiting = store_health(c).lag.dirty_buckets
        assert waiting == 96
        rounds = []
        while n := refresh_rollups(c, max_buckets=40):
            rounds.append(n)
        assert rounds == [40, 40, 16]
        assert store_health(c).lag.dirty_buckets == 0
    _run_policy_jobs(ts)
    assert len(_dump(ts, "v_readings_1h", VIEWS["v_readings_1h"])) == 24 * 2 + 24


def _park_with_gateway(ts: str, park: str) -> SyntheticGateway:
    """A migrated TimescaleDB store with one synthetic firm; its gateway."""
    migrate(ts)
    pf = synthetic_park(park, firms=1, meters_per_gateway=2)
    with psycopg.connect(ts) as conn:
        import_registry(conn, pf)
        conn.commit()
    return next(iter(synthetic_gateways(pf)))


def _ingest(ts: str, broker: MosquittoBroker, unique_id: str, tmp_path: Path) -> IngestProcess:
    return IngestProcess(
        ts,
        broker.url,
        f"pp-test-{unique_id}",
        free_port(),
        park=unique_id,
        flush_interval_s=0.05,
        rollup_interval_s=0.5,
        cache_miss_refresh_s=0,
    ).start(log_path=str(tmp_path / "ingest.log"))


def _batch(gw: str, seq: int, dev: str, start_ms: int, n: int) -> bytes:
    readings = [[dev, "elec_import_kwh", start_ms + k * 600_000, 100.0 + k, 0] for k in range(n)]
    return orjson.dumps(
        {"v": 1, "gateway": gw, "seq": seq, "sent_at": int(time.time() * 1000), "readings": readings}
    )


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _count(dsn: str, q: str, *args: object) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(q, args).fetchone()
        return int(row[0]) if row else 0


@needs_ts
def test_a_resend_of_month_old_batches_reaches_the_rollups(
    ts_db: Callable[[], str], broker: MosquittoBroker, unique_id: str, tmp_path: Path
) -> None:
    ts = ts_db()
    g = _park_with_gateway(ts, unique_id)
    now_ms = int(time.time() * 1000)
    proc = _ingest(ts, broker, unique_id, tmp_path)
    try:
        publish(broker.url, [(g.topic, _batch(g.gateway, 0, g.devices[0], now_ms - 3_600_000, 6), 1)])
        wait_stored(ts, {g.gateway: 0}, timeout=20)
        _run_policy_jobs(ts)  # the watermark is now minutes ago: a month-old batch lands far below it
        old = now_ms - 35 * 86_400_000
        publish(broker.url, [(g.topic, _batch(g.gateway, 1, g.devices[0], old, 12), 1)])
        wait_stored(ts, {g.gateway: 1}, timeout=20)
        since = datetime.fromtimestamp(old / 1000, UTC) - timedelta(hours=1)
        _wait(
            lambda: (
                _count(
                    ts,
                    "SELECT coalesce(sum(n), 0) FROM v_readings_15m WHERE bucket >= %s AND bucket < %s",
                    since,
                    since + timedelta(days=1),
                )
                == 12
            ),
            "the resent readings in v_readings_15m",
        )
        _wait(
            lambda: (
                _count(
                    ts,
                    "SELECT coalesce(sum(n), 0) FROM v_readings_1d WHERE bucket >= %s AND bucket < %s",
                    since - timedelta(days=1),
                    since + timedelta(days=2),
                )
                == 12
            ),
            "… and in v_readings_1d",
        )
        _run_policy_jobs(ts)
        assert (
            _count(
                ts,
                "SELECT coalesce(sum(n), 0) FROM v_readings_1h WHERE bucket < %s",
                since + timedelta(days=1),
            )
            == 12
        )
        _wait(
            lambda: proc.metrics()["pp_ingest_rollup_buckets_refreshed_total"] >= 2, "the refresher's count"
        )
        _wait(lambda: proc.metrics()["pp_ingest_rollup_dirty_buckets"] == 0, "nothing left dirty")
    finally:
        proc.stop()


@needs_ts
def test_late_data_lands_in_a_compressed_chunk_once(
    ts_db: Callable[[], str], broker: MosquittoBroker, unique_id: str, tmp_path: Path
) -> None:
    ts = ts_db()
    g = _park_with_gateway(ts, unique_id)
    t20 = int(time.time() * 1000) - 20 * 86_400_000
    proc = _ingest(ts, broker, unique_id, tmp_path)
    try:
        # a chunk with data 25 days old, compressed by the real compression policy
        publish(
            broker.url, [(g.topic, _batch(g.gateway, 0, g.devices[1], t20 - 5 * 86_400_000, 6 * 24 * 7), 1)]
        )
        wait_stored(ts, {g.gateway: 0}, timeout=30)
        assert _run_policy_jobs(ts, "policy_compression") == 1
        at = datetime.fromtimestamp(t20 / 1000, UTC)
        assert (
            _count(
                ts,
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings' "
                "AND is_compressed AND range_start <= %s AND range_end > %s",
                at,
                at,
            )
            == 1
        )
        late = _batch(g.gateway, 1, g.devices[0], t20, 30)
        publish(broker.url, [(g.topic, late, 1), (g.topic, late, 1)])  # and its redelivery
        wait_stored(ts, {g.gateway: 1}, timeout=30)
        d0 = g.devices[0]
        assert (
            _count(
                ts,
                "SELECT count(*) FROM readings r JOIN devices d USING (device_pk) WHERE d.device_id = %s",
                d0,
            )
            == 30
        )
        _wait(
            lambda: (
                _count(ts, "SELECT coalesce(sum(r.n), 0) FROM v_readings_15m r WHERE r.device_id = %s", d0)
                == 30
            ),
            "the late readings in the rollups",
        )
        assert _count(ts, "SELECT count(*) FROM dead_letters") == 0
    finally:
        proc.stop()


@needs_nopreload
def test_installed_but_not_preloaded_is_refused_and_changes_nothing() -> None:
    assert NOPRELOAD_URL
    made: list[str] = []
    dsn = _fresh_db(NOPRELOAD_URL, made)
    try:
        with pytest.raises(StoreError) as exc:
            migrate(dsn)
        msg = str(exc.value)
        assert "shared_preload_libraries" in msg and "restart" in msg and "--store plain" in msg
        with pytest.raises(StoreError):
            migrate(dsn, prefer="timescale")
        with psycopg.connect(server_dsn(NOPRELOAD_URL, "postgres")) as c:
            assert c.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (made[0],)
            ).fetchone() == (0,)
        # the CLI: one clear message, no traceback
        env = {**os.environ, "PARKPULSE_DATABASE_URL": dsn}
        cli = str(Path(sys.executable).with_name("parkpulse"))
        r = subprocess.run([cli, "db", "migrate"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert "shared_preload_libraries" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
        # the deliberate alternative
        assert migrate(dsn, prefer="plain")
        with psycopg.connect(dsn) as c:
            assert c.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone() == ("plain",)
    finally:
        _drop_all(NOPRELOAD_URL, made)
