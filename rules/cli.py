"""CLI: `parkpulse rules …`, `parkpulse kpi evaluate …`, `parkpulse firms …` (entry points in pyproject)."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from parkpulse.settings import get_settings
from rules._ruleset import DEFAULT_RULE_SET, RuleSetError, list_rule_sets, load_rule_set, unverified_figures

__all__ = ["firms_app", "kpi_app", "rules_app"]

rules_app = typer.Typer(
    help="Rules engine: energy, 亩均 classes, smart-workshop and green-factory compliance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kpi_app = typer.Typer(
    help="KPIs without a database, for audit and reproduction.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
firms_app = typer.Typer(
    help="Firms' yearly economic data (import, template).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)

DsnOpt = Annotated[
    str | None, typer.Option("--database-url", envvar="PARKPULSE_DATABASE_URL", help="PostgreSQL URL")
]
ReadDsnOpt = Annotated[
    str | None,
    typer.Option(
        "--database-read-url",
        envvar="PARKPULSE_DATABASE_READ_URL",
        help="a streaming replica for the input queries (default: the database URL)",
    ),
]
RuleSetOpt = Annotated[str, typer.Option("--rule-set", help="rule set name (rules/data/rule_sets/)")]


def _dsn(v: str | None) -> str:
    return v or get_settings().database_url


@kpi_app.callback()
def _kpi() -> None:
    """KPIs without a database."""


@firms_app.callback()
def _firms() -> None:
    """Firms' economic data."""


@rules_app.command("run")
def rules_run(
    year: Annotated[int, typer.Option(help="year to evaluate")],
    month: Annotated[
        int | None, typer.Option(min=1, max=12, help="evaluate one month (energy, smart workshop)")
    ] = None,
    rule_set: RuleSetOpt = DEFAULT_RULE_SET,
    park: Annotated[str | None, typer.Option(help="only this park")] = None,
    database_url: DsnOpt = None,
    database_read_url: ReadDsnOpt = None,
) -> None:
    """Evaluate from the database (after refreshing rollups) and store the results."""
    from rules._service import run_once

    rs = load_rule_set(rule_set)
    t0 = datetime.now(UTC)
    run_id, n = run_once(_dsn(database_url), rs, year, month, park, read_url=database_read_url or None)
    secs = (datetime.now(UTC) - t0).total_seconds()
    period = f"{year}-{month:02d}" if month else str(year)
    out.print(f"run {run_id}: {n} firms evaluated for {period} with {rs.name} {rs.version} in {secs:.1f} s")


@rules_app.command("serve")
def rules_serve(
    rule_set: Annotated[str | None, typer.Option("--rule-set")] = None,
    interval: Annotated[float | None, typer.Option(help="seconds between evaluations")] = None,
    database_url: DsnOpt = None,
) -> None:
    """Keep the current month and the year to date evaluated, until SIGINT/SIGTERM."""
    from rules._service import RulesService, RulesSettings

    cfg = RulesSettings()
    svc = RulesService(
        _dsn(database_url),
        rule_set or cfg.rule_set,
        interval or cfg.interval_s,
        cfg.drain_s,
        get_settings().timezone,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        out.print(f"rules: serving with {svc.rule_set} every {svc.interval_s:g} s (Ctrl-C to stop)")
        await svc.serve(stop)
        out.print(f"rules: stopped after {svc.runs} evaluation(s)")

    asyncio.run(main())


@rules_app.command("sets")
def rules_sets() -> None:
    """List the rule sets shipped in rules/data/rule_sets/."""
    for name in list_rule_sets():
        try:
            rs = load_rule_set(name)
            out.print(f"{name}\t{rs.version}\t{rs.index.description or ''}")
        except RuleSetError as exc:
            out.print(f"{name}\tINVALID ({len(exc.problems)} problem(s))")


@rules_app.command("validate")
def rules_validate(rule_set: Annotated[str, typer.Argument()] = DEFAULT_RULE_SET) -> None:
    """Load a rule set and every file it names; report every problem at once, then list every
    unverified figure (file, key, value, note) of its files and of the files its index references."""
    rs = load_rule_set(rule_set)
    unverified = unverified_figures(rs)
    out.print(
        f"{rs.name} {rs.version}: valid ({len(rs.files)} files); 亩均 scheme {rs.mu.name} ({rs.mu.title})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"{len(unverified)} unverified figures (configurable defaults or figures no primary text confirmed):",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for u in unverified:
        value = "-" if u.value is None else u.value
        why = u.note or u.source
        out.print(
            f"  unverified: {u.file} {u.key} = {value}" + (f" — {why}" if why else ""),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@kpi_app.command("evaluate")
def kpi_evaluate(
    firms: Annotated[Path, typer.Option(help="firms.csv")],
    energy: Annotated[Path, typer.Option(help="energy.csv")],
    year: Annotated[int, typer.Option()],
    rule_set: RuleSetOpt = DEFAULT_RULE_SET,
    format: Annotated[str, typer.Option("--format", help="json | table")] = "json",
) -> None:
    """Evaluate energy, intensity, 亩均 score and class from two CSV files (no database)."""
    from rules._csvio import read_kpi_inputs
    from rules._evaluate import evaluate_year

    if format not in ("json", "table"):
        raise typer.BadParameter(f"--format: expected json or table (got {format!r})")
    rs = load_rule_set(rule_set)
    result = evaluate_year(rs, read_kpi_inputs(rs, firms, energy, year))
    doc = kpi_document(result)
    if format == "json":
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{rs.name} {rs.version} — {year}")
    for col in ("firm", "tce 当量值", "tce 等价值", "tCO2", "tce/万元", "Δ %", "亩均税收", "score", "class"):
        table.add_column(col, no_wrap=True)
    for f in result.firms:
        table.add_row(
            f.firm_id,
            _n(f.energy_tce),
            _n(f.energy_tce_equal_value),
            _n(f.carbon_tco2),
            _n(f.intensity_tce_per_10k_cny, 4),
            _n(f.intensity_change_pct, 2),
            _n(f.mu_tax_10k_cny, 2),
            _n(f.score, 2),
            f.klass,
        )
    wide = Console(width=max(out.width, 140))
    wide.print(table)
    for f in result.firms:
        wide.print(f"{f.firm_id}: {f.explanation.get('text') or ''}", markup=False, highlight=False)
    park = Table(title="park scorecard")
    for col in ("indicator", "value", "target", "unit", "met", "source"):
        park.add_column(col, overflow="fold")
    park_doc = doc["park"]
    assert isinstance(park_doc, dict)
    for row in park_doc["scorecard"]:
        park.add_row(
            row["indicator"],
            _n(row["value"], 2),
            _n(row["target"], 2),
            str(row["unit"] or ""),
            {True: "yes", False: "no", None: "-"}[row["met"]],
            str(row["source"]),
        )
    wide.print(park)


def kpi_document(result: object) -> dict[str, object]:
    from rules._evaluate import YearResult

    assert isinstance(result, YearResult)
    parks = sorted(result.scorecard)
    park_obj: dict[str, object] = {
        "park_id": parks[0] if len(parks) == 1 else parks,
        "scorecard": [s.public() for p in parks for s in result.scorecard[p]] if len(parks) == 1 else [],
    }
    if len(parks) > 1:
        by_park = {p: [s.public() for s in result.scorecard[p]] for p in parks}
        park_obj["parks"] = by_park
        park_obj["scorecard"] = by_park[parks[0]]
    return {
        "rule_set": result.rule_set,
        "rule_version": result.rule_version,
        "year": result.year,
        "firms": [f.public() for f in result.firms],
        "park": park_obj,
    }


def _n(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


@firms_app.command("import")
def firms_import(
    file: Annotated[Path, typer.Argument(help="csv or xlsx")],
    year: Annotated[int, typer.Option()],
    rule_set: RuleSetOpt = DEFAULT_RULE_SET,
    database_url: DsnOpt = None,
) -> None:
    """Import firms' economic data for a year: every problem is reported; nothing is imported on error."""
    from parkpulse.db import connect
    from rules._economics import import_economics

    rs = load_rule_set(rule_set)
    with connect(_dsn(database_url)) as conn:
        n = import_economics(conn, rs, file, year)
    out.print(f"imported {n} firm(s) for {year} from {file.name}")


@firms_app.command("template")
def firms_template(
    out_file: Annotated[Path, typer.Argument(help="template file to write (.csv or .xlsx)")] = Path(
        "firm_economics.xlsx"
    ),
    rule_set: RuleSetOpt = DEFAULT_RULE_SET,
) -> None:
    """Write an empty import template with Chinese and English headers (csv or xlsx by the name)."""
    from rules._economics import write_template

    if out_file.suffix.lower() not in (".csv", ".xlsx"):
        raise typer.BadParameter(f"expected a .csv or .xlsx file name (got {out_file.name!r})")
    write_template(load_rule_set(rule_set), out_file)
    out.print(f"wrote {out_file}")
