"""The console application: FastAPI with server-rendered pages, the /api/v1 JSON API and SSE."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console import _admin, _api, _fleet_api, _fleet_pages, _pages, _report_download
from console._deps import ConsoleState, LoginRequired, optional_session, render
from console._input_guard import refuse_control_characters
from console._live import AlertHub
from console.settings import ConsoleSettings
from parkpulse.db import read_only_conninfo
from parkpulse.settings import get_settings

__all__ = ["PUBLIC_ROUTES", "create_app"]

log = logging.getLogger("console")

# (method, path) that answer without a session. Everything else refuses anonymous access.
PUBLIC_ROUTES = frozenset(
    {("GET", "/login"), ("POST", "/login"), ("POST", "/api/v1/session"), ("GET", "/healthz")}
)

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SecurityHeaders:
    """Pure ASGI middleware (does not buffer streaming responses such as SSE).

    Everything but /static gets `Cache-Control: no-store` unless the route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers) and not static:
                    headers.append((b"cache-control", b"no-store"))  # API data and pages: never cached
                headers += [
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("console").joinpath(name)))


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    """Build the app. Validation happens here; the database is first touched at startup."""
    st = settings or ConsoleSettings()
    dsn = st.dsn()
    templates = Jinja2Templates(directory=str(_package_dir("templates")))
    tz = ZoneInfo(get_settings().timezone)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # check: a pooled connection is tested before use, so after a failover (multi-host URL with
        # target_session_attrs=read-write) a dead one is replaced instead of failing a request
        pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=st.pool_max,
            open=False,
            kwargs={"autocommit": True},
            name="console",
            check=AsyncConnectionPool.check_connection,
        )
        hub = AlertHub(dsn, st.sse_queue)
        await pool.open(wait=True, timeout=15)
        read_url = get_settings().database_read_url or None
        read_pool = None
        if read_url and read_url != dsn:  # read pages go to the replica, in read-only sessions
            read_pool = AsyncConnectionPool(
                read_only_conninfo(read_url),
                min_size=1,
                max_size=st.pool_max,
                open=False,
                kwargs={"autocommit": True},
                name="console-read",
                check=AsyncConnectionPool.check_connection,
            )
            await read_pool.open(wait=True, timeout=15)
        app.state.console = ConsoleState(
            settings=st,
            pool=pool,
            hub=hub,
            templates=templates,
            tz=tz,
            read_pool=read_pool,
            read_url=read_url,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                listener = tg.create_task(hub.run(), name="console-alert-listener")
                try:
                    yield
                finally:
                    hub.stop()  # ends every live feed, then the listener without waiting for its poll
                    listener.cancel()
        finally:
            await asyncio.wait_for(pool.close(), 10)
            if read_pool is not None:
                await asyncio.wait_for(read_pool.close(), 10)

    app = FastAPI(
        title="ParkPulse console API",
        version="1",
        description="Alerts, evidence, firms and gateway health, scoped to the signed-in user. "
        "Sign in with POST /api/v1/session; send the returned csrf_token as X-CSRF-Token on changes.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_control_characters)],  # every route: no NUL/control characters
        max_body_size=st.max_body_bytes,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served behind sign-in at /api/v1/openapi.json
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(_package_dir("static"))), name="static")
    app.include_router(_pages.router)
    app.include_router(_api.router)
    app.include_router(_admin.router)
    app.include_router(_report_download.router)
    app.include_router(_fleet_api.router)
    app.include_router(_fleet_pages.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> dict[str, Any]:
        cs: ConsoleState = request.app.state.console
        return {"status": "ok" if cs.hub.listening.is_set() else "degraded", "live_clients": cs.hub.clients}

    def _is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and not request.url.path.endswith("/stream"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            from urllib.parse import quote

            return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if _is_api(request) or request.url.path.endswith((".csv", "/stream")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        session = await optional_session(request)
        return render(
            request,
            "error.html",
            {"status": exc.status_code, "detail": str(exc.detail)},
            session=session,
            status_code=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body")),
                "value": str(e.get("input"))[:200],
                "reason": e.get("msg"),
            }
            for e in exc.errors()
        ]
        if _is_api(request) or request.url.path.endswith((".csv", "/stream")):
            return JSONResponse({"detail": problems}, status_code=422)
        session = await optional_session(request)
        text = "; ".join(f"{p['field']}: {p['reason']} (got {p['value']!r})" for p in problems)
        return render(
            request, "error.html", {"status": 422, "detail": text}, session=session, status_code=422
        )

    return app
