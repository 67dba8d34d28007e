"""`parkpulse ingest`: run the service, or feed it a synthetic park's load and show what was stored."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import uuid
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ingest.harness import IngestProcess, count_stored, wait_stored
from ingest.loadgen import plan_load, publish
from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkpulse.db import connect, migrate
from parkpulse.errors import ConfigError, ParkPulseError
from parkpulse.redact import redact_url
from parkpulse.registry import import_registry
from parkpulse.services import MosquittoBroker, free_port
from parkpulse.settings import describe_settings_error, get_settings
from parkpulse.synthetic import synthetic_park

__all__ = ["app"]

app = typer.Typer(
    help="The ingest service: MQTT (shared subscription) → PostgreSQL, exactly once, ack after commit.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def _settings(**overrides: object) -> IngestSettings:
    try:
        return IngestSettings.model_validate({k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err.print(
            f"ingest settings: {describe_settings_error(exc)}", style="red", markup=False, highlight=False
        )
        raise typer.Exit(2) from None
    except ConfigError as exc:  # a bad PARKPULSE_* value ingest falls back to
        err.print(f"ingest settings: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


@app.command()
def run(
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL (env PARKPULSE_INGEST_DATABASE_URL, else PARKPULSE_DATABASE_URL)"),
    ] = None,
    mqtt_url: Annotated[
        str | None, typer.Option(help="broker URL (env PARKPULSE_INGEST_MQTT_URL, else PARKPULSE_MQTT_URL)")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="shared-subscription group [PARKPULSE_INGEST_GROUP]")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="fixed MQTT client id of this process [PARKPULSE_INGEST_CLIENT_ID]")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="/metrics and /healthz port [PARKPULSE_INGEST_HTTP_PORT]")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the ingest service until SIGTERM/SIGINT (then it drains and commits what it has)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    s = _settings(
        database_url=database_url, mqtt_url=mqtt_url, group=group, client_id=client_id, http_port=http_port
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with IngestService(s, shutdown=stop) as svc:
            await svc.run()
        logging.getLogger("parkpulse.ingest").info(
            "stopped: %d readings stored by this process", svc.totals.readings
        )

    try:
        asyncio.run(main())
    except ParkPulseError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def load(
    firms: Annotated[int, typer.Option(min=1, help="firms in the synthetic park (one gateway each)")] = 10,
    meters: Annotated[int, typer.Option(min=1, help="meters per gateway (20 metrics each)")] = 10,
    readings: Annotated[int, typer.Option(min=1, help="readings to publish")] = 200_000,
    per_message: Annotated[int, typer.Option(min=1, help="readings per MQTT message")] = 2000,
    database_url: Annotated[
        str | None, typer.Option(envvar="PARKPULSE_DATABASE_URL", help="PostgreSQL URL")
    ] = None,
    mqtt_url: Annotated[str | None, typer.Option(envvar="PARKPULSE_MQTT_URL", help="broker URL")] = None,
    private_broker: Annotated[
        bool, typer.Option(help="start a private Mosquitto with ParkPulse's configuration")
    ] = False,
    start_ingest: Annotated[
        bool, typer.Option("--ingest/--no-ingest", help="start an ingest process (else one must run)")
    ] = True,
) -> None:
    """Publish a synthetic park's load while ingest runs, then show what was stored."""
    kernel = get_settings()
    dsn = database_url or kernel.database_url
    broker: MosquittoBroker | None = None
    proc: IngestProcess | None = None
    try:
        migrate(dsn)
        park = f"load-{uuid.uuid4().hex[:6]}"
        pf = synthetic_park(park, firms=firms, meters_per_gateway=meters)
        with connect(dsn) as conn:
            import_registry(conn, pf)
        if private_broker:
            broker = MosquittoBroker().start()
        url = broker.url if broker else (mqtt_url or kernel.mqtt_url)
        if start_ingest:
            proc = IngestProcess(dsn, url, f"pp-ingest-load-{park}", free_port(), rollup_interval_s=0).start()
        plan = plan_load(pf, readings, per_message)
        out.print(
            f"publishing {plan.readings:,} readings in {len(plan.messages):,} messages from "
            f"{len(plan.gateways)} gateways to {redact_url(url)} …",
            markup=False,
        )
        t0 = time.perf_counter()
        publish(url, plan.messages, client_id=f"pp-load-{park}")
        wait_stored(dsn, plan.last_seq, timeout=max(120.0, readings / 20_000))
        secs = time.perf_counter() - t0
        c = count_stored(dsn, plan.gateways)
    except ParkPulseError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        if proc is not None:
            proc.stop()
        if broker is not None:
            broker.close()
    t = Table(title=f"stored for park {park}")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("readings published", f"{plan.readings:,}")
    t.add_row("readings stored", f"{c.readings:,}")
    t.add_row("lost", f"{plan.readings - c.distinct:,}")
    t.add_row("duplicates", f"{c.duplicate_rows:,}")
    t.add_row("batches", f"{c.batches:,}")
    t.add_row("dead letters", f"{c.dead_letters:,}")
    t.add_row("open sequence gaps", f"{c.seq_gaps:,}")
    t.add_row("gateway-reported gaps", f"{c.data_gaps:,}")
    t.add_row("end to end", f"{secs:.2f} s ({c.readings / secs:,.0f} readings/s)")
    out.print(t)
    if c.distinct != plan.readings or c.duplicate_rows:
        raise typer.Exit(1)
