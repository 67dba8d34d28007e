"""Whole-park and scheduled generation: last month's reports for every firm (and park) into a folder.

Idempotent: a report already in the folder is kept (written atomically, so a file there is whole);
`force` makes them again. E-mailing them to subscribers is left to the notify service.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from reports._build import build_report
from reports._gather import find_park, load_park
from reports._model import Report
from reports._pdf import render_pdf
from reports._period import Period
from reports._xlsx import render_xlsx
from reports.errors import ReportInputError

FORMATS = ("xlsx", "pdf")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ReportInputError("format", fmt, "must be xlsx or pdf")
    return fmt


def render(rep: Report, fmt: str, lang: str) -> bytes:
    return render_xlsx(rep, lang) if check_format(fmt) == "xlsx" else render_pdf(rep, lang)


def write_atomic(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def last_month(tz: str) -> Period:
    now = datetime.now(ZoneInfo(tz))
    return Period(now.year, now.month).previous_month()


@dataclass
class ScheduleResult:
    period: Period
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def report_path(root: Path, period: Period, park_id: str, subject: str, lang: str, fmt: str) -> Path:
    return root / period.key / park_id / f"{subject}.{lang}.{fmt}"


def firm_report(conn: psycopg.Connection[Any], firm_id: str, period: Period) -> Report:
    """One firm's report (reads only that firm's rows)."""
    return build_report(load_park(conn, find_park(conn, firm_id), period, firm_id), firm_id)


def park_report(conn: psycopg.Connection[Any], park_id: str, period: Period) -> Report:
    return build_report(load_park(conn, park_id, period))


def park_reports(conn: psycopg.Connection[Any], park_id: str, period: Period) -> Iterator[Report]:
    """The park's report first, then each firm's, from one read of the views."""
    data = load_park(conn, park_id, period)
    yield build_report(data)
    for fid in data.firms:
        yield build_report(data, fid)


def generate_all(
    conn: psycopg.Connection[Any],
    root: Path,
    period: Period,
    formats: tuple[str, ...] = FORMATS,
    langs: tuple[str, ...] = ("zh",),
    force: bool = False,
) -> ScheduleResult:
    """Every park's and firm's report for the period under `root/<period>/<park>/`."""
    for f in formats:
        check_format(f)
    out = ScheduleResult(period)
    parks = [r[0] for r in conn.execute("SELECT park_id FROM v_parks ORDER BY park_id")]
    for park_id in parks:
        wanted = [(fmt, lang) for fmt in formats for lang in langs]
        for rep in park_reports(conn, park_id, period):
            for fmt, lang in wanted:
                path = report_path(root, period, park_id, rep.subject_id, lang, fmt)
                if path.exists() and not force:
                    out.kept.append(path)
                    continue
                write_atomic(path, render(rep, fmt, lang))
                out.written.append(path)
    return out
