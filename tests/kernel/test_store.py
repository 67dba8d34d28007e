"""Migrations, partitions, rollups and the contract views on the real PostgreSQL (plain path)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from parkpulse.db import list_migrations, migrate, refresh_rollups, server_dsn, status
from parkpulse.registry import import_registry
from parkpulse.synthetic import synthetic_park

T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai


def test_migrate_empty_database_then_rerun(pg_admin: str, unique_id: str) -> None:
    dsn = server_dsn(pg_admin, f"pp_mig_{unique_id}")
    try:
        applied = migrate(dsn, prefer="plain")
        assert [m.version for m in applied] == [m.version for m in list_migrations("plain")]
        assert migrate(dsn, prefer="plain") == []
        st = status(dsn)
        assert st.path == "plain" and st.pending == []
        with psycopg.connect(dsn) as conn:
            views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
            assert {
                "v_readings_15m",
                "v_readings_1h",
                "v_readings_1d",
                "v_energy_daily",
                "v_firm_energy_daily",
                "v_device_last_seen",
                "v_gateway_status",
                "v_data_gaps",
            } <= views
            assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] >= 30
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "pp_mig_{unique_id}" WITH (FORCE)')


def _seed(dsn: str, park: str) -> dict[str, int]:
    pf = synthetic_park(park, firms=1, meters_per_gateway=2)
    with psycopg.connect(dsn) as conn:
        import_registry(conn, pf)
        return {r[0]: r[1] for r in conn.execute("SELECT device_id, device_pk FROM devices")}


def _write(conn: psycopg.Connection, rows: list[tuple[int, int, datetime, float | None, int]]) -> None:
    for ts in {r[2] for r in rows}:
        conn.execute("SELECT pp_ensure_partition(%s)", (ts,))
    with conn.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
    conn.execute(
        "INSERT INTO rollup_dirty SELECT DISTINCT date_bin('15 minutes', t, '2000-01-01') FROM unnest(%s::timestamptz[]) t",
        ([r[2] for r in rows],),
    )
    conn.commit()


def test_rollups_and_views(db: str, unique_id: str) -> None:
    dev = _seed(db, unique_id)
    m0 = dev["m000"]
    rows = [(m0, 4, T0 + timedelta(minutes=i), float(10 + i), 0) for i in range(30)]  # active power
    rows.append((m0, 4, T0 + timedelta(minutes=31), None, 4))  # a failed read
    with psycopg.connect(db) as conn:
        _write(conn, rows)
        assert refresh_rollups(conn) == 3
        r15 = conn.execute(
            "SELECT bucket, n, avg, min, max, first, last, worst_quality FROM v_readings_15m "
            "WHERE device_pk = %s AND metric = 'active_power_kw' ORDER BY bucket",
            (m0,),
        ).fetchall()
        # minute 0..14 → values 10..24
        assert r15[0][1:] == (15, 17.0, 10.0, 24.0, 10.0, 24.0, 0)
        assert r15[2][1] == 0 + 0 + 1 - 1 + 0 or r15[2][7] == 4  # bucket 30-44: one good (30) and one bad
        assert r15[2][7] == 4
        h = conn.execute(
            "SELECT n, avg, min, max, worst_quality FROM v_readings_1h WHERE device_pk = %s AND metric = 'active_power_kw'",
            (m0,),
        ).fetchone()
        assert h == (30, 24.5, 10.0, 39.0, 4)
        d = conn.execute("SELECT day, n FROM v_readings_1d WHERE device_pk = %s", (m0,)).fetchone()
        assert d[0].isoformat() == "2026-03-10" and d[1] == 30
        assert refresh_rollups(conn) == 0  # nothing dirty any more


def test_energy_from_counter_deltas_with_a_flagged_reset(db: str, unique_id: str) -> None:
    dev = _seed(db, unique_id)
    m0, m1 = dev["m000"], dev["m001"]
    # Day 1 (local): 100 → 150. Day 2: 150 → 180, then the meter resets to 0 and climbs to 25.
    # Day-2 consumption = (180 - 150) + 25 = 55; raw delta 25 - 150 = -125; correction +180.
    day1 = T0
    day2 = T0 + timedelta(days=1)
    rows = [
        (m0, 1, day1, 100.0, 0),
        (m0, 1, day1 + timedelta(hours=5), 150.0, 0),
        (m0, 1, day2 + timedelta(hours=1), 180.0, 0),
        (m0, 1, day2 + timedelta(hours=2), 5.0, 0),
        (m0, 1, day2 + timedelta(hours=3), 25.0, 0),
        # sub-meter (level 2): never counted in the firm total
        (m1, 1, day1, 0.0, 0),
        (m1, 1, day1 + timedelta(hours=5), 40.0, 0),
    ]
    with psycopg.connect(db) as conn:
        _write(conn, rows)
        conn.execute(
            "INSERT INTO counter_events VALUES (%s, 1, %s, 'reset', 180, 5, 180)",
            (m0, day2 + timedelta(hours=2)),
        )
        conn.commit()
        refresh_rollups(conn)
        got = conn.execute(
            "SELECT day::text, quantity, raw_delta, correction, suspect FROM v_energy_daily "
            "WHERE device_pk = %s ORDER BY day",
            (m0,),
        ).fetchall()
        assert got == [("2026-03-10", 50.0, 50.0, 0.0, False), ("2026-03-11", 55.0, -125.0, 180.0, False)]
        firm = conn.execute(
            "SELECT day::text, quantity, meters FROM v_firm_energy_daily WHERE carrier = 'electricity' ORDER BY day"
        ).fetchall()
        assert firm == [("2026-03-10", 50.0, 1), ("2026-03-11", 55.0, 1)]


def test_unflagged_counter_reversal_is_never_negative_consumption(db: str, unique_id: str) -> None:
    dev = _seed(db, unique_id)
    m0 = dev["m000"]
    rows = [(m0, 1, T0, 500.0, 0), (m0, 1, T0 + timedelta(days=1), 400.0, 0)]
    with psycopg.connect(db) as conn:
        _write(conn, rows)
        refresh_rollups(conn)
        got = conn.execute(
            "SELECT quantity, suspect FROM v_energy_daily WHERE device_pk = %s ORDER BY day", (m0,)
        ).fetchall()
        assert got == [(0.0, False), (0.0, True)]


def test_partition_created_later_takes_rows_from_default(db: str, unique_id: str) -> None:
    dev = _seed(db, unique_id)
    old = datetime(2019, 5, 3, tzinfo=UTC)
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO readings VALUES (%s, 4, %s, 1.0, 0)", (dev["m000"], old))
        assert conn.execute("SELECT count(*) FROM readings_default").fetchone() == (1,)
        assert conn.execute("SELECT pp_ensure_partition(%s)", (old,)).fetchone() == ("readings_y2019m05",)
        conn.commit()
        assert conn.execute("SELECT count(*) FROM readings_default").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM readings_y2019m05").fetchone() == (1,)


def test_database_refuses_duplicate_rows(db: str, unique_id: str) -> None:
    dev = _seed(db, unique_id)
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO readings VALUES (%s, 4, %s, 1.0, 0)", (dev["m000"], T0))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO readings VALUES (%s, 4, %s, 2.0, 0)", (dev["m000"], T0))


def test_make_db_gives_isolated_databases(make_db: Callable[[], str]) -> None:
    a, b = make_db(), make_db()
    with psycopg.connect(a) as ca, psycopg.connect(b) as cb:
        ca.execute("INSERT INTO parks (park_id, name) VALUES ('iso', 'x')")
        ca.commit()
        assert cb.execute("SELECT count(*) FROM parks").fetchone() == (0,)
