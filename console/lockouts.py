"""Login lockouts: see them and lift them (`parkpulse users lockouts|unlock`, the admin page).

Past its free allowance every failed login blocks its key for a doubling time (console._auth).
While a key is blocked even the right password is refused, by design: otherwise the block would
tell a guesser when a guess was right. Anyone who knows a user name can therefore lock that user
out for a while; an admin lifts the lockout here. Keys are `user:<name>` (an existing user),
`name#<hash>` (a name that is no user, kept only as its keyed hash) and `ip:<address>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from console._login_names import load_key, load_key_async, name_hash
from console.errors import AccountError

__all__ = ["Lockout", "list_lockouts", "list_lockouts_async", "unlock", "unlock_async", "unlock_key"]

_LIST_SQL = """SELECT key, failures, last_failure, blocked_until,
                      greatest(0, ceil(extract(epoch FROM blocked_until - now())))::bigint
               FROM console_login_failures
               WHERE last_failure >= now() - interval '1 day'
               ORDER BY blocked_until > now() DESC NULLS LAST, last_failure DESC"""
_DELETE_SQL = "DELETE FROM console_login_failures WHERE key = %s"


@dataclass(frozen=True)
class Lockout:
    key: str
    kind: str  # user | name | ip
    subject: str  # the user name, '#<hash>' of an unknown name, or the address
    user_hash: str | None  # the hash failed-login log lines carry for this user name
    failures: int
    last_failure: datetime
    blocked_until: datetime | None
    remaining_s: int

    @property
    def active(self) -> bool:
        return self.remaining_s > 0


def _lockout(row: tuple[Any, ...], key: bytes) -> Lockout:
    k = str(row[0])
    user_hash: str | None
    if k.startswith("name#"):
        kind, subject, user_hash = "name", k[4:], k[5:]
    else:
        kind, _, subject = k.partition(":")
        user_hash = name_hash(key, subject) if kind == "user" else None
    return Lockout(k, kind, subject, user_hash, int(row[1]), row[2], row[3], int(row[4] or 0))


def list_lockouts(conn: psycopg.Connection) -> list[Lockout]:
    """Every throttle counter of the last day, active blocks first."""
    key = load_key(conn)
    return [_lockout(r, key) for r in conn.execute(_LIST_SQL).fetchall()]


async def list_lockouts_async(conn: AsyncConnection) -> list[Lockout]:
    key = await load_key_async(conn)
    cur = await conn.execute(_LIST_SQL)
    return [_lockout(r, key) for r in await cur.fetchall()]


def _target(user: str | None, address: str | None) -> str:
    if (user is None) == (address is None):
        raise AccountError("user", user or address, "name a user or an --address, not both")
    return f"user:{user}" if user is not None else f"ip:{address}"


def unlock_key(conn: psycopg.Connection, key: str) -> bool:
    """Forget the failures of one throttle key (as listed). True when there was something to lift."""
    cur = conn.execute(_DELETE_SQL, (key,))
    conn.commit()
    return cur.rowcount > 0


def unlock(conn: psycopg.Connection, user: str | None = None, address: str | None = None) -> bool:
    """Lift the lockout of a user (their failures are forgotten) or of a client address."""
    return unlock_key(conn, _target(user, address))


async def unlock_async(conn: AsyncConnection, key: str) -> bool:
    cur = await conn.execute(_DELETE_SQL, (key,))
    return cur.rowcount > 0
