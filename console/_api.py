"""HTTP JSON API under /api/v1 (same sessions and scope as the pages; CSRF header on changes)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from console import _queries as q
from console._auth import Session, end_session, login
from console._deps import (
    COOKIE_SESSION,
    ID_PATTERN,
    KIND_PATTERN,
    OPT_ID_PATTERN,
    OPT_METRIC_PATTERN,
    STATE_PATTERN,
    api_session,
    check_api_csrf,
    console_state,
)
from console._pages import firm_data

__all__ = ["router"]

log = logging.getLogger("console.api")
router = APIRouter(prefix="/api/v1", tags=["api"])
ApiSession = Annotated[Session, Depends(api_session)]


class LoginIn(BaseModel):
    user: str = Field(max_length=64)
    password: str = Field(max_length=1024, repr=False)


class MeOut(BaseModel):
    user: str
    display_name: str | None
    roles: list[str]
    parks: list[str]
    firms: list[str]
    csrf_token: str = Field(description="send as X-CSRF-Token on POST/PUT/PATCH/DELETE")


class Alert(BaseModel):
    alert_id: int
    rule_id: str
    rule_version: int
    kind: str
    severity: str
    park_id: str
    park_name: str | None
    firm_id: str | None
    firm_name: str | None
    gateway_id: str | None
    device_id: str | None
    metric: str | None
    pollutant: str | None
    subject: str
    state: str
    opened_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    value: float | None
    limit_value: float | None
    unit: str | None
    message_zh: str
    message_en: str
    evidence: dict[str, Any] | list[Any] | None
    updated_at: datetime


class AlertEvent(BaseModel):
    event_id: int
    at: datetime
    actor: str
    action: str
    comment: str | None
    detail: dict[str, Any] | list[Any] | None


class AlertDetail(BaseModel):
    alert: Alert
    events: list[AlertEvent]


class Bucket(BaseModel):
    time: datetime
    n: int
    avg: float | None
    min: float | None
    max: float | None
    n_good: int | None
    worst_quality: int | None


class AlertReadings(BaseModel):
    alert_id: int
    metric: str | None
    unit: str | None
    limit_value: float | None
    minutes: list[Bucket]
    hourly: list[Bucket]


class ActionIn(BaseModel):
    action: Literal["acknowledge", "resolve", "comment", "reopen"]
    comment: str | None = Field(default=None, max_length=4000)


class ActionOut(BaseModel):
    alert_id: int
    state: str


def _me(s: Session) -> MeOut:
    sc = s.scope
    return MeOut(
        user=sc.user,
        display_name=sc.display_name,
        roles=sorted(sc.roles),
        parks=list(sc.parks),
        firms=list(sc.firms),
        csrf_token=s.csrf,
    )


@router.post("/session", response_model=MeOut, responses={401: {}, 429: {}})
async def api_login(request: Request, body: LoginIn) -> Response:
    """Sign in; sets the HTTP-only session cookie and returns the CSRF token for later changes."""
    if "application/json" not in request.headers.get("content-type", ""):
        raise HTTPException(status_code=415, detail="content-type: application/json required")
    st = console_state(request)
    ip = request.client.host if request.client else "unknown"
    out = await login(
        st.pool,
        st.settings,
        body.user.strip().lower(),
        body.password,
        ip,
        request.headers.get("user-agent", ""),
    )
    if out.retry_after_s:
        return JSONResponse(
            {"detail": f"too many failed logins; retry in {out.retry_after_s} s"},
            status_code=429,
            headers={"Retry-After": str(out.retry_after_s)},
        )
    if not out.ok or out.token is None or out.csrf is None:
        return JSONResponse({"detail": "user or password wrong, or account disabled"}, status_code=401)
    from console._auth import load_session

    sess = await load_session(st.pool, st.settings, out.token)
    assert sess is not None
    resp = JSONResponse(jsonable_encoder(_me(sess)))
    resp.set_cookie(
        COOKIE_SESSION,
        out.token,
        max_age=st.settings.session_absolute_s,
        httponly=True,
        secure=st.settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    return resp


@router.delete("/session", status_code=204)
async def api_logout(request: Request, session: ApiSession) -> Response:
    check_api_csrf(request, session)
    await end_session(console_state(request).pool, request.cookies.get(COOKIE_SESSION))
    resp = Response(status_code=204)
    resp.delete_cookie(COOKIE_SESSION, path="/")
    return resp


@router.get("/me", response_model=MeOut)
async def api_me(session: ApiSession) -> MeOut:
    return _me(session)


@router.get("/alerts", response_model=list[Alert])
async def api_alerts(
    request: Request,
    session: ApiSession,
    park: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    firm: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    metric: Annotated[str | None, Query(pattern=OPT_METRIC_PATTERN)] = None,
    state: Annotated[str, Query(pattern=STATE_PATTERN)] = "open",
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    flt = q.AlertFilter(
        park=park or None,
        firm=firm or None,
        metric=metric or None,
        state=state or "open",
        kind=kind or None,
        limit=limit,
    )
    async with console_state(request).pool.connection() as conn:
        return await q.list_alerts(conn, session.scope, flt)


async def _alert_or_404(conn: psycopg.AsyncConnection, session: Session, alert_id: int) -> dict[str, Any]:
    alert = await q.get_alert(conn, session.scope, alert_id)
    if alert is None:
        raise HTTPException(status_code=404, detail=f"alert_id: no alert {alert_id} in your scope")
    return alert


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
async def api_alert(request: Request, alert_id: int, session: ApiSession) -> dict[str, Any]:
    async with console_state(request).pool.connection() as conn:
        alert = await _alert_or_404(conn, session, alert_id)
        events = await q.alert_events(conn, session.scope, alert_id)
    return {"alert": alert, "events": events}


@router.get("/alerts/{alert_id}/readings", response_model=AlertReadings)
async def api_alert_readings(request: Request, alert_id: int, session: ApiSession) -> dict[str, Any]:
    async with console_state(request).pool.connection() as conn:
        alert = await _alert_or_404(conn, session, alert_id)
        minutes = await q.alert_minutes(conn, session.scope, alert)
        hourly = await q.alert_hourly(conn, session.scope, alert)
    return {
        "alert_id": alert_id,
        "metric": alert["metric"],
        "unit": alert["unit"],
        "limit_value": alert["limit_value"],
        "minutes": [{**m, "time": m["minute"]} for m in minutes],
        "hourly": [{**h, "time": h["bucket"]} for h in hourly],
    }


@router.post("/alerts/{alert_id}/actions", response_model=ActionOut, responses={403: {}, 404: {}, 409: {}})
async def api_alert_action(request: Request, alert_id: int, body: ActionIn, session: ApiSession) -> Any:
    """Acknowledge, resolve, reopen or comment (needs the X-CSRF-Token header)."""
    check_api_csrf(request, session)
    if body.action != "comment" and not session.scope.can_act:
        raise HTTPException(
            status_code=403, detail=f"action: {body.action!r} needs an inspector or manager role"
        )
    try:
        async with console_state(request).pool.connection() as conn:
            new_state = await q.act_on_alert(conn, session.scope, alert_id, body.action, body.comment)
    except (psycopg.errors.CheckViolation, psycopg.errors.InvalidParameterValue) as exc:
        return JSONResponse({"detail": exc.diag.message_primary or str(exc)}, status_code=409)
    if new_state is None:
        raise HTTPException(status_code=404, detail=f"alert_id: no alert {alert_id} in your scope")
    log.info("alert %d %s by %s -> %s (api)", alert_id, body.action, session.scope.user, new_state)
    return ActionOut(alert_id=alert_id, state=new_state)


def _json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = jsonable_encoder(rows)  # a list of dicts stays one (typed as Any)
    return out


def _json_obj(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = jsonable_encoder(obj)
    return out


@router.get("/firms")
async def api_firms(
    request: Request, session: ApiSession, park: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None
) -> list[dict[str, Any]]:
    async with console_state(request).pool.connection() as conn:
        rows = await q.firms_in_scope(conn, session.scope, park or None)
    return _json_rows(rows)


@router.get("/firms/{firm_id}")
async def api_firm(
    request: Request, firm_id: Annotated[str, Path(pattern=ID_PATTERN)], session: ApiSession
) -> dict[str, Any]:
    """Registry, energy by carrier, yearly KPIs with class and explanation, compliance verdicts."""
    return _json_obj(await firm_data(request, session, firm_id))


@router.get("/health/gateways")
async def api_gateways(
    request: Request, session: ApiSession, firm: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None
) -> list[dict[str, Any]]:
    async with console_state(request).pool.connection() as conn:
        return _json_rows(await q.gateway_health(conn, session.scope, firm or None))


@router.get("/health/devices")
async def api_devices(
    request: Request, session: ApiSession, firm: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None
) -> list[dict[str, Any]]:
    async with console_state(request).pool.connection() as conn:
        return _json_rows(await q.device_health(conn, session.scope, firm or None))


@router.get("/health/store")
async def api_store(request: Request, session: ApiSession) -> dict[str, Any]:
    """The store: path, TimescaleDB version, rollup lag, background jobs whose last run failed."""
    cs = console_state(request)
    return await asyncio.to_thread(q.store_health_of, cs.settings.dsn(), cs.read_url)


@router.get("/health/gaps")
async def api_gaps(
    request: Request,
    session: ApiSession,
    firm: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[dict[str, Any]]:
    async with console_state(request).pool.connection() as conn:
        return _json_rows(await q.gap_list(conn, session.scope, firm or None, limit))


@router.get("/openapi.json", include_in_schema=False)
async def api_openapi(request: Request, session: ApiSession) -> JSONResponse:
    """The OpenAPI document of this API (signed-in users only)."""
    return JSONResponse(request.app.openapi())
