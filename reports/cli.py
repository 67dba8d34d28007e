"""`parkpulse report …`: a firm's or a park's report for a month or a year, and the monthly schedule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

from parkpulse.db import read_only_conninfo
from parkpulse.errors import ParkPulseError
from parkpulse.redact import redact_url
from parkpulse.settings import get_settings
from reports._model import Report
from reports._period import Period, parse_period
from reports._schedule import (
    check_format,
    firm_report,
    generate_all,
    last_month,
    park_report,
    render,
    write_atomic,
)
from reports._texts import check_lang
from reports.errors import ReportInputError

app = typer.Typer(help="Monthly and yearly energy reports (Excel, PDF).", no_args_is_help=True)

DsnOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL (default: PARKPULSE_DATABASE_READ_URL, a replica, else PARKPULSE_DATABASE_URL)",
    ),
]
PeriodOpt = Annotated[str, typer.Option("--month", "--year", help="YYYY-MM for a month, YYYY for a year")]
FormatOpt = Annotated[str, typer.Option("--format", help="xlsx or pdf")]
LangOpt = Annotated[str, typer.Option("--lang", help="zh (default) or en")]
OutOpt = Annotated[Path, typer.Option("-o", "--output", help="file to write")]


def _connect(dsn: str | None) -> psycopg.Connection:
    """A read-only connection: --database-url, else PARKPULSE_DATABASE_READ_URL (a replica), else
    the primary. Reports only read, so they may run on a replica."""
    get_settings.cache_clear()  # the environment of this command, not of an earlier caller in the process
    url = dsn or get_settings().read_url
    try:
        return psycopg.connect(read_only_conninfo(url), connect_timeout=10)
    except psycopg.OperationalError as exc:
        typer.echo(f"database {redact_url(url)}: cannot connect ({type(exc).__name__})", err=True)
        raise typer.Exit(2) from None


def _fail(exc: ParkPulseError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _write_report(
    build: Callable[[psycopg.Connection[Any], str, Period], Report],
    subject: str,
    period: str,
    output: Path,
    fmt: str,
    lang: str,
    database_url: str | None,
) -> None:
    """Build one report for `subject` (a firm or a park id) and write it atomically to `output`."""
    try:
        p, f, lg = parse_period(period), check_format(fmt), check_lang(lang)
        with _connect(database_url) as conn:
            rep = build(conn, subject, p)
        write_atomic(output, render(rep, f, lg))
    except ParkPulseError as exc:
        raise _fail(exc) from None
    typer.echo(f"{output}: {subject} {p.key} ({f}, {lg})")


@app.command("firm")
def firm_cmd(
    firm: Annotated[str, typer.Option("--firm", help="firm id")],
    period: PeriodOpt,
    output: OutOpt,
    fmt: FormatOpt = "xlsx",
    lang: LangOpt = "zh",
    database_url: DsnOpt = None,
) -> None:
    """One firm's report."""
    _write_report(firm_report, firm, period, output, fmt, lang, database_url)


@app.command("park")
def park_cmd(
    park: Annotated[str, typer.Option("--park", help="park id")],
    period: PeriodOpt,
    output: OutOpt,
    fmt: FormatOpt = "xlsx",
    lang: LangOpt = "zh",
    database_url: DsnOpt = None,
) -> None:
    """A park's report: every firm, and the park scorecard."""
    _write_report(park_report, park, period, output, fmt, lang, database_url)


@app.command("schedule")
def schedule_cmd(
    directory: Annotated[
        Path, typer.Option("--dir", help="folder the reports go into (<month>/<park>/<id>.<lang>.<fmt>)")
    ],
    month: Annotated[str | None, typer.Option("--month", help="YYYY-MM; default last month")] = None,
    lang: Annotated[list[str] | None, typer.Option("--lang", help="zh and/or en (repeatable)")] = None,
    force: Annotated[bool, typer.Option("--force", help="make reports already in the folder again")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="render in N processes (default: one per CPU from 20 firms on, else in this process)",
        ),
    ] = None,
    database_url: DsnOpt = None,
) -> None:
    """Last month's reports for every park and firm, Excel and PDF; reports already there are kept.
    Run it monthly (cron, a systemd timer); e-mailing them to subscribers is the notify service's job."""
    try:
        langs = tuple(check_lang(x) for x in (lang or ["zh"]))
        p = parse_period(month, "month") if month else last_month(get_settings().timezone)
        if p.month is None:
            raise _fail_month(month or "")
        if workers is not None and workers < 1:
            raise ReportInputError("workers", workers, "must be at least 1")
        with _connect(database_url) as conn:
            res = generate_all(conn, directory, p, langs=langs, force=force, workers=workers)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    typer.echo(f"{p.key}: {len(res.written)} written, {len(res.kept)} already there, in {directory}")


def _fail_month(value: str) -> ParkPulseError:
    return ReportInputError("month", value, "the schedule makes monthly reports: expected YYYY-MM")
