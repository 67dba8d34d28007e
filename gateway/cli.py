"""`parkpulse-gateway`: validate, check, run, profiles, generate."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import typer

from gateway.config import GatewayConfig, load_config
from gateway.sources import PLUGINS
from parkpulse.errors import ConfigError, ParkPulseError, ValidationReport

__all__ = ["app", "main"]

app = typer.Typer(
    help="ParkPulse edge gateway: reads meters and sensors, never loses a reading.", no_args_is_help=True
)
profiles_app = typer.Typer(help="Device profiles (register maps).", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")

ConfigOpt = typer.Option(..., "--config", "-c", help="gateway YAML file", exists=False)


def _load(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ValidationReport as rep:
        _print_report(rep)
        raise typer.Exit(2) from None


def _print_report(rep: ValidationReport) -> None:
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True)
    err.print(f"[bold red]{rep.source}: {len(rep.problems)} problem(s)[/]")
    for p in rep.problems:
        got = "" if f"(got {p.shown_value})" in p.reason else f" [dim](got {escape(p.shown_value)})[/]"
        err.print(f"  [cyan]{p.path}[/]: {p.reason}{got}", highlight=False, markup=True)


@app.command()
def validate(config: Path = ConfigOpt) -> None:
    """Check a config file; print every error with its path in the file and the offending value."""
    cfg = _load(config)
    parts = ", ".join(keys.plugin.summary(cfg) for keys in PLUGINS)
    typer.echo(f"{config}: ok — gateway {cfg.gateway.park}/{cfg.gateway.firm}/{cfg.gateway.id}, {parts}")


@app.command()
def check(
    config: Path = ConfigOpt,
    timeout: float = typer.Option(10.0, help="seconds to wait for MQTT sensors"),
    discover_dlt645: str | None = typer.Option(
        None,
        "--discover-dlt645",
        metavar="BUS",
        help="only ask the one DL/T 645 meter on this bus (a dlt645_buses name) for its address, and print it",
    ),
) -> None:
    """Read every configured device once and print what it returned; exit 1 if any device fails."""
    from rich.console import Console
    from rich.table import Table

    from gateway.check import check_all

    cfg = _load(config)
    if discover_dlt645 is not None:
        _discover_dlt645(cfg, discover_dlt645)
        return
    results = asyncio.run(check_all(cfg, wait_s=timeout))
    table = Table(title=f"gateway {cfg.gateway.id}: one read of every device")
    for col in ("device", "metric", "value", "unit", "quality", "latency ms"):
        table.add_column(col, justify="right" if col in ("value", "latency ms") else "left")
    failed = 0
    qnames = {0: "good", 1: "manual", 2: "substituted", 3: "uncertain", 4: "bad"}
    for r in results:
        if r.error:
            failed += 1
            table.add_row(r.device, "—", f"[red]{r.error}[/]", "", "[red]bad[/]", f"{r.latency_ms:.1f}")
            continue
        for metric, value, unit, q, ev in r.rows:
            shown = "null" if value is None else f"{value:.6g}"
            if ev:
                shown += f" ({ev['event']})"
            color = "green" if q == 0 else ("yellow" if q < 4 else "red")
            table.add_row(
                r.device, metric, shown, unit, f"[{color}]{qnames.get(q, q)}[/]", f"{r.latency_ms:.1f}"
            )
    Console(width=160).print(table)
    if failed:
        typer.echo(f"{failed} of {len(results)} device(s) failed", err=True)
        raise typer.Exit(1)
    typer.echo(f"all {len(results)} device(s) answered")


def _discover_dlt645(cfg: GatewayConfig, bus: str) -> None:
    """The broadcast read-address of DL/T 645-2007 on one bus: works when one meter is on it."""
    from gateway.sources.dlt645 import Dlt645Error, discover

    names = [b.name for b in cfg.dlt645_buses]
    if bus not in names:
        typer.echo(
            f"--discover-dlt645: no DL/T 645 bus {bus!r} (known: {', '.join(names) or 'none'})", err=True
        )
        raise typer.Exit(2)
    try:
        address = asyncio.run(discover(cfg, bus))
    except Dlt645Error as exc:
        typer.echo(
            f"bus {bus}: no address read ({exc}); the broadcast read works only with one meter on the bus",
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(f"bus {bus}: one meter answers at address {address} (DL/T 645-2007)")


@app.command()
def run(config: Path = ConfigOpt) -> None:
    """Run the gateway until SIGTERM/SIGINT (serves /metrics and /healthz on http.listen)."""
    cfg = _load(config)
    logging.basicConfig(
        level=getattr(logging, cfg.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from gateway.runtime import Gateway

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Gateway(cfg, shutdown=stop).run()

    try:
        asyncio.run(main())
    except ParkPulseError as exc:
        typer.echo(f"parkpulse-gateway: {exc}", err=True)
        raise typer.Exit(1) from None


@profiles_app.command("list")
def profiles_list(profiles_dir: Path | None = typer.Option(None, help="extra profile folder")) -> None:
    """List the device profiles."""
    from rich.console import Console
    from rich.table import Table

    from gateway.sources.modbus import list_profiles

    t = Table()
    for col in ("name", "manufacturer", "model", "kind", "registers", "source"):
        t.add_column(col)
    for name, p in sorted(list_profiles([profiles_dir] if profiles_dir else None).items()):
        t.add_row(name, p.manufacturer, p.model, p.kind, str(len(p.registers)), p.source.document[:60])
    Console(width=200).print(t)


@profiles_app.command("show")
def profiles_show(
    name: str, profiles_dir: Path | None = typer.Option(None, help="extra profile folder")
) -> None:
    """Show one profile's register map and its source."""
    from rich.console import Console
    from rich.table import Table

    from gateway.sources.modbus import load_profile, plan_requests

    try:
        p = load_profile(name, [profiles_dir] if profiles_dir else None)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    con = Console(width=200)
    con.print(f"[bold]{p.name}[/] — {p.manufacturer} {p.model} ({p.kind})")
    con.print(f"source: {p.source.document}\nedition: {p.source.edition}")
    if p.source.notes:
        con.print(f"notes: {p.source.notes}")
    con.print(
        f"address base: {p.address_base} ({'PDU offsets' if p.address_base == 0 else '1-based register numbers'})"
    )
    t = Table()
    for col in (
        "metric",
        "address",
        "wire",
        "function",
        "type",
        "words",
        "scale",
        "offset",
        "unit",
        "native",
    ):
        t.add_column(col)
    for r, rr in zip(p.registers, p.resolved(), strict=True):
        t.add_row(
            r.metric,
            str(r.address),
            f"0x{rr.pdu:04X}",
            rr.function,
            rr.type,
            f"{rr.word_order}/{rr.byte_order}",
            f"{r.scale:g}",
            f"{r.offset:g}",
            r.unit,
            r.native_unit or "",
        )
    con.print(t)
    reqs = plan_requests(p.resolved(), max_gap=p.max_gap)
    con.print(
        f"{len(reqs)} request(s) per poll: "
        + ", ".join(f"{q.function} 0x{q.address:04X}+{q.count}" for q in reqs)
    )


@app.command()
def generate(
    scenario: Path = typer.Option(..., "--scenario", help="simulator scenario (park file + model/sim keys)"),
    manifest: Path = typer.Option(..., "--manifest", help="manifest written by parkpulse-sim park"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    uplink_url: str | None = typer.Option(
        None, "--uplink-url", help="broker URL (default PARKPULSE_MQTT_URL)"
    ),
    spool_dir: Path | None = typer.Option(None, help="folder for the spools (default OUT/spool)"),
    http_base_port: int | None = typer.Option(
        None, help="first local HTTP port (one per gateway); default off"
    ),
) -> None:
    """Write one gateway config per gateway of a scenario, plus the registry park.yaml."""
    from gateway.generate import generate as gen
    from parkpulse.settings import get_settings

    try:
        files = gen(
            scenario,
            manifest,
            out,
            uplink_url=uplink_url or get_settings().mqtt_url,
            spool_dir=spool_dir,
            http_base_port=http_base_port,
        )
    except ValidationReport as rep:
        _print_report(rep)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    for f in files:
        try:
            if f.name != "park.yaml":
                load_config(f)
        except ValidationReport as rep:
            _print_report(rep)
            raise typer.Exit(2) from None
        typer.echo(str(f))


def main() -> None:
    app()
