"""The rollup refresher, one for both storage paths.

Writers append the 15-minute buckets they touch to `rollup_dirty` (with the time of the mark).
A round claims at most `max_buckets` distinct buckets, newest first, and brings the rollups of
exactly those buckets up to date:

- plain path: `pp_refresh_rollups(n)` recomputes the rollup tables in one transaction;
- TimescaleDB: the claimed buckets are merged into ranges and refreshed with
  `CALL refresh_continuous_aggregate(...)`: rollup_15m on the ranges, rollup_1h on the ranges
  widened to whole hours, rollup_1d on them widened to whole local days. The procedure cannot
  run inside a transaction, so this happens here and not in SQL. If a refresh fails, the
  claimed marks are put back and the error is raised.

On both paths the round ends with `pp_refresh_counter_daily(days)`: the table `counter_daily`
(read by `v_counter_daily`) is recomputed for the refreshed local days and, per counter, the next
day with data, in one set-based statement.

Only one refresher works at a time (an advisory lock); a second one returns 0 at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

__all__ = ["RollupLag", "refresh_rollups", "rollup_lag", "store_path"]

_LOCK_KEY = "pp_refresh_rollups"  # the plain path's SQL function takes the same lock
_Q = timedelta(minutes=15)
_MERGE_GAP = timedelta(hours=2)  # dirty ranges closer than this are refreshed as one


@dataclass(frozen=True)
class RollupLag:
    """What waits in the dirty-bucket log."""

    dirty_buckets: int  # distinct 15-minute buckets not yet refreshed
    oldest_mark_age_s: float | None  # how long the oldest unrefreshed mark has waited (the rollup lag)
    oldest_bucket: datetime | None  # the earliest bucket waiting (a backfill shows here)


def store_path(conn: psycopg.Connection) -> str:
    """The storage path recorded at the first migration ('plain' or 'timescale')."""
    row = conn.execute("SELECT value FROM store_info WHERE key = 'path'").fetchone()
    if not conn.autocommit:
        conn.commit()
    return str(row[0]) if row else "plain"


def refresh_rollups(conn: psycopg.Connection, max_buckets: int | None = None) -> int:
    """Bring the 15m/1h/1d rollups up to date for (at most `max_buckets` of) the dirty buckets.

    Returns the number of 15-minute buckets refreshed; 0 when nothing was dirty or another
    refresher holds the lock. Call repeatedly with a bound to work off a backfill in rounds.
    """
    if store_path(conn) == "timescale":
        return _refresh_timescale(conn, max_buckets)
    row = conn.execute("SELECT pp_refresh_rollups(%s)", (max_buckets,)).fetchone()
    if not conn.autocommit:
        conn.commit()
    return int(row[0]) if row else 0


def rollup_lag(conn: psycopg.Connection) -> RollupLag:
    row = conn.execute(
        "SELECT count(DISTINCT bucket), extract(epoch FROM now() - min(marked_at))::float8, min(bucket) FROM rollup_dirty"
    ).fetchone()
    if not conn.autocommit:
        conn.commit()
    assert row is not None
    return RollupLag(int(row[0]), row[1], row[2])


def _ranges(points: list[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Sorted bucket starts → [lo, hi) ranges, merging those closer than _MERGE_GAP."""
    out: list[tuple[datetime, datetime]] = []
    for b in points:
        if out and b <= out[-1][1] + _MERGE_GAP:
            out[-1] = (out[-1][0], max(out[-1][1], b + step))
        else:
            out.append((b, b + step))
    return out


def _refresh_timescale(conn: psycopg.Connection, max_buckets: int | None) -> int:
    was_autocommit = conn.autocommit
    if not was_autocommit:
        conn.commit()
        conn.autocommit = True
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_LOCK_KEY,)).fetchone()
        if not got or not got[0]:
            return 0
        try:
            return _claim_and_refresh(conn, max_buckets)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK_KEY,))
    finally:
        if not was_autocommit:
            conn.autocommit = False


def _claim_and_refresh(conn: psycopg.Connection, max_buckets: int | None) -> int:
    claimed = conn.execute(
        """WITH pick AS (SELECT DISTINCT bucket FROM rollup_dirty ORDER BY bucket DESC LIMIT %s)
           DELETE FROM rollup_dirty WHERE bucket IN (SELECT bucket FROM pick) RETURNING bucket, marked_at""",
        (max_buckets if max_buckets is not None else 2**31 - 1,),
    ).fetchall()
    if not claimed:
        return 0
    buckets = sorted({b for b, _ in claimed})
    try:
        for lo, hi in _ranges(buckets, _Q):
            conn.execute("CALL refresh_continuous_aggregate('rollup_15m', %s, %s)", (lo, hi))
        hours = sorted({b.replace(minute=0, second=0, microsecond=0) for b in buckets})
        for lo, hi in _ranges(hours, timedelta(hours=1)):
            conn.execute("CALL refresh_continuous_aggregate('rollup_1h', %s, %s)", (lo, hi))
        days = conn.execute(
            """SELECT DISTINCT date_trunc('day', b, tz), ((date_trunc('day', b, tz) AT TIME ZONE tz) + interval '1 day') AT TIME ZONE tz
               FROM unnest(%s::timestamptz[]) AS b,
                    coalesce((SELECT value FROM store_info WHERE key = 'timezone'), 'UTC') AS tz
               ORDER BY 1""",
            (buckets,),
        ).fetchall()
        merged: list[tuple[datetime, datetime]] = []
        for lo, hi in days:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        for lo, hi in merged:
            conn.execute("CALL refresh_continuous_aggregate('rollup_1d', %s, %s)", (lo, hi))
        conn.execute("SELECT pp_refresh_counter_daily(%s::timestamptz[])", ([lo for lo, _ in days],))
    except BaseException:
        conn.execute(
            "INSERT INTO rollup_dirty (bucket, marked_at) SELECT * FROM unnest(%s::timestamptz[], %s::timestamptz[])",
            ([b for b, _ in claimed], [m for _, m in claimed]),
        )
        raise
    return len(buckets)
