from __future__ import annotations

import psycopg
from psycopg import conninfo, sql

from parkpulse.errors import StoreError
from parkpulse.redact import redact_text, redact_url

__all__ = ["connect", "database_name", "ensure_database", "redact", "server_dsn"]


def database_name(dsn: str) -> str:
    return str(conninfo.conninfo_to_dict(dsn).get("dbname") or "")


def server_dsn(dsn: str, dbname: str = "postgres") -> str:
    """The same server, another database (for CREATE/DROP DATABASE)."""
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def connect(dsn: str, *, autocommit: bool = False, timeout: float = 10.0) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=int(max(1, timeout)))
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:  # unreachable, or a malformed DSN
        raise StoreError(
            f"cannot connect to the database {redact(dsn)}: {redact_text(str(exc).strip())}"
        ) from exc


def redact(dsn: str) -> str:
    """The DSN fit for logs, URL or key=value form: password and other secrets masked (never raises)."""
    return redact_url(dsn)


def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it is missing. Returns True when created."""
    name = database_name(dsn)
    if not name:
        return False
    with connect(server_dsn(dsn), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
        return True
