"""`parkpulse demo`: start a virtual park and every ParkPulse service, fill its history, run live.

Stages (each reported, and recorded in <workdir>/summary.json for the demo's test):
  env        PostgreSQL (configured → the machine's, started if stopped → embedded) and a broker
  database   a fresh demo database, migrated
  simulators the virtual park's meters, lines and CEMS (parkpulse-sim park)
  registry   gateway configs and the registry generated from the scenario, imported
  history    ingest starts; two years and more of hourly boundary-meter readings, and line
             history of three smart workshops (from a year earlier), go through MQTT → ingest;
             the firms' economic data imported; the import channels closed
  services   alert engine, gateways (one behind a proxy that loses its uplink), console
  rules      yearly KPIs, classes, compliance and the scorecard evaluated and stored
  live       the park runs; the summary is printed; Ctrl-C (or --duration) stops everything
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from demo._env import DemoEnv, EnvironmentError_, find_broker, find_postgres
from demo._history import (
    add_history_gateways,
    count_history,
    firm_profiles,
    line_profiles,
    publish_history,
    write_economics_csv,
)
from demo._procs import Supervisor
from demo._summary import print_summary, stage_counts
from parkpulse.db import TimescaleNotPreloaded, migrate, server_dsn
from parkpulse.redact import redact_url
from parkpulse.registry import import_registry, load_park_file
from parkpulse.services import free_port, port_open
from parkpulse.settings import get_settings, parse_mqtt_url
from parkpulse.tcp_proxy import TcpProxy

__all__ = ["app"]

app = typer.Typer(
    help="Run a whole simulated park end to end (the README's first command).", invoke_without_command=True
)
out = Console()

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "simulators" / "scenarios" / "demo-park.yaml"


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


@app.callback()
def demo(
    ctx: typer.Context,
    duration: Annotated[float, typer.Option(help="seconds to run live; 0 = until Ctrl-C")] = 0,
    scenario: Annotated[Path, typer.Option(help="park scenario file")] = DEFAULT_SCENARIO,
    workdir: Annotated[Path, typer.Option(help="logs, configs, spools")] = ROOT / "var" / "demo",
    database: Annotated[str, typer.Option(help="name of the demo database (recreated)")] = "parkpulse_demo",
    history_from: Annotated[int, typer.Option(help="first year of the filled history")] = date.today().year
    - 2,
    console_port: Annotated[int, typer.Option(help="port of the web console")] = 8080,
    outage_after: Annotated[
        float, typer.Option(help="seconds of live running before one gateway loses its uplink")
    ] = 20,
    outage_for: Annotated[float, typer.Option(help="seconds that uplink stays down")] = 30,
) -> None:
    """Start the virtual park and everything else; print the summary and the console URL."""
    if ctx.invoked_subcommand is not None:
        return
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    env = DemoEnv(database_url="", mqtt_url="")
    sup: Supervisor | None = None
    proxies: list[TcpProxy] = []
    stages: dict[str, Any] = {}
    stop = threading.Event()

    live = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if not live.is_set():  # still setting up: abort now, the finally block stops what started
            raise _Aborted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    def record(stage: str, **info: Any) -> None:
        stages[stage] = info
        (workdir / "summary.json").write_text(
            json.dumps(stages, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )

    try:
        # --- env ---------------------------------------------------------------------------
        settings = get_settings()
        dsn = find_postgres(settings.database_url, database, env, workdir)
        mqtt_url = find_broker(settings.mqtt_url, env, workdir)
        for n in env.notes:
            out.print(f"[green]✓[/green] {n}")
        record("env", database=redact_url(dsn), mqtt=parse_mqtt_url(mqtt_url).redacted())

        # --- database ----------------------------------------------------------------------
        with psycopg.connect(server_dsn(dsn, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        try:
            applied = migrate(dsn, timezone=settings.timezone)
        except TimescaleNotPreloaded:
            # a throwaway demo database may take the plain path; a real store is refused (docs/database.md)
            out.print(
                "[yellow]![/yellow] TimescaleDB is installed on this server but not preloaded "
                "(shared_preload_libraries): the demo database uses plain PostgreSQL"
            )
            applied = migrate(dsn, prefer="plain", timezone=settings.timezone)
        out.print(f"[green]✓[/green] database {database}: {len(applied)} migrations applied")
        record("database", migrations=len(applied))
        ingest_http = free_port()
        # the demo's meters arrive with years of history: widen ingest's window before registration
        # (the lines' history starts a year earlier: a year's energy per part is compared with the previous year's)
        history_days = (date.today() - date(history_from - 1, 1, 1)).days + 31
        child_env = {
            **os.environ,
            "PARKPULSE_DATABASE_URL": dsn,
            "PARKPULSE_MQTT_URL": mqtt_url,
            "PYTHONUNBUFFERED": "1",
            "PARKPULSE_INGEST_HTTP_PORT": str(ingest_http),
            "PARKPULSE_INGEST_HISTORY_BEFORE_REGISTRATION_DAYS": str(history_days),
        }
        sup = Supervisor(workdir / "logs", child_env)

        # --- simulators ----------------------------------------------------------------------
        manifest = workdir / "manifest.json"
        sup.start(
            "simulators",
            [_bin("parkpulse-sim"), "park", "--scenario", str(scenario), "--manifest", str(manifest)],
        )
        if not Supervisor.wait_for(manifest.exists, 60):
            raise EnvironmentError_("the simulators did not start:\n" + sup.children["simulators"].tail())
        devices = json.loads(manifest.read_text(encoding="utf-8"))["devices"]
        out.print(f"[green]✓[/green] virtual park: {len(devices)} simulated devices")
        record("simulators", devices=len(devices))

        # --- registry ------------------------------------------------------------------------
        gwdir = workdir / "gateways"
        subprocess.run(
            [
                _bin("parkpulse-gateway"),
                "generate",
                "--scenario",
                str(scenario),
                "--manifest",
                str(manifest),
                "--out",
                str(gwdir),
            ],
            check=True,
            env=child_env,
            capture_output=True,
        )
        pf = load_park_file(gwdir / "park.yaml")
        today = date.today()
        profiles = firm_profiles(pf, today)
        lines = line_profiles(pf)
        pf = add_history_gateways(pf, profiles, lines)
        with psycopg.connect(dsn) as conn:
            counts = import_registry(conn, pf)
        out.print(
            f"[green]✓[/green] registry: {counts['firms']} firms, {counts['gateways']} gateways, {counts['devices']} devices"
        )
        record("registry", **counts)

        # --- history -------------------------------------------------------------------------
        # Ingest first, alone: the history goes through it before the live park starts.
        sup.start("ingest", [_bin("parkpulse"), "ingest", "run"])
        # A broker drops what nobody has subscribed to: publish only once ingest holds its subscription.
        if not Supervisor.wait_for(
            lambda: _ingest_subscribed(ingest_http) or not sup.children["ingest"].alive(), 60
        ):
            raise EnvironmentError_("ingest did not subscribe in time:\n" + sup.children["ingest"].tail())
        if not sup.children["ingest"].alive():
            raise EnvironmentError_("ingest stopped:\n" + sup.children["ingest"].tail())
        start = datetime(history_from, 1, 1, tzinfo=UTC)
        end = datetime(today.year, today.month, today.day, tzinfo=UTC)
        line_start = datetime(history_from - 1, 1, 1, tzinfo=UTC)
        total = count_history(profiles, start, end, lines, line_start)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=out,
        ) as bar:
            task = bar.add_task(f"history {history_from}–{today.isoformat()} → MQTT → ingest", total=total)
            sent = publish_history(
                mqtt_url,
                pf.park.id,
                profiles,
                start,
                end,
                today.year - 1,
                progress=lambda n: bar.advance(task, n),
                lines=lines,
                line_start=line_start,
            )
            stored_task = bar.add_task("committed by ingest", total=sent)

            def stored() -> bool:
                if not sup.children["ingest"].alive():
                    raise EnvironmentError_("ingest stopped:\n" + sup.children["ingest"].tail())
                n, refused = _count_hist(dsn)
                if refused:
                    raise EnvironmentError_(f"ingest refused history batches: {refused}")
                bar.update(stored_task, completed=n)
                return n >= sent

            if not Supervisor.wait_for(stored, 600, 1.0):
                raise EnvironmentError_(
                    "ingest did not commit the history in time:\n" + sup.children["ingest"].tail()
                )
        years = list(range(history_from, today.year))
        for y in years:
            econ = workdir / f"firms-{y}.csv"
            write_economics_csv(econ, profiles, y, today.year - 1)
            subprocess.run(
                [_bin("parkpulse"), "firms", "import", str(econ), "--year", str(y)],
                check=True,
                env=child_env,
                capture_output=True,
            )
        subprocess.run([_bin("parkpulse"), "db", "refresh"], check=True, env=child_env, capture_output=True)
        # The import channels are closed: their meters are not polled, so no silence alerts for them.
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE devices SET enabled = false WHERE gateway_id LIKE %s", ("%-hist",))
        out.print(f"[green]✓[/green] history: {sent:,} readings stored; economic data for {years}")
        record("history", readings=sent, years=years)

        # --- services ------------------------------------------------------------------------
        sup.start("alerts", [_bin("parkpulse"), "alerts", "run"])
        configs = sorted(gwdir.glob("*.yaml"))
        configs = [c for c in configs if c.name != "park.yaml"]
        outage_gw = _outage_gateway(scenario)
        for cfg in configs:
            doc = yaml.safe_load(cfg.read_text(encoding="utf-8"))
            gw_id = doc["gateway"]["id"]
            doc.setdefault("spool", {})["path"] = str(workdir / "spool" / f"{gw_id}.db")
            if gw_id == outage_gw:
                target = parse_mqtt_url(mqtt_url)
                proxy = TcpProxy(target.host, target.port).start()
                proxies.append(proxy)
                doc["uplink"]["url"] = f"mqtt://127.0.0.1:{proxy.port}"
            if "http" in doc:
                doc["http"]["listen"] = f"127.0.0.1:{free_port()}"
            cfg.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
            sup.start(f"gateway-{gw_id}", [_bin("parkpulse-gateway"), "run", "-c", str(cfg)])
        password = secrets.token_urlsafe(9)
        subprocess.run(
            [_bin("parkpulse"), "users", "add", "admin", "--role", "admin", "--password-stdin"],
            input=(password + "\n").encode(),
            check=True,
            env=child_env,
            capture_output=True,
        )
        # plain http on the loopback: the Secure cookie flag would keep browsers from sending the session
        sup.start(
            "console",
            [
                _bin("parkpulse"),
                "console",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(console_port),
                "--insecure-cookies",
            ],
        )
        # the URL printed below must answer: wait until the console listens
        if not Supervisor.wait_for(
            lambda: port_open("127.0.0.1", console_port) or not sup.children["console"].alive(), 60
        ):
            raise EnvironmentError_("the console did not start listening:\n" + sup.children["console"].tail())
        if not sup.children["console"].alive():
            raise EnvironmentError_("the console stopped:\n" + sup.children["console"].tail())
        out.print(f"[green]✓[/green] services: ingest, alerts, {len(configs)} gateways, console")
        record("services", gateways=len(configs), outage_gateway=outage_gw)

        # --- rules ---------------------------------------------------------------------------
        for y in years:
            subprocess.run(
                [_bin("parkpulse"), "rules", "run", "--year", str(y)],
                check=True,
                env=child_env,
                capture_output=True,
            )
        sup.start("rules", [_bin("parkpulse"), "rules", "serve"])
        out.print(f"[green]✓[/green] rules evaluated for {years}")
        record("rules", years=years)

        # --- live ----------------------------------------------------------------------------
        live.set()
        url = f"http://127.0.0.1:{console_port}/"
        print_summary(out, dsn, today.year - 1, url, "admin", password)
        began = time.monotonic()
        outage_state = "pending"
        while not stop.is_set():
            elapsed = time.monotonic() - began
            if proxies and outage_state == "pending" and elapsed >= outage_after:
                for p in proxies:
                    p.cut()
                outage_state = "down"
                out.print(f"[yellow]![/yellow] gateway {outage_gw} lost its uplink (for {outage_for:.0f} s)")
            elif outage_state == "down" and elapsed >= outage_after + outage_for:
                for p in proxies:
                    p.restore()
                outage_state = "restored"
                out.print(f"[green]✓[/green] gateway {outage_gw} uplink restored; its spool replays")
            dead = sup.dead()
            if dead:
                for c in dead:
                    out.print(f"[red]✗ {c.name} exited[/red]\n{c.tail()}")
                raise EnvironmentError_("a service stopped: " + ", ".join(c.name for c in dead))
            if duration and elapsed >= duration:
                break
            stop.wait(1.0)
        record("live", seconds=round(time.monotonic() - began, 1), outage=outage_state, **stage_counts(dsn))
        out.print("[bold]stopping…[/bold]")
    except _Aborted as exc:
        out.print(f"[yellow]interrupted ({exc}) while setting up[/yellow]")
        record("error", message=f"interrupted by {exc}")
        raise typer.Exit(130) from None
    except (EnvironmentError_, subprocess.CalledProcessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace")[-2000:]
            if isinstance(exc, subprocess.CalledProcessError) and exc.stderr
            else ""
        )
        out.print(f"[red]demo failed:[/red] {exc}\n{detail}")
        record("error", message=str(exc), detail=detail)
        raise typer.Exit(1) from None
    finally:
        if sup is not None:
            gateways = [n for n in sup.children if n.startswith("gateway-")]
            # the alert engine goes before the gateways, so stopping the demo raises no offline alerts;
            # ingest goes last, so the gateways' final batches are stored
            sup.stop_all(order=["console", "rules", "alerts", *gateways, "simulators", "ingest"])
        for p in proxies:
            p.close()
        env.close()
    out.print("[green]demo stopped cleanly[/green]")


def _ingest_subscribed(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("subscribed"))
    except (OSError, ValueError):
        return False


class _Aborted(Exception):
    """Ctrl-C or SIGTERM before the park runs live."""


def _outage_gateway(scenario: Path) -> str | None:
    doc = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    for f in doc.get("firms", []):
        for g in f.get("gateways", []):
            if (g.get("sim") or {}).get("uplink_outage"):
                return str(g["id"])
    return None


def _count_hist(dsn: str) -> tuple[int, str | None]:
    """Readings of the history committed so far, and the first reason ingest refused any."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n_readings), 0) FROM ingest_batches WHERE gateway_id LIKE %s", ("%-hist",)
        ).fetchone()
        bad = conn.execute(
            "SELECT count(*), min(reason) FROM dead_letters WHERE gateway_id LIKE %s", ("%-hist",)
        ).fetchone()
        refused = f"{bad[0]} dead letters, e.g. {bad[1]}" if bad and bad[0] else None
        return (int(row[0]) if row else 0), refused
