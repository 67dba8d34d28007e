from __future__ import annotations

import psycopg

__all__ = ["refresh_rollups"]


def refresh_rollups(conn: psycopg.Connection) -> int:
    """Bring the 15m/1h/1d rollups up to date with committed readings (plain path).

    Returns the number of 15-minute buckets recomputed. On TimescaleDB it is a no-op:
    continuous aggregates are real-time there.
    """
    row = conn.execute("SELECT pp_refresh_rollups()").fetchone()
    if not conn.autocommit:
        conn.commit()
    return int(row[0]) if row else 0
