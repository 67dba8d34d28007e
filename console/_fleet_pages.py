"""The fleet pages: every gateway at a glance, and each gateway's managed configuration.

- `/fleet`: every gateway in the user's scope from `v_gateway_fleet` (online/offline since when,
  software version, config desired against applied, spool, devices OK / failing, last error),
  filtered by park, firm, state and drift; drifted gateways are marked.
- `/fleet/{gateway}`: the desired config (secrets masked), its history (who, when, why), diffs,
  and rollback behind a confirmation page with a reason.
- `/fleet/{gateway}/edit`: the form for the common changes (add a meter from a profile, change a
  device's interval, switch a device on or off) and a raw YAML editor; every save asks for a
  reason and shows every problem the gateway's validator finds, with its path.

Out-of-scope gateways answer 404; in scope but not an operator of the firm, a park manager of the
park or an admin: read-only pages, and 403 on a write. Writes carry the session's CSRF token and
the version the editor started from (a newer version in between answers 409).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

import fleet
from console import _fleet_store as store
from console import _queries as q
from console._auth import Session
from console._deps import ID_PATTERN, OPT_ID_PATTERN, check_form_csrf, console_state, page_session, render
from console._fleet_edits import EditRefused, add_meter, buses_of, change_device, devices_of
from console._fleet_secrets import restore_urls, shown_config
from parkpulse.errors import FieldError

__all__ = ["router"]

log = logging.getLogger("console.fleet")
router = APIRouter()

PageSession = Annotated[Session, Depends(page_session)]
GatewayId = Annotated[str, Path(pattern=ID_PATTERN, description="gateway id")]
Csrf = Annotated[str, Form(max_length=200)]
Reason = Annotated[str, Form(max_length=500)]
BaseVersion = Annotated[str, Form(max_length=20, pattern=r"^[0-9]*$")]
YAML_MAX_CHARS = 900_000  # below the wire's 1 MB bound for the pushed document


# ---------------------------------------------------------------- the fleet list
@router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
async def fleet_page(
    request: Request,
    session: PageSession,
    park: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    firm: Annotated[str | None, Query(pattern=OPT_ID_PATTERN)] = None,
    state: Annotated[str | None, Query(pattern=r"^(online|offline)?$")] = None,
    drift: Annotated[str | None, Query(pattern=r"^(1|on)?$")] = None,
) -> Response:
    flt = store.FleetFilter(park=park or None, firm=firm or None, state=state or None, drift=bool(drift))
    async with console_state(request).reader.connection() as conn:
        gateways = await store.fleet_list(conn, session.scope, flt)
        parks = await q.parks_in_scope(conn, session.scope)
        firms = await q.firms_in_scope(conn, session.scope, flt.park)
    counts = {
        "total": len(gateways),
        "online": sum(1 for g in gateways if g.get("state") == "online"),
        "drift": sum(1 for g in gateways if g.get("drift")),
    }
    return render(
        request,
        "fleet.html",
        {"gateways": gateways, "flt": flt, "parks": parks, "firms": firms, "counts": counts},
        session=session,
    )


# ---------------------------------------------------------------- one gateway
async def _gateway(request: Request, session: Session, gateway_id: str) -> tuple[dict[str, Any], bool]:
    """The gateway's fleet row (404 outside the scope) and whether this user may edit it."""
    st = console_state(request)
    async with st.reader.connection() as conn:
        gw = await store.fleet_gateway(conn, session.scope, gateway_id)
    if gw is None:
        raise HTTPException(status_code=404, detail=f"gateway_id: no gateway {gateway_id!r} in your scope")
    async with st.pool.connection() as conn:
        editable = await store.can_edit(conn, session.scope.user, gw["park_id"], gw["firm_id"])
    return gw, editable


def _shown(version: fleet.ConfigVersion | None) -> dict[str, Any] | None:
    """A version as the page shows it: its fields, the config masked and as YAML."""
    if version is None:
        return None
    masked = shown_config(version.config)
    return {
        "version": version.version,
        "created_by": version.created_by,
        "created_at": version.created_at,
        "reason": version.reason,
        "sha256": version.sha256,
        "rollback_of": version.rollback_of,
        "profiles": {src: sorted(p) for src, p in (version.profiles or {}).items() if p},
        "yaml": fleet.to_yaml(masked),
    }


@router.get("/fleet/{gateway_id}", response_class=HTMLResponse, include_in_schema=False)
async def gateway_page(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    done: Annotated[str | None, Query(pattern=r"^(saved|rolled_back)?$")] = None,
) -> Response:
    gw, editable = await _gateway(request, session, gateway_id)
    page = await store.load_config_page(console_state(request).settings.dsn(), gateway_id)
    history = [_shown(v) for v in page.history]
    return render(
        request,
        "fleet_gateway.html",
        {
            "gw": gw,
            "editable": editable,
            "desired": _shown(page.desired),
            "history": history,
            "done": done or None,
        },
        session=session,
    )


# ---------------------------------------------------------------- diff and rollback
def _masked_diff(a: fleet.ConfigVersion | None, b: fleet.ConfigVersion) -> str:
    """fleet.diff (which masks secret-named values) of two versions whose URLs lost their credentials."""
    return fleet.diff(None if a is None else _masked_version(a), _masked_version(b))


def _masked_version(v: fleet.ConfigVersion) -> fleet.ConfigVersion:
    return dataclasses.replace(v, config=shown_config(v.config))


@router.get("/fleet/{gateway_id}/diff", response_class=HTMLResponse, include_in_schema=False)
async def diff_page(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    b: Annotated[int, Query(ge=1, description="the newer version")],
    a: Annotated[int | None, Query(ge=0, description="the older version; 0 = nothing")] = None,
) -> Response:
    gw, _ = await _gateway(request, session, gateway_id)
    page = await store.load_config_page(console_state(request).settings.dsn(), gateway_id)
    by_version = {v.version: v for v in page.history}
    if b not in by_version:
        raise HTTPException(status_code=404, detail=f"b: {gateway_id} has no config version {b}")
    if a is None:
        a = max((v for v in by_version if v < b), default=0)
    if a and a not in by_version:
        raise HTTPException(status_code=404, detail=f"a: {gateway_id} has no config version {a}")
    text = _masked_diff(by_version.get(a), by_version[b])
    return render(
        request,
        "fleet_diff.html",
        {"gw": gw, "a": a, "b": b, "lines": text.splitlines(), "versions": sorted(by_version)},
        session=session,
    )


@router.get("/fleet/{gateway_id}/rollback", response_class=HTMLResponse, include_in_schema=False)
async def rollback_confirm(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    to: Annotated[int, Query(ge=1, description="the version to return to")],
) -> Response:
    gw, editable = await _gateway(request, session, gateway_id)
    if not editable:
        raise HTTPException(status_code=403, detail=_refusal(gw))
    return await _rollback_form(request, session, gw, to)


async def _rollback_form(
    request: Request,
    session: Session,
    gw: dict[str, Any],
    to: int,
    *,
    problems: list[FieldError] | None = None,
    reason: str = "",
    status: int = 200,
) -> Response:
    page = await store.load_config_page(console_state(request).settings.dsn(), gw["gateway_id"])
    target = next((v for v in page.history if v.version == to), None)
    if target is None:
        raise HTTPException(status_code=404, detail=f"to: {gw['gateway_id']} has no config version {to}")
    return render(
        request,
        "fleet_rollback.html",
        {
            "gw": gw,
            "target": _shown(target),
            "desired": _shown(page.desired),
            "lines": _masked_diff(page.desired, target).splitlines() if page.desired else [],
            "problems": _problem_rows(problems or []),
            "reason": reason,
        },
        session=session,
        status_code=status,
    )


@router.post("/fleet/{gateway_id}/rollback", include_in_schema=False)
async def rollback_submit(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    to: Annotated[int, Form(ge=1)],
    csrf: Csrf = "",
    reason: Reason = "",
    base_version: BaseVersion = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    check_form_csrf(request, session, csrf)
    gw, editable = await _gateway(request, session, gateway_id)
    if not editable:
        raise HTTPException(status_code=403, detail=_refusal(gw))
    problems = _reason_problems(reason)
    if confirm != "yes":
        problems.append(FieldError("confirm", confirm, "tick the confirmation to roll back"))
    if problems:
        return await _rollback_form(request, session, gw, to, problems=problems, reason=reason, status=422)
    try:
        made = await store.rollback(
            console_state(request).settings.dsn(),
            gateway_id,
            to,
            base_version=_int_or_none(base_version),
            by=session.scope.user,
            reason=reason.strip(),
        )
    except fleet.ConfigRejected as exc:
        return await _rollback_form(
            request, session, gw, to, problems=exc.problems, reason=reason, status=422
        )
    except store.VersionConflict as exc:
        problems = [FieldError("base_version", base_version, str(exc))]
        return await _rollback_form(request, session, gw, to, problems=problems, reason=reason, status=409)
    log.info("fleet rollback gateway=%s to=%d new=%d by=%s", gateway_id, to, made.version, session.scope.user)
    return RedirectResponse(f"/fleet/{gateway_id}?done=rolled_back", status_code=303)


# ---------------------------------------------------------------- edit
def _refusal(gw: dict[str, Any]) -> str:
    return (
        f"gateway_id: {gw['gateway_id']}'s config may be changed only by an operator of firm "
        f"{gw['firm_id']}, a park manager of park {gw['park_id']} or an admin"
    )


def _reason_problems(reason: str) -> list[FieldError]:
    if not reason.strip():
        return [FieldError("reason", reason, "say why (it is kept in the history)")]
    return []


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None


def _problem_rows(problems: list[FieldError]) -> list[dict[str, str]]:
    return [{"path": p.path, "reason": p.reason, "value": p.shown_value} for p in problems]


async def _edit_page(
    request: Request,
    session: Session,
    gw: dict[str, Any],
    *,
    form: str | None = None,
    values: dict[str, str] | None = None,
    problems: list[FieldError] | None = None,
    status: int = 200,
) -> Response:
    dsn = console_state(request).settings.dsn()
    page = await store.load_config_page(dsn, gw["gateway_id"])
    config = page.desired.config if page.desired is not None else {}
    shown = _shown(page.desired)
    values = dict(values or {})
    values.setdefault("yaml", shown["yaml"] if shown else "")
    return render(
        request,
        "fleet_edit.html",
        {
            "gw": gw,
            "desired": shown,
            "base_version": page.desired.version if page.desired is not None else "",
            "devices": devices_of(config),
            "buses": buses_of(config),
            "profiles": await store.profile_choices(dsn),
            "form": form,
            "values": values,
            "problems": _problem_rows(problems or []),
        },
        session=session,
        status_code=status,
    )


@router.get("/fleet/{gateway_id}/edit", response_class=HTMLResponse, include_in_schema=False)
async def edit_page(request: Request, gateway_id: GatewayId, session: PageSession) -> Response:
    gw, editable = await _gateway(request, session, gateway_id)
    if not editable:
        raise HTTPException(status_code=403, detail=_refusal(gw))
    return await _edit_page(request, session, gw)


async def _save(
    request: Request,
    session: Session,
    gateway_id: str,
    *,
    form: str,
    values: dict[str, str],
    build: Callable[[dict[str, Any]], dict[str, Any]],
) -> Response:
    """The common path of every edit form: CSRF, rights, reason, build, validate, store, redirect.

    `build(current_config)` returns the new config or raises EditRefused / FieldError."""
    check_form_csrf(request, session, values.pop("csrf", ""))
    gw, editable = await _gateway(request, session, gateway_id)
    if not editable:
        raise HTTPException(status_code=403, detail=_refusal(gw))
    dsn = console_state(request).settings.dsn()
    reason = values.get("reason", "")
    problems = _reason_problems(reason)
    page = await store.load_config_page(dsn, gateway_id)
    current = page.desired.config if page.desired is not None else {}
    new: dict[str, Any] | None = None
    try:
        new = build(current)
    except EditRefused as exc:
        problems += exc.problems
    except FieldError as exc:
        problems.append(exc)

    async def again(found: list[FieldError], status: int) -> Response:
        return await _edit_page(request, session, gw, form=form, values=values, problems=found, status=status)

    if problems or new is None:
        return await again(problems, 422)
    try:
        made = await store.save(
            dsn,
            gateway_id,
            new,
            base_version=_int_or_none(values.get("base_version", "")),
            by=session.scope.user,
            reason=reason.strip(),
        )
    except fleet.ConfigRejected as exc:
        return await again(list(exc.problems), 422)
    except store.VersionConflict as exc:
        return await again([FieldError("base_version", values.get("base_version"), str(exc))], 409)
    log.info("fleet %s gateway=%s version=%d by=%s", form, gateway_id, made.version, session.scope.user)
    return RedirectResponse(f"/fleet/{gateway_id}?done=saved", status_code=303)


@router.post("/fleet/{gateway_id}/meter", include_in_schema=False)
async def add_meter_submit(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    meter_id: Annotated[str, Form(max_length=100)] = "",
    bus: Annotated[str, Form(max_length=200)] = "",
    unit: Annotated[str, Form(max_length=40)] = "",
    profile: Annotated[str, Form(max_length=200)] = "",
    interval_s: Annotated[str, Form(max_length=40)] = "",
    csrf: Csrf = "",
    reason: Reason = "",
    base_version: BaseVersion = "",
) -> Response:
    values = {
        "meter_id": meter_id,
        "bus": bus,
        "unit": unit,
        "profile": profile,
        "interval_s": interval_s,
        "csrf": csrf,
        "reason": reason,
        "base_version": base_version,
    }

    def build(current: dict[str, Any]) -> dict[str, Any]:
        return add_meter(
            current, meter_id=meter_id, bus_ref=bus, unit=unit, profile_ref=profile, interval=interval_s
        )

    return await _save(request, session, gateway_id, form="meter", values=values, build=build)


@router.post("/fleet/{gateway_id}/device", include_in_schema=False)
async def change_device_submit(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    device: Annotated[str, Form(max_length=300)] = "",
    interval_s: Annotated[str, Form(max_length=40)] = "",
    enabled: Annotated[str, Form(pattern=r"^(on|off)?$")] = "",
    csrf: Csrf = "",
    reason: Reason = "",
    base_version: BaseVersion = "",
) -> Response:
    values = {
        "device": device,
        "interval_s": interval_s,
        "enabled": enabled,
        "csrf": csrf,
        "reason": reason,
        "base_version": base_version,
    }

    def build(current: dict[str, Any]) -> dict[str, Any]:
        return change_device(current, ref=device, interval=interval_s, enabled=enabled)

    return await _save(request, session, gateway_id, form="device", values=values, build=build)


@router.post("/fleet/{gateway_id}/yaml", include_in_schema=False)
async def yaml_submit(
    request: Request,
    gateway_id: GatewayId,
    session: PageSession,
    yaml_text: Annotated[str, Form(alias="yaml", max_length=YAML_MAX_CHARS)] = "",
    csrf: Csrf = "",
    reason: Reason = "",
    base_version: BaseVersion = "",
) -> Response:
    values = {"yaml": yaml_text, "csrf": csrf, "reason": reason, "base_version": base_version}

    def build(current: dict[str, Any]) -> dict[str, Any]:
        restored: dict[str, Any] = restore_urls(fleet.from_yaml(yaml_text), current)
        return restored  # masked secrets: fleet.set_desired keeps the stored values

    return await _save(request, session, gateway_id, form="yaml", values=values, build=build)
