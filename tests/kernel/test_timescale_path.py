"""The TimescaleDB storage path against the plain one.

TimescaleDB cannot be installed on this machine, so the always-running test here executes the
TimescaleDB migration's own SQL on plain PostgreSQL with a small emulation of the TimescaleDB
functions it calls (documented below): `time_bucket`, `first`/`last`, and no-op policy calls;
each continuous aggregate, which is real-time (`materialized_only = false`), becomes the plain
view of the same query, which is what a real-time aggregate returns. The same readings are then
written to a plain-path database, its rollups refreshed, and every contract view compared.

With PARKPULSE_TEST_TIMESCALE_URL pointing at a database that has the extension, the real path
is migrated and compared too; otherwise that test is reported as skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from parkpulse.db import list_migrations, migrate, server_dsn
from parkpulse.registry import import_registry
from parkpulse.synthetic import synthetic_park, write_readings

# TimescaleDB's documented behaviour, emulated: time_bucket aligns buckets on 2000-01-03 (a
# Monday) and, given a time zone, on local midnights there; first()/last() take the value at the
# earliest/latest time; policies and hypertable creation have no effect on query results.
EMULATION = r"""
CREATE FUNCTION time_bucket(b interval, ts timestamptz) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(b, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') $$;
CREATE FUNCTION time_bucket(b interval, ts timestamptz, tz text) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(b, ts AT TIME ZONE tz, TIMESTAMP '2000-01-03') AT TIME ZONE tz $$;
CREATE TYPE _pp_vts AS (v double precision, t timestamptz);
CREATE FUNCTION _pp_first_s(s _pp_vts, v double precision, t timestamptz) RETURNS _pp_vts LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN t IS NULL THEN s WHEN s IS NULL OR t < (s).t THEN ROW(v, t)::_pp_vts ELSE s END $$;
CREATE FUNCTION _pp_last_s(s _pp_vts, v double precision, t timestamptz) RETURNS _pp_vts LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN t IS NULL THEN s WHEN s IS NULL OR t >= (s).t THEN ROW(v, t)::_pp_vts ELSE s END $$;
CREATE FUNCTION _pp_vts_v(s _pp_vts) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$ SELECT (s).v $$;
CREATE AGGREGATE first(double precision, timestamptz) (sfunc = _pp_first_s, stype = _pp_vts, finalfunc = _pp_vts_v);
CREATE AGGREGATE last(double precision, timestamptz) (sfunc = _pp_last_s, stype = _pp_vts, finalfunc = _pp_vts_v);
CREATE FUNCTION by_range(col text, width interval) RETURNS text LANGUAGE sql AS $$ SELECT col $$;
CREATE FUNCTION create_hypertable(rel regclass, dim text) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION add_compression_policy(rel regclass, after interval) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION add_retention_policy(rel regclass, after interval) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION add_continuous_aggregate_policy(rel regclass, start_offset interval, end_offset interval,
  schedule_interval interval) RETURNS void LANGUAGE sql AS $$ SELECT $$;
"""


def _emulate(sql: str) -> str:
    """Rewrite the TimescaleDB-only DDL of a migration into its plain-PostgreSQL meaning."""
    sql = sql.replace("CREATE EXTENSION IF NOT EXISTS timescaledb;", "")
    sql = re.sub(r"ALTER TABLE readings SET \(timescaledb\.compress.*?\);", "", sql, flags=re.S)
    sql = re.sub(
        r"CREATE MATERIALIZED VIEW (\w+) WITH \(timescaledb\.continuous[^)]*\) AS", r"CREATE VIEW \1 AS", sql
    )
    return sql.replace("WITH NO DATA;", ";")


def _migrate_emulated(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.execute(EMULATION.encode())
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, variant text, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in list_migrations("timescale"):
            text = m.text.replace("{{timezone}}", "Asia/Shanghai").replace("{{retention}}", "5 years")
            if m.variant == "timescale":
                text = _emulate(text)
            conn.execute(text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, variant, checksum) VALUES (%s, %s, %s, %s)",
                (m.version, m.name, m.variant, m.checksum),
            )
            if m.version == 1:
                conn.execute(
                    "INSERT INTO store_info VALUES ('path', 'timescale'), ('timezone', 'Asia/Shanghai')"
                )
    # every migration is already recorded: this applies the view files (parkpulse/db/views/, the
    # timescale variants) over what the migrations created, and syncs the metric catalogue
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        files = {r[0] for r in conn.execute("SELECT file FROM schema_views")}
    assert "11_kernel_store.timescale.sql" in files and "11_kernel_store.plain.sql" not in files


T0 = datetime(2026, 6, 30, 14, 7, tzinfo=UTC)  # crosses a local midnight (16:00 UTC) and a month end


def _rows(dev: dict[str, int]) -> list[tuple[int, int, datetime, float | None, int]]:
    rows: list[tuple[int, int, datetime, float | None, int]] = []
    counter = 1000.0
    for i in range(0, 60 * 30, 7):  # every 7 minutes for 30 hours
        ts = T0 + timedelta(minutes=i)
        counter += 3.5 + (i % 11) * 0.25
        rows.append((dev["m000"], 1, ts, counter, 0))
        rows.append(
            (dev["m000"], 4, ts, None if i % 77 == 0 else 100 + (i % 13), 4 if i % 77 == 0 else i % 3)
        )
        rows.append((dev["m001"], 1, ts, counter / 3, 0))
    return rows


def _load(dsn: str, park: str) -> None:
    with psycopg.connect(dsn) as conn:
        import_registry(conn, synthetic_park(park, firms=1, meters_per_gateway=2))
        dev = {r[0]: r[1] for r in conn.execute("SELECT device_id, device_pk FROM devices")}
        write_readings(conn, _rows(dev))
        conn.execute("SELECT pp_refresh_rollups()")
        conn.commit()


VIEWS = {
    "v_readings_15m": "device_id, metric, bucket",
    "v_readings_1h": "device_id, metric, bucket",
    "v_readings_1d": "device_id, metric, bucket",
    "v_energy_daily": "device_id, metric, day",
    "v_firm_energy_daily": "firm_id, carrier, direction, day",
}


def _dump(dsn: str, view: str, order: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT * FROM {view} ORDER BY {order}")  # names from VIEWS above
        cols = [c.name for c in cur.description or []]
        keep = [i for i, c in enumerate(cols) if c not in ("device_pk", "metric_id")]
        out = []
        for row in cur.fetchall():
            out.append(tuple(round(row[i], 9) if isinstance(row[i], float) else row[i] for i in keep))
        return out


def test_timescale_path_sql_gives_the_same_views_as_plain(make_db: Callable[[], str], unique_id: str) -> None:
    plain, ts = make_db(), make_db()
    _migrate_emulated(ts)
    _load(plain, unique_id)
    _load(ts, unique_id)
    for view, order in VIEWS.items():
        a, b = _dump(plain, view, order), _dump(ts, view, order)
        assert a, f"{view} is empty"
        assert a == b, f"{view} differs between the plain and the TimescaleDB path"


@pytest.mark.timescale
def test_real_timescaledb_path(unique_id: str) -> None:
    url = os.environ.get("PARKPULSE_TEST_TIMESCALE_URL")
    if not url:
        pytest.skip("PARKPULSE_TEST_TIMESCALE_URL is not set (no TimescaleDB on this machine)")
    dsn = server_dsn(url, f"pp_tsp_{os.getpid()}_{unique_id}")  # a database of its own on that server
    try:
        migrate(dsn, prefer="timescale")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone() == (
                "timescale",
            )
            assert conn.execute(
                "SELECT count(*) FROM timescaledb_information.continuous_aggregates WHERE view_name LIKE 'rollup_%'"
            ).fetchone() == (3,)
        _load(dsn, unique_id)
        for view, order in VIEWS.items():
            assert _dump(dsn, view, order), f"{view} is empty on TimescaleDB"
    finally:
        with psycopg.connect(server_dsn(url, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "pp_tsp_{os.getpid()}_{unique_id}" WITH (FORCE)')
