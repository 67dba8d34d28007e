"""/api/v1 for managed gateways (issue 14): the fleet list, a gateway's desired configuration,
its history and diffs, and changes (set, rollback) through the `fleet` library.

Same sessions and scope as the rest of the API: a user sees the gateways of the parks and firms
in scope; a change (CSRF header required) needs an admin, the park_manager of the gateway's park
or an operator of its firm. Secrets in a configuration are never sent back (masked `***`; a
masked value sent back keeps the stored one). The `fleet` library is sync psycopg: it runs in a
worker thread with a connection of its own, and records who (the console user), when and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

import fleet
from console._auth import Session
from console._deps import ID_PATTERN, OPT_ID_PATTERN, api_session, check_api_csrf, console_state
from console.scope import Scope, scope_sql
from parkpulse.errors import FieldError

__all__ = ["router"]

log = logging.getLogger("console.api.fleet")
router = APIRouter(prefix="/api/v1", tags=["fleet"])
ApiSession = Annotated[Session, Depends(api_session)]
GatewayId = Annotated[str, Path(pattern=ID_PATTERN)]
T = TypeVar("T")

_FLEET_STATE = r"^(online|offline|drift)?$"


class ConfigIn(BaseModel):
    config: dict[str, Any] | None = Field(default=None, description="the managed keys as JSON")
    yaml: str | None = Field(default=None, max_length=1_000_000, description="or the same as YAML text")
    reason: str = Field(min_length=1, max_length=500, description="why (kept in the history)")


class RollbackIn(BaseModel):
    version: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=500)


def _version_out(v: fleet.ConfigVersion) -> dict[str, Any]:
    out: dict[str, Any] = jsonable_encoder(
        {
            "gateway_id": v.gateway_id,
            "version": v.version,
            "sha256": v.sha256,
            "created_by": v.created_by,
            "created_at": v.created_at,
            "reason": v.reason,
            "rollback_of": v.rollback_of,
            "config": v.redacted(),
            "yaml": fleet.to_yaml(v.redacted()),
            "profiles": {source: sorted(names) for source, names in v.profiles.items()},
        }
    )
    return out


def _problems(problems: list[FieldError]) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"refused: {len(problems)} problem(s)",
            "problems": [{"path": p.path, "value": p.shown_value, "reason": p.reason} for p in problems],
        },
        status_code=422,
    )


async def _in_thread(request: Request, work: Callable[[psycopg.Connection[Any]], T]) -> T:
    """Run `work` with a sync connection of its own (autocommit) in a worker thread."""
    dsn = console_state(request).settings.dsn()

    def run() -> T:
        with psycopg.connect(dsn, autocommit=True, application_name="parkpulse-console-fleet") as conn:
            return work(conn)

    return await asyncio.to_thread(run)


async def _gateway_in_scope(request: Request, scope: Scope, gateway_id: str) -> dict[str, Any]:
    async with console_state(request).pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT g.gateway_id, g.park_id, g.firm_id FROM v_gateway_status g WHERE g.gateway_id = %(gw)s AND {scope_sql('g')}",
            {**scope.params(), "gw": gateway_id},
        )
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"gateway: no gateway {gateway_id!r} in your scope")
    return row


async def _may_edit(request: Request, scope: Scope, gw: dict[str, Any]) -> None:
    """An admin, the park manager of the gateway's park or an operator of its firm; 403 otherwise."""
    async with console_state(request).pool.connection() as conn:
        cur = await conn.execute(
            """SELECT 1 FROM console_roles WHERE user_name = %s AND (role = 'admin'
                 OR (role = 'park_manager' AND park_id = %s) OR (role = 'operator' AND firm_id = %s)) LIMIT 1""",
            (scope.user, gw["park_id"], gw["firm_id"]),
        )
        ok = await cur.fetchone()
    if ok is None:
        raise HTTPException(
            status_code=403,
            detail=f"gateway {gw['gateway_id']!r}: changing its configuration needs an operator of firm "
            f"{gw['firm_id']!r}, the park manager of {gw['park_id']!r} or an admin",
        )


@router.get("/gateways/fleet")
async def api_fleet(
    request: Request,
    session: ApiSession,
    park: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    firm: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    state: Annotated[str | None, Query(pattern=_FLEET_STATE, description="online, offline or drift")] = None,
) -> list[dict[str, Any]]:
    """Every gateway in scope: online or offline since when, version, spool depth, devices ok and
    failing, last error, mode, desired against applied config version, drift."""
    async with console_state(request).reader.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT v.* FROM v_gateway_fleet v
                WHERE {scope_sql("v")}
                  AND (%(park)s::text IS NULL OR v.park_id = %(park)s)
                  AND (%(firm)s::text IS NULL OR v.firm_id = %(firm)s)
                  AND (%(state)s::text IS NULL OR (%(state)s = 'drift' AND v.drift) OR v.state = %(state)s)
                ORDER BY v.park_id, v.firm_id, v.gateway_id LIMIT 5000""",
            {**session.scope.params(), "park": park or None, "firm": firm or None, "state": state or None},
        )
        rows = await cur.fetchall()
    out: list[dict[str, Any]] = jsonable_encoder(rows)
    return out


@router.get("/gateways/{gateway_id}/config", responses={404: {}})
async def api_config(request: Request, gateway_id: GatewayId, session: ApiSession) -> dict[str, Any]:
    """The newest desired configuration (secrets masked); 404 when the gateway has none."""
    await _gateway_in_scope(request, session.scope, gateway_id)
    v = await _in_thread(request, lambda c: fleet.desired(c, gateway_id))
    if v is None:
        raise HTTPException(status_code=404, detail=f"gateway {gateway_id!r} has no desired configuration")
    return _version_out(v)


def _parse_body(body: ConfigIn) -> dict[str, Any]:
    if (body.config is None) == (body.yaml is None):
        raise FieldError("config", None, "send exactly one of config (JSON) or yaml (text)")
    return fleet.from_yaml(body.yaml, "yaml") if body.yaml is not None else body.config or {}


@router.put("/gateways/{gateway_id}/config", responses={403: {}, 404: {}, 422: {}})
async def api_set_config(request: Request, gateway_id: GatewayId, body: ConfigIn, session: ApiSession) -> Any:
    """Store a new desired version after the gateway's own validator accepted it (X-CSRF-Token needed);
    422 lists every problem with its path, value and reason."""
    check_api_csrf(request, session)
    gw = await _gateway_in_scope(request, session.scope, gateway_id)
    await _may_edit(request, session.scope, gw)
    user = session.scope.user
    try:
        config = _parse_body(body)
        v = await _in_thread(
            request, lambda c: fleet.set_desired(c, gateway_id, config, by=user, reason=body.reason)
        )
    except FieldError as exc:
        return _problems([exc])
    except fleet.ConfigRejected as exc:
        return _problems(exc.problems)
    log.info("gateway %s config version %d set by %s: %s", gateway_id, v.version, user, body.reason)
    return _version_out(v)


@router.get("/gateways/{gateway_id}/config/history")
async def api_config_history(
    request: Request, gateway_id: GatewayId, session: ApiSession
) -> list[dict[str, Any]]:
    """Every version, newest first: who, when, why (configs not included; see /config/versions/N)."""
    await _gateway_in_scope(request, session.scope, gateway_id)
    versions = await _in_thread(request, lambda c: fleet.history(c, gateway_id))
    out: list[dict[str, Any]] = jsonable_encoder(
        [
            {
                "version": v.version,
                "sha256": v.sha256,
                "created_by": v.created_by,
                "created_at": v.created_at,
                "reason": v.reason,
                "rollback_of": v.rollback_of,
            }
            for v in versions
        ]
    )
    return out


@router.get("/gateways/{gateway_id}/config/versions/{version}", responses={404: {}})
async def api_config_version(
    request: Request, gateway_id: GatewayId, version: Annotated[int, Path(ge=1)], session: ApiSession
) -> dict[str, Any]:
    await _gateway_in_scope(request, session.scope, gateway_id)
    try:
        v = await _in_thread(request, lambda c: fleet.version(c, gateway_id, version))
    except fleet.UnknownVersion as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return _version_out(v)


@router.get("/gateways/{gateway_id}/config/diff", responses={404: {}})
async def api_config_diff(
    request: Request,
    gateway_id: GatewayId,
    session: ApiSession,
    a: Annotated[
        int | None, Query(ge=1, alias="from", description="older version (default: the one before `to`)")
    ] = None,
    b: Annotated[
        int | None, Query(ge=1, alias="to", description="newer version (default: the newest)")
    ] = None,
) -> dict[str, Any]:
    """Unified diff of two versions' YAML (secrets masked)."""
    await _gateway_in_scope(request, session.scope, gateway_id)

    def work(c: psycopg.Connection[Any]) -> dict[str, Any]:
        new = fleet.version(c, gateway_id, b) if b is not None else fleet.desired(c, gateway_id)
        if new is None:
            raise fleet.UnknownVersion(f"gateway {gateway_id!r} has no desired configuration")
        older = a if a is not None else new.version - 1
        old = fleet.version(c, gateway_id, older) if older >= 1 else None
        return {"from": old.version if old else None, "to": new.version, "diff": fleet.diff(old, new)}

    try:
        return await _in_thread(request, work)
    except fleet.UnknownVersion as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


@router.post("/gateways/{gateway_id}/config/rollback", responses={403: {}, 404: {}, 422: {}})
async def api_config_rollback(
    request: Request, gateway_id: GatewayId, body: RollbackIn, session: ApiSession
) -> Any:
    """A new version equal to an earlier one (X-CSRF-Token needed)."""
    check_api_csrf(request, session)
    gw = await _gateway_in_scope(request, session.scope, gateway_id)
    await _may_edit(request, session.scope, gw)
    user = session.scope.user
    try:
        v = await _in_thread(
            request, lambda c: fleet.rollback(c, gateway_id, body.version, by=user, reason=body.reason)
        )
    except fleet.UnknownVersion as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except fleet.ConfigRejected as exc:
        return _problems(exc.problems)
    log.info(
        "gateway %s config version %d (= %d) by %s: %s",
        gateway_id,
        v.version,
        body.version,
        user,
        body.reason,
    )
    return _version_out(v)
