"""`parkpulse tariffs …` and `parkpulse cost …` (registered through the parkpulse.commands entry points)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, cast

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from costs._assign import Assignment, CapacityBasis, assign_tariff, list_assignments
from costs._sync import sync_tariffs
from costs._tariffs import load_tariffs
from parkpulse.errors import ParkPulseError
from parkpulse.redact import redact_text, redact_url
from parkpulse.settings import get_settings

__all__ = ["cost_app", "tariffs_app"]

tariffs_app = typer.Typer(
    help="Tariffs: validate and sync the tariffs file, assign tariffs to firms.", no_args_is_help=True
)
cost_app = typer.Typer(help="Energy cost per firm, from the cost views.", no_args_is_help=True)

out = Console()
err = Console(stderr=True)

DsnOpt = Annotated[
    str | None, typer.Option("--database-url", envvar="PARKPULSE_DATABASE_URL", help="PostgreSQL URL")
]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="tariffs file (default: the shipped one)")]


def _dsn(value: str | None) -> str:
    return value or get_settings().database_url


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]{exc}[/red]", markup=True, highlight=False)
    return typer.Exit(2)


def _connect(dsn: str) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise typer.Exit(
            _report(f"cannot connect to {redact_url(dsn)}: {redact_text(str(exc).strip())}")
        ) from None


def _report(msg: str) -> int:
    err.print(msg, markup=False, highlight=False)
    return 2


@tariffs_app.command("validate")
def tariffs_validate(file: FileOpt = None) -> None:
    """Check the tariffs file; print every problem with its field and value."""
    try:
        tf = load_tariffs(file)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    unverified = sum(1 for t in tf.tariffs for v in t.versions if not v.verified)
    out.print(
        f"{tf.path}: {len(tf.tariffs)} tariffs, checksum {tf.checksum}; {unverified} version(s) not verified"
    )


@tariffs_app.command("list")
def tariffs_list(file: FileOpt = None) -> None:
    """The tariffs of the file with their versions, validity, sources and verified marks."""
    try:
        tf = load_tariffs(file)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    table = Table("tariff", "carrier", "version", "from", "to", "verified", "source", title=tf.path)
    for t in tf.tariffs:
        for v in t.versions:
            table.add_row(
                t.id,
                t.carrier,
                v.version,
                str(v.valid_from),
                str(v.valid_to or ""),
                str(v.verified),
                v.source,
            )
    out.print(table)


@tariffs_app.command("sync")
def tariffs_sync(file: FileOpt = None, database_url: DsnOpt = None) -> None:
    """Copy the tariffs file into the database (one transaction)."""
    try:
        tf = load_tariffs(file)
        with _connect(_dsn(database_url)) as conn:
            res = sync_tariffs(conn, tf)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(
        f"synced {res.tariffs} tariffs, {res.versions} versions, {res.prices} prices"
        + (f"; removed {', '.join(res.deleted)}" if res.deleted else "")
    )


@tariffs_app.command("assign")
def tariffs_assign(
    firm: Annotated[str, typer.Argument(help="firm id")],
    tariff: Annotated[str, typer.Argument(help="tariff id (see `tariffs list`)")],
    valid_from: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD")],
    valid_to: Annotated[
        str | None, typer.Option("--to", help="day after the last, YYYY-MM-DD (default: open)")
    ] = None,
    voltage_class: Annotated[
        str | None, typer.Option("--voltage", help="voltage class (electricity), e.g. kv1_10")
    ] = None,
    basis: Annotated[str, typer.Option(help="two-part charge: demand | capacity | none")] = "none",
    kva: Annotated[float | None, typer.Option(help="transformer capacity in kVA (capacity basis)")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    database_url: DsnOpt = None,
) -> None:
    """Assign a tariff to a firm for [from, to); refused when it overlaps another of the same carrier."""
    if basis not in ("demand", "capacity", "none"):
        raise typer.Exit(_report(f"--basis: expected demand, capacity or none (got {basis!r})"))
    try:
        a = Assignment(
            firm,
            tariff,
            _day("--from", valid_from),
            _day("--to", valid_to) if valid_to else None,
            voltage_class,
            cast(CapacityBasis, basis),
            kva,
            note,
        )
        with _connect(_dsn(database_url)) as conn:
            aid = assign_tariff(conn, a)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(
        f"assigned {tariff} to {firm} from {a.valid_from} to {a.valid_to or 'open end'} (assignment {aid})"
    )


def _day(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.Exit(_report(f"{option}: expected a date YYYY-MM-DD (got {text!r})")) from None


@tariffs_app.command("assignments")
def tariffs_assignments(
    firm: Annotated[str | None, typer.Argument(help="firm id (default: every firm)")] = None,
    database_url: DsnOpt = None,
) -> None:
    """The firms' tariff assignments."""
    with _connect(_dsn(database_url)) as conn:
        rows = list_assignments(conn, firm)
    table = Table("firm", "carrier", "tariff", "voltage", "basis", "kVA", "from", "to")
    for r in rows:
        table.add_row(*("" if x is None else str(x) for x in r))
    out.print(table)


def _cell(value: object, fmt: str) -> str:
    """A table cell: empty for NULL, `fmt` applied to numbers."""
    if value is None:
        return ""
    return format(value, fmt) if fmt else str(value)


@cost_app.command("month")
def cost_month(
    firm: Annotated[str, typer.Argument(help="firm id")],
    month: Annotated[str, typer.Argument(help="YYYY-MM")],
    database_url: DsnOpt = None,
) -> None:
    """A firm's cost of one month by carrier and period, each row with its tariff version and price."""
    first = _day("month", f"{month}-01")
    with _connect(_dsn(database_url)) as conn:
        rows = conn.execute(
            "SELECT carrier, period, quantity, unit, price, price_unit, cost_yuan, tariff_id, tariff_version, verified "
            "FROM v_firm_cost_monthly WHERE firm_id = %s AND month = %s ORDER BY carrier, period, price",
            (firm, first),
        ).fetchall()
    head = ("carrier", "period", "quantity", "unit", "price", "", "yuan", "tariff", "version", "verified")
    table = Table(*head, title=f"{firm} {month}")
    total = 0.0
    for r in rows:
        total += float(r[6] or 0)
        fmts = ("", "", ".3f", "", ".5g", "", ".2f", "", "", "")
        table.add_row(*(_cell(v, f) for v, f in zip(r, fmts, strict=True)))
    out.print(table)
    out.print(f"total {total:.2f} yuan" if rows else f"no cost rows for {firm} in {month}")


@cost_app.command("day")
def cost_day(
    firm: Annotated[str, typer.Argument(help="firm id")],
    day: Annotated[str, typer.Argument(help="YYYY-MM-DD")],
    database_url: DsnOpt = None,
) -> None:
    """A firm's cost of one day by carrier and period, with the tariff version, price and its basis."""
    d = _day("day", day)
    with _connect(_dsn(database_url)) as conn:
        rows = conn.execute(
            "SELECT carrier, period, quantity, unit, price, cost_yuan, tariff_id, tariff_version, price_basis, "
            "register_mismatch FROM v_firm_cost_daily WHERE firm_id = %s AND day = %s ORDER BY carrier, period",
            (firm, d),
        ).fetchall()
    head = (
        "carrier",
        "period",
        "quantity",
        "unit",
        "price",
        "yuan",
        "tariff",
        "version",
        "basis",
        "register",
    )
    table = Table(*head, title=f"{firm} {day}")
    for r in rows:
        fmts = ("", "", ".3f", "", ".5g", ".2f", "", "", "")
        cells = [_cell(v, f) for v, f in zip(r[:9], fmts, strict=True)]
        table.add_row(*cells, {True: "MISMATCH", False: "ok", None: ""}[r[9]])
    out.print(table)
