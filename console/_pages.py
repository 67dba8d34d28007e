"""Server-rendered pages: login, live alert feed (+ SSE stream), evidence, firms, health."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from console import _queries as q
from console._auth import Session, end_session, login
from console._chart import line_chart
from console._csv import evidence_csv
from console._deps import (
    COOKIE_PRELOGIN,
    COOKIE_SESSION,
    ID_PATTERN,
    KIND_PATTERN,
    OPT_ID_PATTERN,
    OPT_METRIC_PATTERN,
    STATE_PATTERN,
    check_form_csrf,
    console_state,
    lang_of,
    optional_session,
    page_session,
    render,
    safe_next,
)
from console._live import RESYNC
from console.i18n import Translator

__all__ = ["router"]

log = logging.getLogger("console.web")
router = APIRouter()

PageSession = Annotated[Session, Depends(page_session)]
# Filters accept an empty value (an unselected <select>) as "no filter".
ParkQ = Annotated[str | None, Query(pattern=OPT_ID_PATTERN, description="park id")]
FirmQ = Annotated[str | None, Query(pattern=OPT_ID_PATTERN, description="firm id")]
MetricQ = Annotated[str | None, Query(pattern=OPT_METRIC_PATTERN, description="catalogue metric name")]
StateQ = Annotated[str, Query(pattern=STATE_PATTERN)]
KindQ = Annotated[str | None, Query(pattern=KIND_PATTERN)]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_session_cookie(request: Request, resp: Response, token: str) -> None:
    st = console_state(request).settings
    resp.set_cookie(
        COOKIE_SESSION,
        token,
        max_age=st.session_absolute_s,
        httponly=True,
        secure=st.cookie_secure,
        samesite="lax",
        path="/",
    )


# ---------------------------------------------------------------- login / logout
@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: str | None = None) -> Response:
    if await optional_session(request):
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_form(request, next, None, 200)


def _login_form(request: Request, next_url: str | None, error: str | None, status: int) -> Response:
    import secrets

    token = secrets.token_urlsafe(24)
    resp = render(
        request,
        "login.html",
        {"next": safe_next(next_url), "error": error, "login_csrf": token},
        status_code=status,
    )
    st = console_state(request).settings
    resp.set_cookie(
        COOKIE_PRELOGIN,
        token,
        max_age=3600,
        httponly=True,
        secure=st.cookie_secure,
        samesite="strict",
        path="/login",
    )
    return resp


@router.post("/login", include_in_schema=False)
async def login_submit(
    request: Request,
    user: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/alerts",
) -> Response:
    import hmac

    t = Translator(lang_of(request))
    cookie = request.cookies.get(COOKIE_PRELOGIN, "")
    if not cookie or not csrf or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        return _login_form(request, next, t("login.expired"), 403)
    st = console_state(request)
    outcome = await login(
        st.pool,
        st.settings,
        user.strip().lower(),
        password,
        _client_ip(request),
        request.headers.get("user-agent", ""),
    )
    if outcome.retry_after_s:
        resp = _login_form(request, next, t("login.throttled", seconds=outcome.retry_after_s), 429)
        resp.headers["Retry-After"] = str(outcome.retry_after_s)
        return resp
    if not outcome.ok or outcome.token is None:
        return _login_form(request, next, t("login.failed"), 401)
    await end_session(st.pool, request.cookies.get(COOKIE_SESSION))  # a previous session of this browser
    resp = RedirectResponse(safe_next(next), status_code=303)
    _set_session_cookie(request, resp, outcome.token)
    resp.delete_cookie(COOKIE_PRELOGIN, path="/login")
    return resp


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, session: PageSession, csrf: Annotated[str, Form()] = "") -> Response:
    check_form_csrf(request, session, csrf)
    await end_session(console_state(request).pool, request.cookies.get(COOKIE_SESSION))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE_SESSION, path="/")
    return resp


@router.get("/", include_in_schema=False)
async def home(session: PageSession) -> Response:
    return RedirectResponse("/alerts", status_code=303)


# ---------------------------------------------------------------- alerts
def _filter(
    park: str | None, firm: str | None, metric: str | None, state: str, kind: str | None
) -> q.AlertFilter:
    return q.AlertFilter(
        park=park or None, firm=firm or None, metric=metric or None, state=state or "open", kind=kind or None
    )


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
async def alerts_page(
    request: Request,
    session: PageSession,
    park: ParkQ = None,
    firm: FirmQ = None,
    metric: MetricQ = None,
    state: StateQ = "open",
    kind: KindQ = None,
) -> Response:
    flt = _filter(park, firm, metric, state, kind)
    async with console_state(request).pool.connection() as conn:
        cur = await conn.execute("SELECT (extract(epoch FROM now()) * 1000)::bigint")
        rendered_ms = (await cur.fetchone() or (0,))[0]
        alerts = await q.list_alerts(conn, session.scope, flt)
        parks = await q.parks_in_scope(conn, session.scope)
        firms = await q.firms_in_scope(conn, session.scope, flt.park)
        metrics = await q.metric_options(conn)
    params = {
        k: v
        for k, v in request.query_params.items()
        if k in ("park", "firm", "metric", "state", "kind") and v
    }
    params["since"] = str(rendered_ms)
    return render(
        request,
        "alerts.html",
        {
            "alerts": alerts,
            "flt": flt,
            "parks": parks,
            "firms": firms,
            "metrics": metrics,
            "stream_url": "/alerts/stream?" + urlencode(params),
        },
        session=session,
    )


def _row_html(request: Request, alert: dict[str, Any], t: Translator) -> str:
    st = console_state(request)
    from console._deps import _fmt_dt, fmt_num

    tpl = st.templates.get_template("_alert_row.html")
    return tpl.render(a=alert, t=t, dt=_fmt_dt(st), num=fmt_num, fresh=True)


@router.get("/alerts/stream", include_in_schema=False)
async def alerts_stream(
    request: Request,
    session: PageSession,
    park: ParkQ = None,
    firm: FirmQ = None,
    metric: MetricQ = None,
    state: StateQ = "open",
    kind: KindQ = None,
    since: Annotated[
        int | None, Query(ge=0, le=4_102_444_800_000, description="epoch ms the page was rendered")
    ] = None,
) -> StreamingResponse:
    """Server-sent events: `alert` events carry {alert_id, action, matches, html}; `resync` asks to reload."""
    st = console_state(request)
    flt = _filter(park, firm, metric, state, kind)
    t = Translator(lang_of(request))
    scope = session.scope

    def _event(alert: dict[str, Any], action: str, event_id: str) -> str:
        data = {
            "alert_id": alert["alert_id"],
            "action": action,
            "state": alert["state"],
            "matches": bool(alert["matches"]),
            "html": _row_html(request, alert, t) if alert["matches"] else "",
        }
        return f"event: alert\nid: {event_id}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        sub = st.hub.subscribe()  # before the catch-up query, so nothing falls in between
        try:
            yield "retry: 3000\n: connected\n\n"
            if since is not None:
                async with st.pool.connection() as conn:
                    missed = await q.changed_since(
                        conn, scope, flt, datetime.fromtimestamp(since / 1000, UTC)
                    )
                for alert in missed:
                    yield _event(alert, "catch-up", "")
            while True:
                try:
                    note = await asyncio.wait_for(sub.queue.get(), st.settings.sse_keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if note is None:
                    return
                if note is RESYNC or note.get("resync"):
                    yield "event: resync\ndata: {}\n\n"
                    continue
                if not scope.admin and not scope.firms and note.get("park_id") not in scope.parks:
                    continue  # cheap pre-check; the scoped query below is the real guard
                async with st.pool.connection() as conn:
                    changed = await q.get_alert(conn, scope, note["alert_id"], flt)
                if changed is None:
                    continue
                yield _event(changed, str(note.get("action")), str(note.get("event_id", "")))
        finally:
            st.hub.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _evidence(request: Request, session: Session, alert_id: int) -> dict[str, Any]:
    async with console_state(request).pool.connection() as conn:
        alert = await q.get_alert(conn, session.scope, alert_id)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"alert_id: no alert {alert_id} in your scope")
        events = await q.alert_events(conn, session.scope, alert_id)
        minutes = await q.alert_minutes(conn, session.scope, alert)
        hourly = await q.alert_hourly(conn, session.scope, alert)
    return {"alert": alert, "events": events, "minutes": minutes, "hourly": hourly}


def _validity_items(evidence: Any) -> list[tuple[str, str, bool]]:
    """(key, text, is_structured) for the evidence json, validity-related keys first.

    Lists of records (e.g. the per-minute evidence of an emission hour) are left to
    `evidence_tables`."""
    if not isinstance(evidence, dict):
        return [("evidence", json.dumps(evidence, ensure_ascii=False), True)] if evidence else []
    words = ("valid", "flag", "minute", "exclud", "o2", "reference", "window", "hour", "count", "quality")
    keys = sorted(evidence, key=lambda k: (not any(w in k.lower() for w in words), k))
    out = []
    for k in keys:
        v = evidence[k]
        if _is_records(v):
            continue
        structured = isinstance(v, (dict, list))
        text = (
            json.dumps(v, ensure_ascii=False, indent=1 if structured else None, default=str)
            if structured or not isinstance(v, str)
            else v
        )
        out.append((str(k), text, structured))
    return out


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def evidence_tables(evidence: Any, max_rows: int = 500) -> list[tuple[str, list[str], list[dict[str, Any]]]]:
    """(key, columns, rows) for every list of records in the evidence json."""
    if not isinstance(evidence, dict):
        return []
    out = []
    for key, value in evidence.items():
        if _is_records(value):
            cols: list[str] = []
            for row in value[:max_rows]:
                cols.extend(c for c in row if c not in cols)
            out.append((str(key), cols, value[:max_rows]))
    return out


@router.get("/alerts/{alert_id}", response_class=HTMLResponse, include_in_schema=False)
async def alert_page(
    request: Request, alert_id: int, session: PageSession, done: str | None = None
) -> Response:
    ev = await _evidence(request, session, alert_id)
    return _render_evidence(request, session, ev, done=done)


def _render_evidence(
    request: Request,
    session: Session,
    ev: dict[str, Any],
    *,
    done: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    alert = ev["alert"]
    chart = line_chart(ev["minutes"], "minute", "avg", alert["limit_value"], alert["opened_at"])
    return render(
        request,
        "alert.html",
        {
            **ev,
            "chart": chart,
            "validity": _validity_items(alert["evidence"]),
            "evidence_tables": evidence_tables(alert["evidence"]),
            "done": done if done in ("firing", "acknowledged", "resolved") else None,
            "error": error,
        },
        session=session,
        status_code=status,
    )


@router.post("/alerts/{alert_id}/act", include_in_schema=False)
async def alert_act(
    request: Request,
    alert_id: int,
    session: PageSession,
    action: Annotated[str, Form(pattern=r"^(acknowledge|resolve|comment|reopen)$")],
    comment: Annotated[str, Form(max_length=4000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_form_csrf(request, session, csrf)
    if action != "comment" and not session.scope.can_act:
        raise HTTPException(status_code=403, detail=f"action: {action!r} needs an inspector or manager role")
    try:
        async with console_state(request).pool.connection() as conn:
            new_state = await q.act_on_alert(conn, session.scope, alert_id, action, comment or None)
    except (psycopg.errors.CheckViolation, psycopg.errors.InvalidParameterValue) as exc:
        ev = await _evidence(request, session, alert_id)
        reason = exc.diag.message_primary or str(exc)
        if isinstance(exc, psycopg.errors.CheckViolation):
            reason = f"{Translator(lang_of(request))('evidence.state_conflict')} ({reason})"
        return _render_evidence(request, session, ev, error=reason, status=409)
    if new_state is None:
        raise HTTPException(status_code=404, detail=f"alert_id: no alert {alert_id} in your scope")
    log.info("alert %d %s by %s -> %s", alert_id, action, session.scope.user, new_state)
    return RedirectResponse(f"/alerts/{alert_id}?done={new_state}", status_code=303)


@router.get("/alerts/{alert_id}/evidence.csv", include_in_schema=False)
async def alert_csv(request: Request, alert_id: int, session: PageSession) -> Response:
    ev = await _evidence(request, session, alert_id)
    body = evidence_csv(
        ev["alert"], ev["minutes"], ev["hourly"], ev["events"], evidence_tables(ev["alert"]["evidence"])
    )
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="alert-{alert_id}-evidence.csv"',
            "Cache-Control": "no-store",
        },
    )


# ---------------------------------------------------------------- firms
@router.get("/firms", response_class=HTMLResponse, include_in_schema=False)
async def firms_page(request: Request, session: PageSession, park: ParkQ = None) -> Response:
    async with console_state(request).reader.connection() as conn:
        firms = await q.firms_in_scope(conn, session.scope, park or None)
    return render(request, "firms.html", {"firms": firms}, session=session)


@router.get("/firms/{firm_id}", response_class=HTMLResponse, include_in_schema=False)
async def firm_page(
    request: Request, firm_id: Annotated[str, Path(pattern=ID_PATTERN)], session: PageSession
) -> Response:
    data = await firm_data(request, session, firm_id)
    return render(request, "firm.html", data, session=session)


async def firm_data(request: Request, session: Session, firm_id: str) -> dict[str, Any]:
    if not re.match(ID_PATTERN, firm_id):
        raise HTTPException(status_code=422, detail=f"firm_id: not a valid id (got {firm_id[:80]!r})")
    async with console_state(request).reader.connection() as conn:
        firm = await q.firm_info(conn, session.scope, firm_id)
        if firm is None:
            raise HTTPException(status_code=404, detail=f"firm_id: no firm {firm_id!r} in your scope")
        energy = await q.firm_energy(conn, session.scope, firm_id)
        kpis = await q.firm_kpis(conn, session.scope, firm_id)
        compliance = await q.firm_compliance(conn, session.scope, firm_id)
    return {"firm": firm, "energy": energy, "kpis": kpis, "compliance": compliance}


# ---------------------------------------------------------------- health
@router.get("/health", response_class=HTMLResponse, include_in_schema=False)
async def health_page(request: Request, session: PageSession, firm: FirmQ = None) -> Response:
    async with console_state(request).reader.connection() as conn:
        gateways = await q.gateway_health(conn, session.scope, firm or None)
        devices = await q.device_health(conn, session.scope, firm or None)
        gaps = await q.gap_list(conn, session.scope, firm or None)
        channels = await q.notify_channels(conn)
    cs = console_state(request)
    store = await asyncio.to_thread(q.store_health_of, cs.settings.dsn(), cs.read_url)
    return render(
        request,
        "health.html",
        {"gateways": gateways, "devices": devices, "gaps": gaps, "store": store, "channels": channels},
        session=session,
    )
