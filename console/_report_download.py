"""GET /firms/{firm_id}/report.{xlsx|pdf}?period=2026-11&lang=zh: a firm's report as a download.

Scope as every console query: the firm is looked up with the scope predicate first (someone else's
firm is a 404, as on the firm page), then the report is made from the views on a worker thread."""

from __future__ import annotations

import asyncio
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from console._auth import Session
from console._deps import ID_PATTERN, console_state, lang_of, page_session
from console.scope import scope_sql
from parkpulse.db import read_only_conninfo
from reports import ReportInputError, firm_report, parse_period, render

__all__ = ["router"]

router = APIRouter()
_MEDIA = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def _make(dsn: str, firm_id: str, period: str, fmt: str, lang: str) -> bytes:
    """Render on a read-only connection to `dsn` (the read replica when one is configured)."""
    with psycopg.connect(read_only_conninfo(dsn), connect_timeout=10) as conn:
        return render(firm_report(conn, firm_id, parse_period(period)), fmt, lang)


@router.get("/firms/{firm_id}/report.{fmt}", include_in_schema=False)
async def firm_report_download(
    request: Request,
    session: Annotated[Session, Depends(page_session)],
    firm_id: Annotated[str, Path(pattern=ID_PATTERN)],
    fmt: Annotated[str, Path(pattern=r"^(xlsx|pdf)$")],
    period: Annotated[str, Query(pattern=r"^\d{4}(-\d{2})?$", description="YYYY-MM or YYYY")],
) -> Response:
    st = console_state(request)
    async with st.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT 1 FROM v_firms f WHERE f.firm_id = %(firm)s AND {scope_sql('f')}",
            {**session.scope.params(), "firm": firm_id},
        )
        if await cur.fetchone() is None:
            raise HTTPException(status_code=404, detail=f"firm_id: no firm {firm_id!r} in your scope")
    try:
        body = await asyncio.to_thread(
            _make,
            st.read_url or st.settings.dsn(),
            firm_id,
            period,
            fmt,
            "en" if lang_of(request) == "en" else "zh",
        )
    except ReportInputError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return Response(
        body,
        media_type=_MEDIA[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{firm_id}-{period}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )
