"""The fleet pages' reads and writes.

Reads of the fleet view (`v_gateway_fleet`) go through the console's async pool with the scope
predicate in SQL, like every console query. Versions, history, profiles and writes go through the
`fleet` library (sync psycopg), each call on its own short connection in a worker thread
(`asyncio.to_thread`), so the library owns its SQL and its validation.

Who may edit a gateway's config: an admin, an operator of the gateway's firm, a park manager of
its park — read from `console_roles` for that firm and park, not from the scope's union of
grants (an inspector of park A who manages park B must not edit in A).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

import fleet
from console.scope import Scope, scope_sql
from parkpulse.errors import ParkPulseError

__all__ = [
    "ConfigPage",
    "FleetFilter",
    "VersionConflict",
    "can_edit",
    "fleet_gateway",
    "fleet_list",
    "load_config_page",
    "profile_choices",
    "rollback",
    "save",
]

Row = dict[str, Any]
T = TypeVar("T")


class VersionConflict(ParkPulseError):
    """The desired config changed since the editor loaded it."""

    def __init__(self, gateway_id: str, base: int | None, current: fleet.ConfigVersion | None) -> None:
        self.base = base
        self.current = current
        who = f" by {current.created_by}" if current is not None else ""
        now = current.version if current is not None else None
        super().__init__(
            f"base_version: {gateway_id}'s config is now version {now}{who}, not {base}; reload and edit again"
        )


@dataclass(frozen=True)
class FleetFilter:
    park: str | None = None
    firm: str | None = None
    state: str | None = None  # online / offline
    drift: bool = False

    def params(self) -> dict[str, Any]:
        return {"f_park": self.park, "f_firm": self.firm, "f_state": self.state, "f_drift": self.drift}


_FLEET_SQL = f"""SELECT g.*, extract(epoch FROM now() - g.last_seen) AS last_seen_s
    FROM v_gateway_fleet g
    WHERE {scope_sql("g")}
      AND (%(f_park)s::text IS NULL OR g.park_id = %(f_park)s)
      AND (%(f_firm)s::text IS NULL OR g.firm_id = %(f_firm)s)
      AND (%(f_state)s::text IS NULL OR g.state = %(f_state)s)
      AND (NOT %(f_drift)s OR coalesce(g.drift, false))"""


async def _all(conn: AsyncConnection, query: str, params: dict[str, Any]) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode(), params)
        return await cur.fetchall()


async def fleet_list(conn: AsyncConnection, scope: Scope, flt: FleetFilter) -> list[Row]:
    return await _all(
        conn,
        _FLEET_SQL + " ORDER BY g.park_id, g.firm_id, g.gateway_id LIMIT 5000",
        {**scope.params(), **flt.params()},
    )


async def fleet_gateway(conn: AsyncConnection, scope: Scope, gateway_id: str) -> Row | None:
    rows = await _all(
        conn,
        _FLEET_SQL + " AND g.gateway_id = %(gw)s",
        {**scope.params(), **FleetFilter().params(), "gw": gateway_id},
    )
    return rows[0] if rows else None


async def can_edit(conn: AsyncConnection, user: str, park_id: str, firm_id: str) -> bool:
    cur = await conn.execute(
        """SELECT EXISTS (SELECT 1 FROM console_roles r
                          WHERE r.user_name = %(u)s
                            AND (r.role = 'admin'
                                 OR (r.role = 'operator' AND r.firm_id = %(firm)s)
                                 OR (r.role = 'park_manager' AND r.park_id = %(park)s)))""",
        {"u": user, "park": park_id, "firm": firm_id},
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def _in_thread(dsn: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
    def run() -> T:
        with psycopg.connect(dsn, connect_timeout=10) as conn:  # commits on a normal exit
            return work(conn)

    return await asyncio.to_thread(run)


@dataclass
class ConfigPage:
    desired: fleet.ConfigVersion | None
    history: list[fleet.ConfigVersion] = field(default_factory=list)


async def load_config_page(dsn: str, gateway_id: str) -> ConfigPage:
    def work(conn: psycopg.Connection[Any]) -> ConfigPage:
        return ConfigPage(desired=fleet.desired(conn, gateway_id), history=fleet.history(conn, gateway_id))

    return await _in_thread(dsn, work)


async def profile_choices(dsn: str) -> list[tuple[str, str]]:
    """(source, name) of every profile of the platform's library, sorted."""

    def work(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
        return sorted({(p.source, p.name) for p in fleet.profiles.list(conn, source=None)})

    return await _in_thread(dsn, work)


def _lock(conn: psycopg.Connection[Any], gateway_id: str, base_version: int | None) -> None:
    """Serialise the console's writes to one gateway and refuse a stale editor."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('pp-fleet-console:' || %s))", (gateway_id,))
    current = fleet.desired(conn, gateway_id)
    if (current.version if current is not None else None) != base_version:
        raise VersionConflict(gateway_id, base_version, current)


async def save(
    dsn: str, gateway_id: str, config: dict[str, Any], *, base_version: int | None, by: str, reason: str
) -> fleet.ConfigVersion:
    """A new desired version (fleet.set_desired); raises fleet.ConfigRejected or VersionConflict."""

    def work(conn: psycopg.Connection[Any]) -> fleet.ConfigVersion:
        _lock(conn, gateway_id, base_version)
        return fleet.set_desired(conn, gateway_id, config, by=by, reason=reason)

    return await _in_thread(dsn, work)


async def rollback(
    dsn: str, gateway_id: str, to_version: int, *, base_version: int | None, by: str, reason: str
) -> fleet.ConfigVersion:
    def work(conn: psycopg.Connection[Any]) -> fleet.ConfigVersion:
        _lock(conn, gateway_id, base_version)
        return fleet.rollback(conn, gateway_id, to_version, by=by, reason=reason)

    return await _in_thread(dsn, work)
