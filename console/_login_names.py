"""How a login's user name appears in logs and in the throttle table.

A failed login may carry a password typed into the user-name field, so its user name is never
logged or stored as typed: logs carry a short keyed hash (HMAC-SHA256 under the install's
`login_name_key` in console_secrets, first 12 hex digits), the same for the same name, which an
admin can match against `parkpulse users lockouts`. The throttle table keys failures by
`user:<name>` only when the name is an existing user, else by `name#<hash>`.
"""

from __future__ import annotations

import hashlib
import hmac

import psycopg
from psycopg import AsyncConnection

from console.errors import ConsoleError

__all__ = ["KEY_SQL", "load_key", "load_key_async", "name_hash", "throttle_key"]

KEY_SQL = "SELECT value FROM console_secrets WHERE name = 'login_name_key'"


def name_hash(key: bytes, user_name: str) -> str:
    """12 hex digits of HMAC-SHA256(key, name): stable per install, not reversible without the key."""
    return hmac.new(key, user_name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:12]


def throttle_key(key: bytes, user_name: str, known: bool) -> str:
    return f"user:{user_name}" if known else f"name#{name_hash(key, user_name)}"


def _checked(row: tuple[bytes] | None) -> bytes:
    if row is None:
        raise ConsoleError("console_secrets holds no login_name_key: run `parkpulse db migrate`")
    return bytes(row[0])


def load_key(conn: psycopg.Connection) -> bytes:
    return _checked(conn.execute(KEY_SQL).fetchone())


async def load_key_async(conn: AsyncConnection) -> bytes:
    cur = await conn.execute(KEY_SQL)
    return _checked(await cur.fetchone())
