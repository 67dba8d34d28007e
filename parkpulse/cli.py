"""`parkpulse`: admin tasks of the kernel, plus every service's commands, registered by name.

Services add sub-commands through the `parkpulse.commands` entry-point group (pyproject.toml),
so this module never imports a service package.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from parkpulse import __version__
from parkpulse.errors import ParkPulseError, ValidationReport
from parkpulse.extras import MissingExtra, missing_extra_error
from parkpulse.settings import get_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="parkpulse",
    help="ParkPulse: industrial IoT telemetry for smart factories and green industrial parks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database: migrations, status, rollup refresh.", no_args_is_help=True)
registry_app = typer.Typer(help="The park registry: parks, firms, gateways, devices.", no_args_is_help=True)
wire_app = typer.Typer(help="The MQTT wire contract.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(registry_app, name="registry")
app.add_typer(wire_app, name="wire")

out = Console()
err = Console(stderr=True)

DsnOpt = Annotated[
    str | None, typer.Option("--database-url", envvar="PARKPULSE_DATABASE_URL", help="PostgreSQL URL")
]


def _dsn(value: str | None) -> str:
    return value or get_settings().database_url


@app.command()
def version() -> None:
    """Print the ParkPulse version."""
    out.print(__version__)


@db_app.command("migrate")
def db_migrate(
    database_url: DsnOpt = None,
    store: Annotated[str, typer.Option(help="auto | plain | timescale")] = "auto",
) -> None:
    """Create the database if missing and apply pending migrations (safe to re-run)."""
    from parkpulse.db import migrate, redact

    dsn = _dsn(database_url)
    settings = get_settings()
    applied = migrate(dsn, prefer=store, timezone=settings.timezone)
    if applied:
        for m in applied:
            out.print(f"applied {m.version:04d}_{m.name}" + (f" ({m.variant})" if m.variant else ""))
    else:
        out.print(f"up to date: {redact(dsn)}")


@db_app.command("status")
def db_status(database_url: DsnOpt = None) -> None:
    """Show the storage path, TimescaleDB version, rollup lag, failed background jobs and migrations."""
    from parkpulse.db import connect, status, store_health

    dsn = _dsn(database_url)
    st = status(dsn)
    out.print(f"storage path: [bold]{st.path or 'not migrated'}[/bold]")
    if st.applied:
        with connect(dsn, autocommit=True) as conn:
            h = store_health(conn)
        out.print(f"timescaledb: {h.timescaledb_version or 'not installed in this database'}")
        lag = h.lag
        if lag.dirty_buckets:
            out.print(
                f"rollup lag: {lag.oldest_mark_age_s or 0:.0f} s, {lag.dirty_buckets} fifteen-minute bucket(s) "
                f"waiting, the oldest from {lag.oldest_bucket:%Y-%m-%d %H:%M %Z}"
            )
        else:
            out.print("rollup lag: 0 s (nothing waits)")
        for j in h.failed_jobs:
            out.print(
                f"[red]background job {j.job_id} {j.proc_name}"
                f"{' on ' + j.relation if j.relation else ''} failed[/red] ({j.total_failures} failure(s), last "
                f"{j.last_run_started_at:%Y-%m-%d %H:%M:%S %Z}): {j.error or 'no error text'}"
            )
    table = Table("version", "name", "applied at")
    for v, name, at in st.applied:
        table.add_row(f"{v:04d}", name, at)
    for m in st.pending:
        table.add_row(f"{m.version:04d}", m.name, "[yellow]pending[/yellow]")
    out.print(table)
    views = Table("view file", "checksum", "applied at")
    for f, checksum, at in st.views:
        views.add_row(f, checksum, at)
    for f in st.views_pending:
        views.add_row(f, "", "[yellow]changed: re-applied at the next migrate[/yellow]")
    out.print(views)


@db_app.command("refresh")
def db_refresh(database_url: DsnOpt = None) -> None:
    """Bring the rollups up to date now (the ingest service does this continuously)."""
    from parkpulse.db import connect, refresh_rollups

    n = 0
    with connect(_dsn(database_url)) as conn:
        while True:  # in rounds, so the progress of a large backfill shows
            k = refresh_rollups(conn, max_buckets=20_000)
            if k == 0:
                break
            n += k
            out.print(f"  … {n} bucket(s)")
    out.print(f"refreshed {n} fifteen-minute bucket(s)")


@registry_app.command("validate")
def registry_validate(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Check a park.yaml and list every bad entry by its path in the file."""
    from parkpulse.registry import load_park_file

    pf = load_park_file(file)
    n_dev = sum(len(g.devices) for f in pf.firms for g in f.gateways)
    out.print(f"ok: park {pf.park.id}, {len(pf.firms)} firms, {n_dev} devices")


@registry_app.command("import")
def registry_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    database_url: DsnOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would be added, updated and moved; write nothing")
    ] = False,
    move: Annotated[
        bool,
        typer.Option(
            "--move",
            help="allow moving existing firms, gateways… to another park or firm "
            "(their history moves with them)",
        ),
    ] = False,
) -> None:
    """Validate a park.yaml and upsert it into the registry (nothing is written if it has errors).

    An entry that already belongs to another park (or a gateway or workshop to another firm) is
    refused unless --move is given; moves are printed as a diff and recorded in registry_audit.
    """
    from parkpulse.db import connect
    from parkpulse.registry import apply_import, load_park_file, plan_import

    pf = load_park_file(file)
    with connect(_dsn(database_url)) as conn:
        if dry_run:
            plan = plan_import(conn, pf)
            out.print(
                f"dry run, nothing written — park {pf.park.id}: {plan.summary()}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            for change in plan.changes:
                if change.action != "unchanged":
                    _print_change(_SIGN[change.action], change.lines())
            if plan.of("move") and not move:
                out.print("the moves above are refused without --move", markup=False, highlight=False)
            return
        plan = apply_import(conn, pf, move=move, source=str(file))
    for change in plan.of("move"):
        _print_change(">", ["moved " + change.lines()[0], *change.lines()[1:]])
    counts = ", ".join(f"{v} {k}" for k, v in plan.counts.items())
    out.print(f"imported {counts} ({plan.summary(done=True)})", markup=False, highlight=False, soft_wrap=True)


_SIGN = {"add": "+", "update": "~", "move": ">"}


def _print_change(sign: str, lines: list[str]) -> None:
    for i, line in enumerate(lines):
        out.print(f"{sign if i == 0 else ' '} {line}", markup=False, highlight=False, soft_wrap=True)


@wire_app.command("schema")
def wire_schema(
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the schema files")] = Path(
        "docs/schema"
    ),
) -> None:
    """Write the JSON Schemas of the wire contract (batch, status)."""
    from parkpulse.wire import Batch, Status

    output.mkdir(parents=True, exist_ok=True)
    for name, model in (("batch", Batch), ("status", Status)):
        path = output / f"{name}.schema.json"
        path.write_text(
            json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        out.print(f"wrote {path}")


@app.command("catalogue")
def catalogue_list() -> None:
    """List the metric catalogue."""
    from parkpulse.catalogue import load_catalogue

    cat = load_catalogue()
    table = Table("id", "name", "unit", "kind", "carrier", "中文", title=f"metric catalogue v{cat.version}")
    for m in cat.metrics:
        table.add_row(str(m.id), m.name, m.unit, m.kind, m.carrier or "", m.zh)
    out.print(table)


def _needs_extra(name: str, error: MissingExtra) -> None:
    """Register `name` as a command that only says which extra it needs (a slim, gateway-only install)."""

    def unavailable(ctx: typer.Context) -> None:
        raise error

    app.command(
        name=name,
        help=escape(f"(not installed here: needs pip install 'parkpulse[{error.extra}]')"),
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(unavailable)


def _load_plugins() -> None:
    for ep in entry_points(group="parkpulse.commands"):
        try:
            sub = ep.load()
        except ImportError as exc:
            missing = missing_extra_error(f"parkpulse {ep.name}", exc)
            if missing is not None:
                _needs_extra(ep.name, missing)
            continue  # that service is not installed in this environment
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=ep.name)


def _command_name() -> str:
    words = [a for a in sys.argv[1:3] if not a.startswith("-")]
    return " ".join(["parkpulse", *words])


def main() -> None:
    _load_plugins()
    try:
        try:
            app()
        except ImportError as exc:  # a platform command on a slim install: name the extra
            missing = missing_extra_error(_command_name(), exc)
            if missing is None:
                raise
            raise missing from None
    except ValidationReport as exc:
        err.print("error:", style="red", end=" ")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except ParkPulseError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
