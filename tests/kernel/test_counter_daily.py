"""The maintained daily counter table (issue 16) equals the old lag() definition of v_counter_daily.

Random counters with resets (flagged and unflagged), NULL values, silent days, readings and
counter events arriving late, out-of-order backfill and refreshes in small rounds, on plain
PostgreSQL and on a real TimescaleDB (PARKPULSE_TEST_TIMESCALE_URL, `source /tmp/tsenv.sh`;
skipped without it). After every phase `counter_daily` must hold exactly the rows the old view
computed from the daily rollups, and `v_counter_daily` must keep its columns.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from parkpulse.db import migrate, refresh_rollups, server_dsn
from parkpulse.db._lag_reference import lag_counter_daily_sql
from parkpulse.registry import import_registry
from parkpulse.synthetic import ReadingRow, synthetic_park, write_readings

TS_URL = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")
TZ = ZoneInfo("Asia/Shanghai")
DAY0 = datetime(2026, 2, 20, tzinfo=TZ)
DAYS = 16
COUNTERS = (1, 2)  # elec_import_kwh, elec_export_kwh
GAUGE = 13  # frequency_hz: must never enter counter_daily

OLD_DEFINITION = lag_counter_daily_sql("Asia/Shanghai") + " ORDER BY 1, 2, 3"
TABLE = (
    "SELECT device_pk, metric_id, bucket, day, increase, raw_delta, correction, n_events, suspect, n, "
    "worst_quality, first_ts, last_ts FROM v_counter_daily ORDER BY 1, 2, 3"
)
COLUMNS = [
    ("device_pk", "integer"),
    ("metric_id", "smallint"),
    ("bucket", "timestamp with time zone"),
    ("day", "date"),
    ("increase", "double precision"),
    ("raw_delta", "double precision"),
    ("correction", "double precision"),
    ("n_events", "integer"),
    ("suspect", "boolean"),
    ("n", "integer"),
    ("worst_quality", "smallint"),
    ("first_ts", "timestamp with time zone"),
    ("last_ts", "timestamp with time zone"),
]

Event = tuple[int, int, datetime, str, float, float, float]


class Scenario:
    """Random counters over DAYS local days: hourly readings at random minutes, silent days,
    NULL values, resets with and without a counter event, and a gauge alongside."""

    def __init__(self, pks: list[int], seed: int) -> None:
        rnd = random.Random(seed)
        self.readings: list[ReadingRow] = []
        self.events: list[Event] = []
        for pk in pks:
            for mid in (*COUNTERS, GAUGE):
                value = rnd.uniform(0, 5000)
                for day in range(DAYS):
                    if rnd.random() < 0.2:
                        continue  # a silent day
                    for hour in rnd.sample(range(24), rnd.randint(1, 8)):
                        ts = (DAY0 + timedelta(days=day, hours=hour, minutes=rnd.randint(0, 59))).astimezone(
                            UTC
                        )
                        self._one(rnd, pk, mid, ts, value)
                        value += rnd.uniform(0, 50)
        self.readings.sort(key=lambda r: r[2])

    def _one(self, rnd: random.Random, pk: int, mid: int, ts: datetime, value: float) -> None:
        if mid in COUNTERS and rnd.random() < 0.04:  # a reset: the counter starts again near 0
            new = rnd.uniform(0, 5)
            if rnd.random() < 0.7:  # flagged by the gateway (else it shows as suspect)
                self.events.append((pk, mid, ts, "reset", value, new, value))
            value = new
        if rnd.random() < 0.03:
            self.readings.append((pk, mid, ts, None, 2))
        else:
            self.readings.append((pk, mid, ts, round(value, 3), rnd.choice((0, 0, 0, 1, 2))))


def _write(conn: psycopg.Connection, rows: list[ReadingRow], events: list[Event]) -> None:
    """Readings as ingest writes them (dirty buckets marked), with the counter events on them."""
    if rows:
        write_readings(conn, rows)
    if events:
        conn.cursor().executemany(
            "INSERT INTO counter_events (device_pk, metric_id, ts, event, prev, value, correction) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            events,
        )
        conn.execute(
            "INSERT INTO rollup_dirty (bucket) SELECT DISTINCT date_bin('15 minutes', t, '2000-01-01') "
            "FROM unnest(%s::timestamptz[]) t",
            ([e[2] for e in events],),
        )
        conn.commit()


def _refresh_in_rounds(conn: psycopg.Connection, per_round: int | None) -> int:
    rounds = 0
    while refresh_rollups(conn, per_round):
        rounds += 1
    return rounds


def _rounded(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]


def _assert_equal(conn: psycopg.Connection, phase: str) -> int:
    old = _rounded(conn.execute(OLD_DEFINITION).fetchall())
    new = _rounded(conn.execute(TABLE).fetchall())
    conn.commit()
    assert old, f"{phase}: the scenario produced no counter days"
    missing, extra = set(old) - set(new), set(new) - set(old)
    assert not missing and not extra, f"{phase}: missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
    assert old == new
    return len(old)


def _registry(dsn: str, park: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        import_registry(conn, synthetic_park(park, firms=1, meters_per_gateway=3))
        return [r[0] for r in conn.execute("SELECT device_pk FROM devices ORDER BY device_pk")]


def _run_scenario(dsn: str, park: str) -> None:
    pks = _registry(dsn, park)
    sc = Scenario(pks, seed=16)
    day = {r: (r[2].astimezone(TZ) - DAY0).days for r in sc.readings}
    rnd = random.Random(7)
    backfill = [r for r in sc.readings if day[r] < 5]  # the first days come last, out of order
    gap = [r for r in sc.readings if day[r] == 9 and r[0] == pks[1]]  # one meter's day, filled later
    late = [r for r in sc.readings if r not in set(backfill) | set(gap) and rnd.random() < 0.1]
    held = set(backfill) | set(gap) | set(late)
    first = [r for r in sc.readings if r not in held]

    def events_of(rows: list[ReadingRow]) -> list[Event]:
        keys = {(r[0], r[1], r[2]) for r in rows}
        return [e for e in sc.events if (e[0], e[1], e[2]) in keys]

    late_events = events_of(late)
    held_back_event = late_events[:1]  # arrives after its reading, in a batch of its own
    with psycopg.connect(dsn) as conn:
        _write(conn, first, events_of(first))
        _refresh_in_rounds(conn, None)
        _assert_equal(conn, "live days")
        for d in reversed(range(5)):  # backfill, newest day first, refreshed in small rounds
            rows = [r for r in backfill if day[r] == d]
            _write(conn, rows, events_of(rows))
            _refresh_in_rounds(conn, 7)
        _assert_equal(conn, "out-of-order backfill")
        _write(conn, gap, events_of(gap))
        _write(conn, late, late_events[1:])
        assert _refresh_in_rounds(conn, 30) > 1
        _assert_equal(conn, "late readings and a silent day filled")
        _write(conn, [], held_back_event)
        _refresh_in_rounds(conn, None)
        n = _assert_equal(conn, "a late counter event")
        gauges = conn.execute("SELECT count(*) FROM counter_daily WHERE metric_id = %s", (GAUGE,)).fetchone()
        suspect = conn.execute(
            "SELECT count(*) FILTER (WHERE suspect), sum(n_events) FROM counter_daily"
        ).fetchone()
    assert gauges == (0,)
    assert suspect is not None and suspect[0] > 0 and suspect[1] > 0, (
        "resets with and without events expected"
    )
    assert held_back_event, "the scenario needs a late event"
    assert n > 50


def test_counter_daily_equals_the_lag_definition_on_plain(db: str, unique_id: str) -> None:
    _run_scenario(db, unique_id)


def test_v_counter_daily_keeps_its_columns(db: str) -> None:
    with psycopg.connect(db) as conn:
        cols = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'v_counter_daily' ORDER BY ordinal_position"
        ).fetchall()
    assert cols == COLUMNS


def test_migration_backfills_an_existing_database(db: str, unique_id: str) -> None:
    """A store migrated before 0017 has rollups but no table: the migration fills it."""
    pks = _registry(db, unique_id)
    sc = Scenario(pks, seed=3)
    with psycopg.connect(db) as conn:
        _write(conn, sc.readings, sc.events)
        _refresh_in_rounds(conn, None)
        # as before 0017: no table (CASCADE takes the views built on it), migration not recorded
        conn.execute("DROP TABLE counter_daily CASCADE")
        conn.execute("DELETE FROM schema_migrations WHERE version = 17")
        conn.commit()
    applied = migrate(db, prefer="plain")
    assert [m.version for m in applied] == [17]
    with psycopg.connect(db) as conn:
        n = _assert_equal(conn, "backfilled by migration 0017")
        fe = conn.execute("SELECT count(*), sum(quantity) FROM v_firm_energy_daily").fetchone()
    assert n > 50
    assert fe is not None and fe[0] > 0 and fe[1] > 0  # the dependent views are back


@pytest.fixture
def ts_dsn() -> Iterator[str]:
    assert TS_URL
    name = f"pp_cd_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    dsn = server_dsn(TS_URL, name)
    migrate(dsn, prefer="timescale")
    yield dsn
    with psycopg.connect(server_dsn(TS_URL, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.timescale
@pytest.mark.skipif(not TS_URL, reason="PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB here)")
def test_counter_daily_equals_the_lag_definition_on_real_timescaledb(ts_dsn: str, unique_id: str) -> None:
    with psycopg.connect(ts_dsn) as conn:
        assert conn.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone() == ("timescale",)
    _run_scenario(ts_dsn, unique_id)
