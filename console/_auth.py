"""Sign-in, sessions and login throttling against the console tables.

- A session cookie holds a random 256-bit token; the database keeps only its SHA-256, so a
  dump of console_sessions cannot be replayed. Each session has its own CSRF token.
- A failed login is logged with a keyed hash of the attempted name, never the name as typed
  (console._login_names).
- Failed logins are counted per user and per client address; past a free allowance each further
  failure doubles the wait (throttle_base_s … throttle_max_s). While blocked, the password is not
  even checked and the answer is the same whether the user exists or not.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from console._login_names import load_key_async, name_hash, throttle_key
from console._passwords import hash_password, needs_rehash, verify_password
from console.scope import Scope
from console.settings import ConsoleSettings
from parkpulse.text import printable

__all__ = ["LoginOutcome", "Session", "end_session", "load_session", "login"]

log = logging.getLogger("console.auth")


@dataclass(frozen=True)
class Session:
    scope: Scope
    csrf: str


@dataclass(frozen=True)
class LoginOutcome:
    ok: bool
    token: str | None = None
    csrf: str | None = None
    retry_after_s: int = 0


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _blocked_for(conn: AsyncConnection, keys: list[str]) -> int:
    row = await conn.execute(
        "SELECT max(extract(epoch FROM blocked_until - now())) FROM console_login_failures "
        "WHERE key = ANY(%s) AND blocked_until > now()",
        (keys,),
    )
    got = await row.fetchone()
    return math.ceil(got[0]) if got and got[0] is not None else 0


async def _record_failure(conn: AsyncConnection, key: str, free: int, st: ConsoleSettings) -> None:
    await conn.execute(
        """INSERT INTO console_login_failures AS f (key, failures, last_failure) VALUES (%(k)s, 1, now())
           ON CONFLICT (key) DO UPDATE SET failures = f.failures + 1, last_failure = now()""",
        {"k": key},
    )
    await conn.execute(
        """UPDATE console_login_failures
           SET blocked_until = now() + make_interval(secs =>
                 least(%(max)s, %(base)s * power(2, greatest(failures - %(free)s, 0))))
           WHERE key = %(k)s AND failures >= %(free)s""",
        {"k": key, "free": free, "base": st.throttle_base_s, "max": st.throttle_max_s},
    )


_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")  # as console_users.user_name


async def login(
    pool: AsyncConnectionPool, st: ConsoleSettings, user_name: str, password: str, ip: str, user_agent: str
) -> LoginOutcome:
    """Check a sign-in. A name that is not a well-formed user name never reaches a query; a failure
    is logged with the keyed hash of the name (it may be a password typed into the wrong field)."""
    ip, user_agent = printable(ip, 64), printable(user_agent, 200)
    well_formed = _USER_NAME.match(user_name) is not None
    async with pool.connection() as conn:
        # Forget failures older than a day so a user is not punished forever.
        await conn.execute("DELETE FROM console_login_failures WHERE last_failure < now() - interval '1 day'")
        row = None
        if well_formed:
            cur = await conn.execute(
                "SELECT password_hash, disabled FROM console_users WHERE user_name = %s", (user_name,)
            )
            row = await cur.fetchone()
        name_key = await load_key_async(conn)
        user_key, ip_key = throttle_key(name_key, user_name, row is not None), f"ip:{ip}"
        who = f"user_hash={name_hash(name_key, user_name)} known_user={'yes' if row else 'no'}"
        wait = await _blocked_for(conn, [user_key, ip_key])
        if wait > 0:
            log.warning("login throttled %s ip=%s retry_after_s=%d", who, ip, wait)
            return LoginOutcome(False, retry_after_s=wait)
        good = verify_password(row[0] if row else None, password)
        if not good or row is None or row[1]:
            await _record_failure(conn, user_key, st.throttle_user_free, st)
            await _record_failure(conn, ip_key, st.throttle_ip_free, st)
            log.warning("login failed %s ip=%s", who, ip)
            return LoginOutcome(False)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with conn.transaction():
            await conn.execute("DELETE FROM console_login_failures WHERE key = %s", (user_key,))
            await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
            await conn.execute(
                """INSERT INTO console_sessions (token_sha256, user_name, csrf_token, expires_at, ip, user_agent)
                   VALUES (%s, %s, %s, now() + %s, %s, %s)""",
                (_digest(token), user_name, csrf, timedelta(seconds=st.session_ttl_s), ip, user_agent),
            )
            new_hash = hash_password(password) if needs_rehash(row[0]) else row[0]
            await conn.execute(
                "UPDATE console_users SET last_login_at = now(), password_hash = %s WHERE user_name = %s",
                (new_hash, user_name),
            )
    log.info("login ok user=%s ip=%s", user_name, ip)
    return LoginOutcome(True, token=token, csrf=csrf)


async def load_session(pool: AsyncConnectionPool, st: ConsoleSettings, token: str | None) -> Session | None:
    """The live session of a cookie token, with the user's current roles; None when not valid."""
    if not token or len(token) > 128:
        return None
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT s.user_name, s.csrf_token, u.display_name,
                      coalesce(array_agg(r.role) FILTER (WHERE r.role IS NOT NULL), '{}'),
                      coalesce(array_agg(r.park_id) FILTER (WHERE r.park_id IS NOT NULL), '{}'),
                      coalesce(array_agg(r.firm_id) FILTER (WHERE r.firm_id IS NOT NULL), '{}'),
                      s.last_seen_at < now() - interval '60 seconds'
               FROM console_sessions s
               JOIN console_users u USING (user_name)
               LEFT JOIN console_roles r USING (user_name)
               WHERE s.token_sha256 = %s AND s.expires_at > now() AND NOT u.disabled
                 AND s.created_at > now() - %s
               GROUP BY s.user_name, s.csrf_token, u.display_name, s.last_seen_at""",
            (_digest(token), timedelta(seconds=st.session_absolute_s)),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        if row[6]:
            await conn.execute(
                "UPDATE console_sessions SET last_seen_at = now(), expires_at = now() + %s WHERE token_sha256 = %s",
                (timedelta(seconds=st.session_ttl_s), _digest(token)),
            )
    scope = Scope(
        user=row[0],
        display_name=row[2],
        roles=frozenset(row[3]),
        parks=tuple(sorted(set(row[4]))),
        firms=tuple(sorted(set(row[5]))),
    )
    return Session(scope=scope, csrf=row[1])


async def end_session(pool: AsyncConnectionPool, token: str | None) -> None:
    if not token:
        return
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM console_sessions WHERE token_sha256 = %s", (_digest(token),))
