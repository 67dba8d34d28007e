"""User accounts and role grants (tables console_users, console_roles, console_sessions).

Used by `parkpulse users …` and by the tests; the web app reads the same tables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from console._passwords import check_password_policy, hash_password
from console.errors import AccountError
from console.scope import ROLES
from parkpulse.text import describe_control, first_control, printable

__all__ = [
    "UserInfo",
    "add_user",
    "disable_user",
    "enable_user",
    "list_users",
    "set_password",
]

_USER = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


@dataclass(frozen=True)
class UserInfo:
    user_name: str
    display_name: str | None
    disabled: bool
    roles: list[tuple[str, str | None, str | None]]  # (role, park_id, firm_id)
    created_at: datetime
    last_login_at: datetime | None


def _check_grants(conn: psycopg.Connection, role: str, parks: Sequence[str], firms: Sequence[str]) -> None:
    if role not in ROLES:
        raise AccountError("role", role, f"must be one of {', '.join(ROLES)}")
    if role == "admin" and (parks or firms):
        raise AccountError("role", role, "an admin sees every park; give no --park or --firm")
    if role == "inspector" and (not parks or firms):
        raise AccountError("park", list(parks), "an inspector needs one or more --park and no --firm")
    if role == "park_manager" and (len(parks) != 1 or firms):
        raise AccountError("park", list(parks), "a park manager needs exactly one --park and no --firm")
    if role == "operator" and (len(firms) != 1 or parks):
        raise AccountError("firm", list(firms), "an operator needs exactly one --firm and no --park")
    for p in parks:
        if conn.execute("SELECT 1 FROM parks WHERE park_id = %s", (p,)).fetchone() is None:
            raise AccountError("park", p, "no such park in the registry")
    for f in firms:
        if conn.execute("SELECT 1 FROM firms WHERE firm_id = %s", (f,)).fetchone() is None:
            raise AccountError("firm", f, "no such firm in the registry")


def _check_password(password: str, user_name: str) -> None:
    reason = check_password_policy(password, user_name)
    if reason:
        raise AccountError("password", "***", reason)


def _check_display_name(display_name: str | None) -> None:
    if display_name is None:
        return
    if (at := first_control(display_name)) is not None:
        raise AccountError("name", printable(display_name), describe_control(display_name, at))
    if len(display_name) > 200:
        raise AccountError("name", display_name[:40] + "…", "must be at most 200 characters long")


def add_user(
    conn: psycopg.Connection,
    user_name: str,
    password: str,
    role: str,
    *,
    parks: Sequence[str] = (),
    firms: Sequence[str] = (),
    display_name: str | None = None,
) -> None:
    """Create a user with one role and its scope. Commits."""
    if not _USER.match(user_name):
        raise AccountError(
            "user",
            printable(user_name),
            "must be 2-64 characters of a-z 0-9 . _ - starting with a letter or digit",
        )
    _check_display_name(display_name)
    _check_password(password, user_name)
    _check_grants(conn, role, parks, firms)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM console_users WHERE user_name = %s", (user_name,)).fetchone():
            raise AccountError("user", user_name, "already exists")
        conn.execute(
            "INSERT INTO console_users (user_name, display_name, password_hash) VALUES (%s, %s, %s)",
            (user_name, display_name, hash_password(password)),
        )
        park_ids: list[str | None] = list(parks) or [None]
        firm_ids: list[str | None] = list(firms) or [None]
        for p in park_ids:
            for f in firm_ids:
                conn.execute(
                    "INSERT INTO console_roles (user_name, role, park_id, firm_id) VALUES (%s, %s, %s, %s)",
                    (user_name, role, p, f),
                )
    conn.commit()


def list_users(conn: psycopg.Connection) -> list[UserInfo]:
    rows = conn.execute(
        """SELECT u.user_name, u.display_name, u.disabled, u.created_at, u.last_login_at,
                  coalesce(array_agg(ARRAY[r.role, r.park_id, r.firm_id] ORDER BY r.role_id)
                           FILTER (WHERE r.role IS NOT NULL), '{}')
           FROM console_users u LEFT JOIN console_roles r USING (user_name)
           GROUP BY u.user_name ORDER BY u.user_name"""
    ).fetchall()
    return [UserInfo(r[0], r[1], r[2], [(g[0], g[1], g[2]) for g in r[5]], r[3], r[4]) for r in rows]


def _require(conn: psycopg.Connection, user_name: str) -> None:
    if not _USER.match(user_name):
        raise AccountError("user", printable(user_name), "no such user")
    if conn.execute("SELECT 1 FROM console_users WHERE user_name = %s", (user_name,)).fetchone() is None:
        raise AccountError("user", user_name, "no such user")


def disable_user(conn: psycopg.Connection, user_name: str) -> int:
    """Disable a user and end every session of theirs. Returns the sessions ended."""
    with conn.transaction():
        _require(conn, user_name)
        conn.execute("UPDATE console_users SET disabled = true WHERE user_name = %s", (user_name,))
        cur = conn.execute("DELETE FROM console_sessions WHERE user_name = %s", (user_name,))
    conn.commit()
    return cur.rowcount


def enable_user(conn: psycopg.Connection, user_name: str) -> None:
    with conn.transaction():
        _require(conn, user_name)
        conn.execute("UPDATE console_users SET disabled = false WHERE user_name = %s", (user_name,))
        conn.execute("DELETE FROM console_login_failures WHERE key = %s", (f"user:{user_name}",))
    conn.commit()


def set_password(conn: psycopg.Connection, user_name: str, password: str) -> int:
    """Replace a password, end every session of the user. Returns the sessions ended."""
    with conn.transaction():
        _require(conn, user_name)
        _check_password(password, user_name)
        conn.execute(
            "UPDATE console_users SET password_hash = %s, password_changed_at = now() WHERE user_name = %s",
            (hash_password(password), user_name),
        )
        cur = conn.execute("DELETE FROM console_sessions WHERE user_name = %s", (user_name,))
        conn.execute("DELETE FROM console_login_failures WHERE key = %s", (f"user:{user_name}",))
    conn.commit()
    return cur.rowcount
