"""Connections for reading only, to a streaming replica when one is configured (issue 16).

`PARKPULSE_DATABASE_READ_URL` names a replica for read-only work (the console's read pages,
`rules run`'s input queries, reports); unset, the primary's URL is used. Either way the session
is opened with `default_transaction_read_only = on`, so a write through a read connection fails
on the primary exactly as it does on a replica: nobody can start writing to the read URL by
accident. What a replica shows lags the primary by the replica lag reported by
`store_health(conn, read_conn)` (`read_replica.replay_lag_s`).
"""

from __future__ import annotations

import time

import psycopg
from psycopg import conninfo

from parkpulse.db._connect import connect, redact
from parkpulse.errors import StoreError

__all__ = ["connect_read", "read_dsn", "read_only_conninfo", "wait_replayed"]

_READ_ONLY = "-c default_transaction_read_only=on"


def read_dsn(read_url: str | None, primary_url: str) -> str:
    """The DSN read-only work uses: `read_url` when set (non-blank), else the primary's."""
    return read_url.strip() if read_url and read_url.strip() else primary_url


def read_only_conninfo(dsn: str) -> str:
    """`dsn` with `default_transaction_read_only=on` added to its libpq `options` (kept if present);
    usable by psycopg.connect and by connection pools alike."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"read url: not a PostgreSQL URL or DSN (got {redact(dsn)!r})") from exc
    options = str(params.get("options") or "")
    if "default_transaction_read_only" not in options:
        params["options"] = f"{options} {_READ_ONLY}".strip()
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def connect_read(dsn: str, *, autocommit: bool = True, timeout: float = 10.0) -> psycopg.Connection:
    """A read-only connection to `dsn` (pass `read_dsn(...)`): writes through it are refused."""
    return connect(read_only_conninfo(dsn), autocommit=autocommit, timeout=timeout)


def wait_replayed(primary: psycopg.Connection, read_conn: psycopg.Connection, timeout: float = 30.0) -> bool:
    """Wait until the server of `read_conn` has replayed everything `primary` has written so far
    (e.g. right after a rollup refresh, before reading its result). True at once when `read_conn`
    is not a replica; False when `timeout` passed first (the caller decides: read older data, or
    read from the primary)."""
    row = read_conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if not row or not row[0]:
        return True
    lsn = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    if not primary.autocommit:
        primary.commit()
    assert lsn is not None
    deadline = time.monotonic() + timeout
    while True:
        got = read_conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn[0],)).fetchone()
        if not read_conn.autocommit:
            read_conn.commit()
        if got and got[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
