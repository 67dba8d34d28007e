"""`parkpulse grafana …`: generate the dashboards, check their SQL, push them to a Grafana."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from parkpulse.errors import ParkPulseError
from parkpulse.settings import get_settings

__all__ = ["app"]

app = typer.Typer(
    help="Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6): generate, check, push.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="dashboards folder (default deploy/grafana/dashboards)")
]
SourceOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="read the dashboards' JSON from this folder (default: render them from the code)"
    ),
]


def _dir(value: Path | None) -> Path:
    """The folder `generate` writes: --dir, or deploy/grafana/dashboards of a source checkout."""
    from provisioning.dashboards import DEFAULT_OUT

    if value is not None:
        return value
    if not DEFAULT_OUT.parent.is_dir():
        err.print(
            "no deploy/grafana/ here (installed package, not a source checkout): give --dir", markup=False
        )
        raise typer.Exit(2)
    return DEFAULT_OUT


def _dashboards(source: Path | None) -> dict[str, dict[str, Any]]:
    from provisioning.dashboards import render_all
    from provisioning.panelcheck import load_dashboards

    if source is None:
        return {name: json.loads(text) for name, text in render_all().items()}
    if not source.is_dir():
        err.print(f"--dir: {source} is not a folder", markup=False)
        raise typer.Exit(2)
    found = load_dashboards(source)
    if not found:
        err.print(f"--dir: no *.json dashboards in {source}", markup=False)
        raise typer.Exit(2)
    return found


@app.command()
def generate(
    directory: DirOpt = None,
    check: Annotated[bool, typer.Option("--check", help="only report differences; exit 1 if any")] = False,
) -> None:
    """Write the dashboards' JSON (deterministic; commit the result)."""
    from provisioning.dashboards import diff_dir, write_all

    target = _dir(directory)
    if check:
        problems = diff_dir(target)
        for p in problems:
            err.print(p, style="red", markup=False)
        if problems:
            err.print("run `parkpulse grafana generate` and commit the result")
            raise typer.Exit(1)
        out.print(f"dashboards in {target} are up to date")
        return
    changed = write_all(target)
    for path in changed:
        out.print(f"wrote {path}", markup=False)
    if not changed:
        out.print(f"dashboards in {target} are up to date")


@app.command()
def check(
    source: SourceOpt = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", envvar="PARKPULSE_DATABASE_URL")
    ] = None,
    park: Annotated[str | None, typer.Option(help="park id (default: the first one)")] = None,
    days: Annotated[float, typer.Option(help="time range: the last N days")] = 30.0,
) -> None:
    """Run every panel's SQL (macros expanded as Grafana does) against the database; report shapes."""
    import psycopg

    from provisioning.panelcheck import check_dashboards
    from provisioning.sqlmacros import TimeRange

    end = datetime.now(UTC)
    tr = TimeRange(end - timedelta(days=days), end)
    dashboards = _dashboards(source)
    table = Table("dashboard", "panel", "rows", "problems")
    bad = 0
    try:
        with psycopg.connect(database_url or get_settings().database_url, connect_timeout=10) as conn:
            conn.read_only = True
            chosen = {"park": [park]} if park else None
            for r in check_dashboards(conn, dashboards, tr, chosen):
                bad += bool(r.problems)
                table.add_row(
                    Text(r.dashboard), Text(r.panel), str(r.rows), Text("; ".join(r.problems) or "ok")
                )
    except (psycopg.Error, LookupError) as exc:
        err.print(f"check failed: {exc}", style="red", markup=False)
        raise typer.Exit(2) from exc
    out.print(table)
    if bad:
        raise typer.Exit(1)


@app.command()
def push(
    url: Annotated[
        str, typer.Option(envvar="PARKPULSE_GRAFANA_URL", help="Grafana base URL, e.g. http://grafana:3000")
    ],
    token: Annotated[
        str | None,
        typer.Option(envvar="PARKPULSE_GRAFANA_TOKEN", help="service-account token (Editor or Admin)"),
    ] = None,
    grafana_database_url: Annotated[
        str | None,
        typer.Option(
            "--grafana-database-url",
            envvar="PARKPULSE_GRAFANA_DATABASE_URL",
            help="PostgreSQL URL as Grafana reaches it, with the read-only user (default: PARKPULSE_DATABASE_URL)",
        ),
    ] = None,
    source: SourceOpt = None,
    timeout: Annotated[float, typer.Option(help="HTTP timeout, seconds")] = 10.0,
) -> None:
    """Create or update the ParkPulse folder, datasource and dashboards (idempotent, stable uids)."""
    from provisioning.push import DatasourceSettings, connect
    from provisioning.push import push as do_push

    dashboards = _dashboards(source)
    try:
        ds = DatasourceSettings.from_url(grafana_database_url or get_settings().database_url)
        with connect(url, token, timeout) as api:
            report = do_push(api, ds, dashboards)
    except ParkPulseError as exc:
        err.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from exc
    for kind, uid, action in report.actions:
        out.print(f"{kind:10} {uid:24} {action}", markup=False)
    out.print(json.dumps({a: report.count(a) for a in ("created", "updated", "unchanged")}))
