"""Admin pages: login lockouts, and lifting one (the same data as `parkpulse users lockouts`)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console._auth import Session
from console._deps import check_form_csrf, console_state, page_session, render
from console.lockouts import list_lockouts_async, unlock_async

__all__ = ["router"]

log = logging.getLogger("console.admin")
router = APIRouter(include_in_schema=False)
PageSession = Annotated[Session, Depends(page_session)]
# as listed: user:<name>, name#<12 hex>, ip:<address>
KEY_PATTERN = r"^(user:[a-z0-9][a-z0-9._-]{1,63}|name#[0-9a-f]{12}|ip:[0-9A-Za-z.:%_-]{1,64})$"


def _admin_only(session: Session) -> None:
    if not session.scope.admin:
        raise HTTPException(status_code=403, detail="admin: this page is for administrators")


@router.get("/admin/lockouts", response_class=HTMLResponse)
async def lockouts_page(request: Request, session: PageSession, done: str | None = None) -> Response:
    _admin_only(session)
    async with console_state(request).pool.connection() as conn:
        rows = await list_lockouts_async(conn)
    return render(
        request,
        "admin_lockouts.html",
        {"lockouts": rows, "done": done in ("1", "0") and done},
        session=session,
    )


@router.post("/admin/lockouts/unlock")
async def lockouts_unlock(
    request: Request,
    session: PageSession,
    key: Annotated[str, Form(pattern=KEY_PATTERN)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_form_csrf(request, session, csrf)
    _admin_only(session)
    async with console_state(request).pool.connection() as conn:
        lifted = await unlock_async(conn, key)
    log.info("lockout %s key=%s by %s", "lifted" if lifted else "not found", key, session.scope.user)
    return RedirectResponse(f"/admin/lockouts?done={int(lifted)}", status_code=303)
