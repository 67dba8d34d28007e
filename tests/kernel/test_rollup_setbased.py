"""The plain path's set-based refresher (issue 16): whatever the claimed buckets (scattered ranges,
dense 1-second buckets, single readings, null values, bad quality, rounds of any size), the
rollups equal a recomputation straight from `readings` with the original per-group definitions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg

from parkpulse.db import refresh_rollups
from parkpulse.registry import import_registry
from parkpulse.synthetic import synthetic_park

T0 = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # 23:00 in Asia/Shanghai: the data spans local days

_REF_15M = """
SELECT device_pk, metric_id, date_bin('15 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       count(value)::int, sum(value), min(value), max(value),
       (array_agg(value ORDER BY ts) FILTER (WHERE value IS NOT NULL))[1], min(ts) FILTER (WHERE value IS NOT NULL),
       (array_agg(value ORDER BY ts DESC) FILTER (WHERE value IS NOT NULL))[1], max(ts) FILTER (WHERE value IS NOT NULL),
       max(quality)::smallint, (count(*) FILTER (WHERE quality = 0))::int
FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""

_REF_COARSE = """
SELECT device_pk, metric_id, {key} AS bucket,
       count(value)::int, sum(value), min(value), max(value),
       (array_agg(value ORDER BY ts) FILTER (WHERE value IS NOT NULL))[1], min(ts) FILTER (WHERE value IS NOT NULL),
       (array_agg(value ORDER BY ts DESC) FILTER (WHERE value IS NOT NULL))[1], max(ts) FILTER (WHERE value IS NOT NULL),
       max(quality)::smallint, (count(*) FILTER (WHERE quality = 0))::int
FROM readings GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""

_COLS = (
    "device_pk, metric_id, bucket, n, sum, min, max, first, first_ts, last, last_ts, worst_quality, n_good"
)


def _rows(pks: list[int]) -> list[tuple[int, int, datetime, float | None, int]]:
    rnd = random.Random(16)
    out: list[tuple[int, int, datetime, float | None, int]] = []
    # a dense bucket: 1-second data, two metrics, one value missing and one bad
    for s in range(900):
        for m in (4, 5):
            v: float | None = None if (s == 0 and m == 4) else round(rnd.uniform(-50, 50), 3)
            out.append((pks[0], m, T0 + timedelta(seconds=s), v, 3 if s == 450 else 0))
    # scattered 15-minute data over three days, with holes: many separate ranges, hours and days
    for q in range(0, 3 * 96, 1):
        if q % 7 in (2, 3):
            continue
        for pk in pks[1:]:
            out.append((pk, 1, T0 + timedelta(minutes=15 * q + 3), float(q * 10 + pk), 0))
    # a bucket with only a null value
    out.append((pks[2], 6, T0 + timedelta(hours=5, minutes=1), None, 4))
    return out


def _write(conn: psycopg.Connection, rows: list[tuple[int, int, datetime, float | None, int]]) -> None:
    for month in sorted({datetime(r[2].year, r[2].month, 1, tzinfo=UTC) for r in rows}):
        conn.execute("SELECT pp_ensure_partition(%s)", (month,))
    with conn.cursor().copy("COPY readings (device_pk, metric_id, ts, value, quality) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
    conn.execute(
        "INSERT INTO rollup_dirty (bucket) SELECT DISTINCT date_bin('15 minutes', t, '2000-01-01') "
        "FROM unnest(%s::timestamptz[]) t",
        ([r[2] for r in rows],),
    )
    conn.commit()


def _norm(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]


def _check(conn: psycopg.Connection) -> None:
    tz = conn.execute("SELECT value FROM store_info WHERE key = 'timezone'").fetchone()
    zone = tz[0] if tz else "UTC"
    for table, ref in (
        ("rollup_15m", _REF_15M),
        ("rollup_1h", _REF_COARSE.format(key="date_trunc('hour', ts)")),
        ("rollup_1d", _REF_COARSE.format(key=f"date_trunc('day', ts, '{zone}')")),
    ):
        got = conn.execute(f"SELECT {_COLS} FROM {table} ORDER BY 1, 2, 3").fetchall()
        want = conn.execute(ref).fetchall()
        assert len(got) == len(want), table
        assert _norm(got) == _norm(want), table


def _seed(db: str) -> tuple[psycopg.Connection, list[int]]:
    conn = psycopg.connect(db)
    import_registry(conn, synthetic_park("rsb", firms=1, meters_per_gateway=3))
    conn.commit()
    pks = [r[0] for r in conn.execute("SELECT device_pk FROM devices ORDER BY device_id")]
    return conn, pks


def test_one_round_of_scattered_buckets_equals_the_recomputation(db: str) -> None:
    conn, pks = _seed(db)
    with conn:
        rows = _rows(pks)
        _write(conn, rows)
        n = refresh_rollups(conn)
        assert n == len({r[2].replace(minute=r[2].minute - r[2].minute % 15, second=0) for r in rows})
        _check(conn)
        assert conn.execute("SELECT count(*) FROM rollup_dirty").fetchone() == (0,)
        # the null-only bucket: counted as no value, its worst quality kept
        assert conn.execute(
            "SELECT n, first, last, worst_quality FROM rollup_15m WHERE device_pk = %s AND metric_id = 6",
            (pks[2],),
        ).fetchone() == (0, None, None, 4)


def test_small_rounds_and_late_data_end_in_the_same_rollups(db: str) -> None:
    conn, pks = _seed(db)
    with conn:
        rows = _rows(pks)
        _write(conn, rows[: len(rows) // 2])
        while refresh_rollups(conn, 7):
            pass
        # late data into buckets already refreshed, and a new earliest value of the dense bucket's day
        _write(conn, [*rows[len(rows) // 2 :], (pks[0], 4, T0 - timedelta(minutes=20), -99.0, 0)])
        rounds = []
        while n := refresh_rollups(conn, 11):
            rounds.append(n)
        assert rounds and max(rounds) <= 11
        _check(conn)
        # counter_daily follows: every counter day of the rollups has its row
        assert (
            conn.execute(
                "SELECT count(*) FROM rollup_1d r JOIN metrics m USING (metric_id) "
                "WHERE m.kind IN ('counter', 'count') AND r.last IS NOT NULL"
            ).fetchone()
            == conn.execute("SELECT count(*) FROM counter_daily").fetchone()
        )
