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
from rich.table import Table

from parkpulse import __version__
from parkpulse.errors import ParkPulseError, ValidationReport
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
    """Show the storage path and applied and pending migrations."""
    from parkpulse.db import status

    st = status(_dsn(database_url))
    out.print(f"storage path: [bold]{st.path or 'not migrated'}[/bold]")
    table = Table("version", "name", "applied at")
    for v, name, at in st.applied:
        table.add_row(f"{v:04d}", name, at)
    for m in st.pending:
        table.add_row(f"{m.version:04d}", m.name, "[yellow]pending[/yellow]")
    out.print(table)


@db_app.command("refresh")
def db_refresh(database_url: DsnOpt = None) -> None:
    """Bring the rollups up to date now (the ingest service does this continuously)."""
    from parkpulse.db import connect, refresh_rollups

    with connect(_dsn(database_url)) as conn:
        n = refresh_rollups(conn)
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
) -> None:
    """Validate a park.yaml and upsert it into the registry (nothing is written if it has errors)."""
    from parkpulse.db import connect
    from parkpulse.registry import import_registry, load_park_file

    pf = load_park_file(file)
    with connect(_dsn(database_url)) as conn:
        counts = import_registry(conn, pf)
    out.print("imported " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@wire_app.command("schema")
def wire_schema(
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the schema files")] = Path("docs/schema"),
) -> None:
    """Write the JSON Schemas of the wire contract (batch, status)."""
    from parkpulse.wire import Batch, Status

    output.mkdir(parents=True, exist_ok=True)
    for name, model in (("batch", Batch), ("status", Status)):
        path = output / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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


def _load_plugins() -> None:
    for ep in entry_points(group="parkpulse.commands"):
        try:
            sub = ep.load()
        except ImportError:
            continue  # that service is not installed in this environment
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=ep.name)


def main() -> None:
    _load_plugins()
    try:
        app()
    except ValidationReport as exc:
        err.print(f"[red]error:[/red] {exc}", markup=False, highlight=False)
        sys.exit(2)
    except ParkPulseError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
