"""Request plumbing shared by pages and API: state, language, sessions, CSRF, rendering."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from psycopg_pool import AsyncConnectionPool

from console._auth import Session, load_session
from console._live import AlertHub
from console.i18n import DEFAULT_LANG, LANGS, Translator
from console.settings import ConsoleSettings

__all__ = [
    "COOKIE_LANG",
    "COOKIE_SESSION",
    "ID_PATTERN",
    "KIND_PATTERN",
    "OPT_ID_PATTERN",
    "OPT_METRIC_PATTERN",
    "STATE_PATTERN",
    "ConsoleState",
    "LoginRequired",
    "api_session",
    "check_api_csrf",
    "check_form_csrf",
    "console_state",
    "lang_of",
    "optional_session",
    "page_session",
    "render",
    "safe_next",
]

COOKIE_SESSION = "pp_session"
COOKIE_LANG = "pp_lang"
COOKIE_PRELOGIN = "pp_login_csrf"
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
OPT_ID_PATTERN = r"^([a-z0-9][a-z0-9-]{0,63})?$"
OPT_METRIC_PATTERN = r"^([a-z0-9_]{1,64})?$"
STATE_PATTERN = r"^(open|firing|acknowledged|resolved|all)?$"
KIND_PATTERN = r"^(emission|data_gap|tamper|threshold|rate_of_change)?$"


@dataclass
class ConsoleState:
    settings: ConsoleSettings
    pool: AsyncConnectionPool
    hub: AlertHub
    templates: Jinja2Templates
    tz: ZoneInfo
    read_pool: AsyncConnectionPool | None = None  # PARKPULSE_DATABASE_READ_URL's replica, read-only sessions
    read_url: str | None = None

    @property
    def reader(self) -> AsyncConnectionPool:
        """The pool of the read-only pages: the replica's when one is configured, else the primary's."""
        return self.read_pool or self.pool


class LoginRequired(Exception):
    """A page needs a signed-in user (the handler redirects to /login)."""


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def lang_of(request: Request) -> str:
    q = request.query_params.get("lang")
    if q in LANGS:
        return q
    c = request.cookies.get(COOKIE_LANG)
    if c in LANGS:
        return c
    default = console_state(request).settings.default_lang
    return default if default in LANGS else DEFAULT_LANG


async def optional_session(request: Request) -> Session | None:
    if "pp_session" not in request.scope.setdefault("state", {}):
        st = console_state(request)
        request.state.pp_session = await load_session(
            st.pool, st.settings, request.cookies.get(COOKIE_SESSION)
        )
    got: Session | None = request.state.pp_session
    return got


async def page_session(request: Request) -> Session:
    s = await optional_session(request)
    if s is None:
        raise LoginRequired()
    return s


async def api_session(request: Request) -> Session:
    s = await optional_session(request)
    if s is None:
        raise HTTPException(status_code=401, detail="sign in first (POST /api/v1/session)")
    return s


def _same_origin(request: Request) -> bool:
    """Refuse a state change whose Origin (or Referer) names another site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = urlsplit(origin).netloc
    return host == request.headers.get("host", "")


def _tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def check_form_csrf(request: Request, session: Session, token: str | None) -> None:
    if not _tokens_match(session.csrf, token) or not _same_origin(request):
        raise HTTPException(status_code=403, detail="csrf: token missing or wrong")


def check_api_csrf(request: Request, session: Session) -> None:
    if not _tokens_match(session.csrf, request.headers.get("x-csrf-token")) or not _same_origin(request):
        raise HTTPException(status_code=403, detail="csrf: X-CSRF-Token header missing or wrong")


_NEXT = re.compile(r"^/[A-Za-z0-9/_\-.?=&%]*$")


def safe_next(value: str | None) -> str:
    """Only a local path (never //host or a scheme): no open redirect after login."""
    if value and _NEXT.match(value) and not value.startswith("//") and not value.startswith("/login"):
        return value
    return "/alerts"


def _fmt_dt(st: ConsoleState) -> Any:
    def fmt(value: datetime | None, seconds: bool = True) -> str:
        if value is None:
            return "—"
        local = value.astimezone(st.tz)
        return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

    return fmt


def fmt_num(value: float | Decimal | int | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    v = float(value)
    if v != v:  # NaN
        return "—"
    if abs(v) >= 1000 or v == int(v):
        return f"{v:,.{0 if v == int(v) else 1}f}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:,.{digits}f}".rstrip("0").rstrip(".")


def fmt_duration(seconds: float | Decimal | None) -> str:
    if seconds is None:
        return "—"
    s = int(float(seconds))
    if s < 0:
        return "0 s"
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {(s % 3600) // 60} min"
    return f"{s // 86400} d"


def pretty_json(value: Any) -> str:
    """Indented JSON with CJK kept readable (the template engine escapes it for HTML)."""
    import json

    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=str)


def render(
    request: Request,
    template: str,
    ctx: dict[str, Any],
    *,
    session: Session | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    st = console_state(request)
    lang = lang_of(request)
    t = Translator(lang)
    other = "en" if lang == "zh-CN" else "zh-CN"
    q = dict(request.query_params)
    q["lang"] = other
    from urllib.parse import urlencode

    base = {
        "request": request,
        "t": t,
        "lang": lang,
        "switch_url": f"{request.url.path}?{urlencode(q)}",
        "session": session,
        "scope": session.scope if session else None,
        "csrf": session.csrf if session else "",
        "dt": _fmt_dt(st),
        "num": fmt_num,
        "duration": fmt_duration,
        "pretty": pretty_json,
        "tz_name": str(st.tz),
    }
    resp = st.templates.TemplateResponse(request, template, {**base, **ctx}, status_code=status_code)
    if request.query_params.get("lang") in LANGS:
        resp.set_cookie(
            COOKIE_LANG,
            lang,
            max_age=365 * 86400,
            httponly=True,
            samesite="lax",
            secure=st.settings.cookie_secure,
        )
    resp.headers["Cache-Control"] = "no-store"
    return resp
