"""Whole-park and scheduled generation: last month's reports for every firm (and park) into a folder.

Idempotent: a report already in the folder is kept (written atomically, so a file there is whole);
`force` makes them again. E-mailing them to subscribers is left to the notify service.
"""

from __future__ import annotations

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
from reports._period import Period
from reports._render import FORMATS, check_format, render, write_atomic
from reports._stream import DEFAULT_CHUNK, Output, RenderJob, auto_workers, iter_park_reports, run_jobs

__all__ = [
    "FORMATS",
    "ScheduleResult",
    "check_format",
    "firm_report",
    "generate_all",
    "last_month",
    "park_report",
    "park_reports",
    "render",
    "report_path",
    "write_atomic",
]


def last_month(tz: str) -> Period:
    now = datetime.now(ZoneInfo(tz))
    return Period(now.year, now.month).previous_month()


@dataclass
class ScheduleResult:
    period: Period
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    render_seconds: list[float] = field(default_factory=list)  # per report rendered, in its process


def report_path(root: Path, period: Period, park_id: str, subject: str, lang: str, fmt: str) -> Path:
    return root / period.key / park_id / f"{subject}.{lang}.{fmt}"


def firm_report(conn: psycopg.Connection[Any], firm_id: str, period: Period) -> Report:
    """One firm's report (reads only that firm's rows)."""
    return build_report(load_park(conn, find_park(conn, firm_id), period, firm_id), firm_id)


def park_report(conn: psycopg.Connection[Any], park_id: str, period: Period) -> Report:
    return build_report(load_park(conn, park_id, period))


def park_reports(conn: psycopg.Connection[Any], park_id: str, period: Period) -> Iterator[Report]:
    """Each firm's report, then the park's, from one read of the views (costs in chunks of firms)."""
    return iter_park_reports(conn, park_id, period)


def generate_all(
    conn: psycopg.Connection[Any],
    root: Path,
    period: Period,
    formats: tuple[str, ...] = FORMATS,
    langs: tuple[str, ...] = ("zh",),
    force: bool = False,
    workers: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> ScheduleResult:
    """Every park's and firm's report for the period under `root/<period>/<park>/`.

    Each file is written as soon as it is rendered, in `workers` processes (None: one per CPU when
    the database has enough firms to repay starting them, else in this process; reports/_stream.py).
    """
    for f in formats:
        check_format(f)
    out = ScheduleResult(period)
    parks = [r[0] for r in conn.execute("SELECT park_id FROM v_parks ORDER BY park_id")]
    n = auto_workers(conn) if workers is None else workers
    wanted = [(fmt, lang) for fmt in formats for lang in langs]

    def jobs() -> Iterator[RenderJob]:
        for park_id in parks:
            for rep in iter_park_reports(conn, park_id, period, chunk):
                todo: list[Output] = []
                for fmt, lang in wanted:
                    path = report_path(root, period, park_id, rep.subject_id, lang, fmt)
                    if path.exists() and not force:
                        out.kept.append(path)
                    else:
                        todo.append((fmt, lang, path))
                if todo:
                    yield RenderJob(rep, tuple(todo))

    for done in run_jobs(jobs(), n):
        out.written.extend(done.paths)
        out.render_seconds.append(done.seconds)
    return out
