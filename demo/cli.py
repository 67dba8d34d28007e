"""`parkpulse demo`: start a virtual park and every ParkPulse service, fill its history, run live.

Stages (each reported, and recorded in <workdir>/summary.json for the demo's test):
  env        PostgreSQL (configured → the machine's, started if stopped → embedded) and a broker
  database   a fresh demo database, migrated
  simulators the virtual park's meters, lines and CEMS (parkpulse-sim park)
  registry   gateway configs and the registry generated from the scenario, imported
  history    ingest starts; two years and more of hourly boundary-meter readings, and line
             history of three smart workshops (from a year earlier), go through MQTT → ingest;
             the firms' economic data imported; the import channels closed
  costs      the tariffs synced, the Henan time-of-use tariff assigned to every firm, each
             firm's cost of last month printed (v_firm_cost_monthly)
  notify     local WeCom, DingTalk and SMTP stand-ins, demo channels pointing at them subscribed
             to the park's emission alerts, `parkpulse notify serve`
  fleet      the fleet key pair, `parkpulse fleet serve`; the gateway with the scenario's spare
             (installed, unconfigured) meter made managed, its devices stored as version 1; an
             operator of its firm
  services   gateways (one behind a proxy that loses its uplink; the HJ 212 stack's logger
             sends its backfilled minutes first), alert engine, console
  rules      yearly KPIs, classes, compliance and the scorecard evaluated and stored
  fleet-add  how the operator adds the spare meter from the console is printed; unless
             --no-fleet-step, the demo does it through the console's HTTP form as that operator
             and waits until the gateway applied it and the meter's readings are in v_readings
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from demo._costs import assign_commands, last_month, monthly_costs, print_costs
from demo._env import DemoEnv, EnvironmentError_, find_broker, find_postgres
from demo._fleet import (
    ConsoleStepFailed,
    FleetPlan,
    add_meter_through_console,
    bus_of,
    find_spare,
    managed_part,
    wait_applied,
    wait_readings,
)
from demo._history import (
    FirmProfile,
    LineProfile,
    add_history_gateways,
    count_history,
    firm_profiles,
    line_profiles,
    publish_history,
    write_economics_csv,
)
from demo._notify import DemoChannels, start_channels
from demo._procs import Supervisor
from demo._summary import print_summary, stage_counts
from parkpulse.db import TimescaleNotPreloaded, migrate, server_dsn
from parkpulse.redact import redact_url
from parkpulse.registry import ParkFile, import_registry, load_park_file
from parkpulse.services import free_port, port_open
from parkpulse.settings import Settings, get_settings, parse_mqtt_url
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
    no_fleet_step: Annotated[
        bool,
        typer.Option(
            "--no-fleet-step", help="only print how to add the spare meter from the console; do not add it"
        ),
    ] = False,
) -> None:
    """Start the virtual park and everything else; print the summary and the console URL."""
    if ctx.invoked_subcommand is not None:
        return
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    opts = _Options(
        duration,
        scenario,
        workdir,
        database,
        history_from,
        console_port,
        outage_after,
        outage_for,
        no_fleet_step,
    )
    run = _Run(opts)
    _install_signal_handlers(run)
    try:
        for stage in _STAGES:
            stage(run)
    except _Aborted as exc:
        out.print(f"[yellow]interrupted ({exc}) while setting up[/yellow]")
        run.record("error", message=f"interrupted by {exc}")
        raise typer.Exit(130) from None
    except (EnvironmentError_, subprocess.CalledProcessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace")[-2000:]
            if isinstance(exc, subprocess.CalledProcessError) and exc.stderr
            else ""
        )
        out.print(f"[red]demo failed:[/red] {exc}\n{detail}")
        run.record("error", message=str(exc), detail=detail)
        raise typer.Exit(1) from None
    finally:
        _shutdown(run)
    out.print("[green]demo stopped cleanly[/green]")


# --- the state of one run -------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """The command line of `parkpulse demo`."""

    duration: float
    scenario: Path
    workdir: Path
    database: str
    history_from: int
    console_port: int
    outage_after: float
    outage_for: float
    no_fleet_step: bool = False


@dataclass
class _Run:
    """What a demo run has started and learnt so far; each stage reads it and adds to it."""

    opts: _Options
    env: DemoEnv = field(default_factory=lambda: DemoEnv(database_url="", mqtt_url=""))
    stages: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    live: threading.Event = field(default_factory=threading.Event)
    proxies: list[TcpProxy] = field(default_factory=list)
    sup: Supervisor | None = None
    settings: Settings | None = None
    dsn: str = ""
    mqtt_url: str = ""
    child_env: dict[str, str] = field(default_factory=dict)
    ingest_http: int = 0
    today: date = field(default_factory=date.today)
    park: ParkFile | None = None
    profiles: list[FirmProfile] = field(default_factory=list)
    lines: list[LineProfile] = field(default_factory=list)
    years: list[int] = field(default_factory=list)
    password: str = ""
    gateway_configs: list[Path] = field(default_factory=list)
    outage_gateway: str | None = None
    channels: DemoChannels | None = None
    fleet: FleetPlan | None = None
    operator_password: str = ""

    @property
    def manifest(self) -> Path:
        return self.opts.workdir / "manifest.json"

    @property
    def gwdir(self) -> Path:
        return self.opts.workdir / "gateways"

    @property
    def supervisor(self) -> Supervisor:
        assert self.sup is not None, "the supervisor starts with the database stage"
        return self.sup

    @property
    def park_file(self) -> ParkFile:
        assert self.park is not None, "the park file is loaded by the registry stage"
        return self.park

    def record(self, stage: str, **info: Any) -> None:
        """Keep a stage's figures in <workdir>/summary.json (the demo's test reads it)."""
        self.stages[stage] = info
        (self.opts.workdir / "summary.json").write_text(
            json.dumps(self.stages, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )

    def cli(self, *argv: str, stdin: bytes | None = None) -> None:
        """Run one `parkpulse …` command against the demo's store and broker; fail on error."""
        subprocess.run(
            [_bin("parkpulse"), *argv], input=stdin, check=True, env=self.child_env, capture_output=True
        )

    def cli_all(self, commands: Sequence[Sequence[str]]) -> list[str]:
        """Run `parkpulse …` commands side by side; their outputs, in order; fail if any failed."""
        procs = [
            subprocess.Popen(
                [_bin("parkpulse"), *argv],
                env=self.child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            for argv in commands
        ]
        outputs = []
        for argv, proc in zip(commands, procs, strict=True):
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                raise subprocess.CalledProcessError(proc.returncode, ["parkpulse", *argv[:3]], stdout, stderr)
            outputs.append(stdout.decode(errors="replace"))
        return outputs

    def failure(self, child: str, what: str) -> EnvironmentError_:
        """The error for a service that did not come up, with the tail of its log."""
        return EnvironmentError_(f"{what}:\n" + self.supervisor.children[child].tail())


def _install_signal_handlers(run: _Run) -> None:
    def _on_signal(signum: int, _frame: object) -> None:
        run.stop.set()
        if not run.live.is_set():  # still setting up: abort now, the finally block stops what started
            raise _Aborted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def _shutdown(run: _Run) -> None:
    """Stop every service that started, close the uplink proxies and the environment."""
    if run.sup is not None:
        gateways = [n for n in run.sup.children if n.startswith("gateway-")]
        # the alert engine goes before the gateways, so stopping the demo raises no offline alerts;
        # ingest goes last, so the gateways' final batches are stored
        run.sup.stop_all(
            order=["console", "rules", "alerts", "notify", "fleet", *gateways, "simulators", "ingest"]
        )
    if run.channels is not None:
        run.channels.close()
    for p in run.proxies:
        p.close()
    run.env.close()


def _wait_ready(run: _Run, child: str, ready: Callable[[], bool], *, late: str, stopped: str) -> None:
    """Wait until `ready()` or the child stops; fail with its log if it was `late` or `stopped`."""
    proc = run.supervisor.children[child]
    if not Supervisor.wait_for(lambda: ready() or not proc.alive(), 60):
        raise run.failure(child, late)
    if not proc.alive():
        raise run.failure(child, stopped)


# --- the stages, in order -------------------------------------------------------------------


def _start_env(run: _Run) -> None:
    """env: PostgreSQL and a broker, found or started."""
    run.settings = get_settings()
    run.dsn = find_postgres(run.settings.database_url, run.opts.database, run.env, run.opts.workdir)
    run.mqtt_url = find_broker(run.settings.mqtt_url, run.env, run.opts.workdir)
    for n in run.env.notes:
        out.print(f"[green]✓[/green] {n}")
    run.record("env", database=redact_url(run.dsn), mqtt=parse_mqtt_url(run.mqtt_url).redacted())


def _fresh_database(run: _Run) -> None:
    """database: the demo database dropped, created and migrated; the supervisor set up to use it."""
    database, dsn = run.opts.database, run.dsn
    assert run.settings is not None
    timezone = run.settings.timezone
    with psycopg.connect(server_dsn(dsn, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    try:
        applied = migrate(dsn, timezone=timezone)
    except TimescaleNotPreloaded:
        # a throwaway demo database may take the plain path; a real store is refused (docs/database.md)
        out.print(
            "[yellow]![/yellow] TimescaleDB is installed on this server but not preloaded "
            "(shared_preload_libraries): the demo database uses plain PostgreSQL"
        )
        applied = migrate(dsn, prefer="plain", timezone=timezone)
    out.print(f"[green]✓[/green] database {database}: {len(applied)} migrations applied")
    run.record("database", migrations=len(applied))
    _start_supervisor(run)


def _start_supervisor(run: _Run) -> None:
    """The environment of every child process, and the supervisor that starts them."""
    run.ingest_http = free_port()
    # the demo's meters arrive with years of history: widen ingest's window before registration
    # (the lines' history starts a year earlier: a year's energy per part is compared with the previous year's)
    history_days = (date.today() - date(run.opts.history_from - 1, 1, 1)).days + 31
    run.child_env = {
        **os.environ,
        "PARKPULSE_DATABASE_URL": run.dsn,
        "PARKPULSE_MQTT_URL": run.mqtt_url,
        "PYTHONUNBUFFERED": "1",
        "PARKPULSE_INGEST_HTTP_PORT": str(run.ingest_http),
        "PARKPULSE_INGEST_HISTORY_BEFORE_REGISTRATION_DAYS": str(history_days),
    }
    run.sup = Supervisor(run.opts.workdir / "logs", run.child_env)


def _start_simulators(run: _Run) -> None:
    """simulators: the virtual park (parkpulse-sim park), up once it has written its manifest."""
    manifest = run.manifest
    run.supervisor.start(
        "simulators",
        [_bin("parkpulse-sim"), "park", "--scenario", str(run.opts.scenario), "--manifest", str(manifest)],
    )
    if not Supervisor.wait_for(manifest.exists, 60):
        raise run.failure("simulators", "the simulators did not start")
    devices = json.loads(manifest.read_text(encoding="utf-8"))["devices"]
    out.print(f"[green]✓[/green] virtual park: {len(devices)} simulated devices")
    run.record("simulators", devices=len(devices))


def _import_registry(run: _Run) -> None:
    """registry: gateway configs and the park file generated from the scenario, plus history channels."""
    subprocess.run(
        [
            _bin("parkpulse-gateway"),
            "generate",
            "--scenario",
            str(run.opts.scenario),
            "--manifest",
            str(run.manifest),
            "--out",
            str(run.gwdir),
        ],
        check=True,
        env=run.child_env,
        capture_output=True,
    )
    pf = load_park_file(run.gwdir / "park.yaml")
    run.today = date.today()
    run.profiles = firm_profiles(pf, run.today)
    run.lines = line_profiles(pf)
    run.park = add_history_gateways(pf, run.profiles, run.lines)
    with psycopg.connect(run.dsn) as conn:
        counts = import_registry(conn, run.park)
    out.print(
        f"[green]✓[/green] registry: {counts['firms']} firms, {counts['gateways']} gateways, {counts['devices']} devices"
    )
    run.record("registry", **counts)


def _fill_history(run: _Run) -> None:
    """history: ingest started alone; the past through MQTT → ingest; economic data imported."""
    _start_ingest(run)
    sent = _send_history(run)
    run.years = list(range(run.opts.history_from, run.today.year))
    _import_economics(run)
    run.cli("db", "refresh")
    # The import channels are closed: their meters are not polled, so no silence alerts for them.
    with psycopg.connect(run.dsn) as conn:
        conn.execute("UPDATE devices SET enabled = false WHERE gateway_id LIKE %s", ("%-hist",))
    out.print(f"[green]✓[/green] history: {sent:,} readings stored; economic data for {run.years}")
    run.record("history", readings=sent, years=run.years)


def _start_ingest(run: _Run) -> None:
    # Ingest first, alone: the history goes through it before the live park starts.
    run.supervisor.start("ingest", [_bin("parkpulse"), "ingest", "run"])
    # A broker drops what nobody has subscribed to: publish only once ingest holds its subscription.
    _wait_ready(
        run,
        "ingest",
        lambda: _ingest_subscribed(run.ingest_http),
        late="ingest did not subscribe in time",
        stopped="ingest stopped",
    )


def _send_history(run: _Run) -> int:
    """Publish the history and wait until ingest has committed all of it; the number of readings."""
    history_from, today = run.opts.history_from, run.today
    start = datetime(history_from, 1, 1, tzinfo=UTC)
    end = datetime(today.year, today.month, today.day, tzinfo=UTC)
    line_start = datetime(history_from - 1, 1, 1, tzinfo=UTC)
    total = count_history(run.profiles, start, end, run.lines, line_start)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=out,
    ) as bar:
        task = bar.add_task(f"history {history_from}–{today.isoformat()} → MQTT → ingest", total=total)
        sent = publish_history(
            run.mqtt_url,
            run.park_file.park.id,
            run.profiles,
            start,
            end,
            today.year - 1,
            progress=lambda n: bar.advance(task, n),
            lines=run.lines,
            line_start=line_start,
        )
        stored_task = bar.add_task("committed by ingest", total=sent)
        ingest = run.supervisor.children["ingest"]

        def stored() -> bool:
            if not ingest.alive():
                raise run.failure("ingest", "ingest stopped")
            n, refused = _count_hist(run.dsn)
            if refused:
                raise EnvironmentError_(f"ingest refused history batches: {refused}")
            bar.update(stored_task, completed=n)
            return n >= sent

        if not Supervisor.wait_for(stored, 600, 1.0):
            raise run.failure("ingest", "ingest did not commit the history in time")
    return sent


def _import_economics(run: _Run) -> None:
    """The firms' economic data of each past year, written as CSV and imported."""
    for y in run.years:
        econ = run.opts.workdir / f"firms-{y}.csv"
        write_economics_csv(econ, run.profiles, y, run.today.year - 1)
        run.cli("firms", "import", str(econ), "--year", str(y))


def _start_services(run: _Run) -> None:
    """services: every gateway (one behind a proxy), the alert engine, an admin user and the console."""
    _start_gateways(run)
    # the HJ 212 stack's logger sends its backfilled minutes first: the alert engine's first
    # hourly evaluation then sees them (the next one would come a minute later)
    _wait_hj212_backfill(run)
    run.supervisor.start("alerts", [_bin("parkpulse"), "alerts", "run"])
    run.password = secrets.token_urlsafe(9)
    run.cli(
        "users", "add", "admin", "--role", "admin", "--password-stdin", stdin=(run.password + "\n").encode()
    )
    _start_console(run)
    out.print(f"[green]✓[/green] services: ingest, alerts, {len(run.gateway_configs)} gateways, console")
    run.record("services", gateways=len(run.gateway_configs), outage_gateway=run.outage_gateway)


def _start_gateways(run: _Run) -> None:
    configs = sorted(run.gwdir.glob("*.yaml"))
    run.gateway_configs = [c for c in configs if c.name != "park.yaml"]
    run.outage_gateway = _outage_gateway(run.opts.scenario)
    for cfg in run.gateway_configs:
        gw_id = _localise_gateway_config(run, cfg)
        run.supervisor.start(f"gateway-{gw_id}", [_bin("parkpulse-gateway"), "run", "-c", str(cfg)])


def _localise_gateway_config(run: _Run, cfg: Path) -> str:
    """Point a generated gateway config at the demo's spool, proxy and a free port; its gateway id."""
    doc = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    gw_id: str = doc["gateway"]["id"]
    doc.setdefault("spool", {})["path"] = str(run.opts.workdir / "spool" / f"{gw_id}.db")
    if gw_id == run.outage_gateway:
        target = parse_mqtt_url(run.mqtt_url)
        proxy = TcpProxy(target.host, target.port).start()
        run.proxies.append(proxy)
        doc["uplink"]["url"] = f"mqtt://127.0.0.1:{proxy.port}"
    if "http" in doc:
        doc["http"]["listen"] = f"127.0.0.1:{free_port()}"
    if run.fleet is not None and gw_id == run.fleet.spare.gateway:
        doc["managed"] = run.fleet.managed_section()
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return gw_id


def _wait_hj212_backfill(run: _Run, timeout: float = 90.0) -> None:
    """Until the HJ 212 stacks' newest stored minute is at most 3 minutes old (or `timeout`)."""

    def caught_up() -> bool:
        with psycopg.connect(run.dsn) as conn:
            row = conn.execute(
                "SELECT count(DISTINCT d.device_pk), bool_and(r.last_ts > now() - interval '3 minutes') "
                "FROM v_devices d LEFT JOIN LATERAL (SELECT max(ts) AS last_ts FROM v_readings v "
                "WHERE v.device_pk = d.device_pk AND v.metric = 'nox_mg_m3') r ON true "
                "WHERE d.profile LIKE %s AND d.enabled",
                ("hj212-%",),
            ).fetchone()
        return row is None or row[0] == 0 or bool(row[1])

    if not Supervisor.wait_for(caught_up, timeout, 1.0):
        out.print("[yellow]![/yellow] the HJ 212 stacks' backfilled minutes are not all stored yet")


def _costs(run: _Run) -> None:
    """costs: tariffs synced and assigned (Henan TOU, from the last full year), last month's cost."""
    run.cli("tariffs", "sync")
    firms = [p.firm_id for p in run.profiles]
    run.cli_all(assign_commands(firms, date(run.today.year - 1, 1, 1)))
    month = last_month(run.today)
    costs = monthly_costs(run.dsn, month)
    print_costs(out, month, costs)
    priced = sum(1 for c in costs if c["total_yuan"])
    out.print(f"[green]✓[/green] costs: {priced} of {len(costs)} firms priced for {month:%Y-%m}")
    run.record("costs", month=month, yuan={c["firm_id"]: c["total_yuan"] for c in costs})


def _start_notify(run: _Run) -> None:
    """notify: stand-ins for WeCom, DingTalk and SMTP, channels to them, `parkpulse notify serve`."""
    run.channels = start_channels(run.opts.workdir / "notify", run.park_file.park.id, run.cli_all)
    console_url = f"http://127.0.0.1:{run.opts.console_port}"
    run.supervisor.start(
        "notify",
        [_bin("parkpulse"), "notify", "serve", "--start", "beginning"],
        extra_env={"PARKPULSE_NOTIFY_CONSOLE_URL": console_url},
    )
    out.print("[green]✓[/green] notify: WeCom, DingTalk and SMTP stand-ins subscribed to emission alerts")
    run.record("notify", channels=["wecom", "dingtalk", "email"])


def _report_notifications(run: _Run) -> dict[str, list[str]]:
    """Print what each stand-in received; the texts by channel (for the summary)."""
    if run.channels is None:
        return {}
    got = {ch: [r.text for r in msgs] for ch, msgs in run.channels.received().items()}
    for ch, texts in got.items():
        out.print(f"[bold]{ch} stand-in[/bold] received {len(texts)} message(s)")
        for t in texts:
            out.print("  " + t.replace("\n", " ")[:160])
    return got


def _start_console(run: _Run) -> None:
    port = run.opts.console_port
    # plain http on the loopback: the Secure cookie flag would keep browsers from sending the session
    run.supervisor.start(
        "console",
        [
            _bin("parkpulse"),
            "console",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--insecure-cookies",
        ],
    )
    # the URL printed below must answer: wait until the console listens
    _wait_ready(
        run,
        "console",
        lambda: port_open("127.0.0.1", port),
        late="the console did not start listening",
        stopped="the console stopped",
    )


def _setup_fleet(run: _Run) -> None:
    """fleet: keys, publisher, the spare meter's gateway managed (version 1 = its file), an operator."""
    spare = find_spare(run.opts.scenario, run.manifest)
    if spare is None:
        out.print(
            "[yellow]![/yellow] the scenario has no spare (disabled Modbus TCP) meter: no managed gateway"
        )
        run.record("fleet", managed_gateway=None)
        return
    folder = run.opts.workdir / "fleet"
    folder.mkdir(mode=0o700)
    private, public = folder / "fleet.key", folder / "fleet.pub"
    run.cli("fleet", "keygen", str(private), str(public))
    gw_file = run.gwdir / f"{spare.gateway}.yaml"
    plan = FleetPlan(
        spare=spare,
        bus=bus_of(gw_file, spare.host, spare.port),
        operator=f"op-{spare.firm}"[:64],
        verify_key=public,
        state_dir=run.opts.workdir / "spool" / f"{spare.gateway}.managed",
    )
    v1 = folder / f"{spare.gateway}-v1.yaml"
    v1.write_text(managed_part(gw_file), encoding="utf-8")
    run.cli(
        "gateways",
        "config",
        "set",
        spare.gateway,
        str(v1),
        "-m",
        "demo: the gateway's file as installed",
        "--by",
        "demo",
    )
    run.supervisor.start(
        "fleet",
        [_bin("parkpulse"), "fleet", "serve", "--sweep-s", "5"],
        extra_env={"PARKPULSE_FLEET_SIGNING_KEY": str(private)},
    )
    run.operator_password = secrets.token_urlsafe(12)
    run.cli(
        "users",
        "add",
        plan.operator,
        "--role",
        "operator",
        "--firm",
        spare.firm,
        "--password-stdin",
        stdin=(run.operator_password + "\n").encode(),
    )
    run.fleet = plan
    out.print(
        f"[green]✓[/green] fleet: {spare.gateway} managed from the platform (version 1), "
        f"`parkpulse fleet serve` signing its pushes; operator {plan.operator} of {spare.firm}"
    )
    run.record("fleet", managed_gateway=spare.gateway, spare_meter=spare.device, operator=plan.operator)


def _fleet_add_meter(run: _Run) -> None:
    """fleet-add: how to add the spare meter from the console; unless --no-fleet-step, done here."""
    plan = run.fleet
    if plan is None:
        return
    spare = plan.spare
    base = f"http://127.0.0.1:{run.opts.console_port}"
    out.print(
        f"[bold]fleet:[/bold] meter {spare.device} (unit {spare.unit} on bus {plan.bus}, profile "
        f"{spare.profile}) is installed on {spare.gateway} but not configured. Add it from the console: "
        f"{base}/fleet/{spare.gateway}/edit as operator [bold]{plan.operator}[/bold] "
        f'password [bold]{run.operator_password}[/bold] (form "add a meter", with a reason)'
    )
    info: dict[str, Any] = {
        "managed_gateway": spare.gateway,
        "spare_meter": spare.device,
        "operator": plan.operator,
    }
    if run.opts.no_fleet_step:
        run.record("fleet-add", step="printed only (--no-fleet-step)", **info)
        return
    if wait_applied(run.dsn, spare.gateway, 1, 60) is None:
        raise run.failure(f"gateway-{spare.gateway}", f"{spare.gateway} did not apply config version 1")
    t0 = time.monotonic()
    try:
        add_meter_through_console(
            base, plan.operator, run.operator_password, plan, reason=f"demo: commission {spare.device}"
        )
    except (ConsoleStepFailed, OSError) as exc:
        raise run.failure("console", f"adding {spare.device} through the console failed: {exc}") from None
    applied = wait_applied(run.dsn, spare.gateway, 2, 60)
    if applied is None:
        raise run.failure(f"gateway-{spare.gateway}", f"{spare.gateway} did not apply config version 2")
    applied_s = time.monotonic() - t0
    n = wait_readings(run.dsn, spare.gateway, spare.device, 60)
    if not n:
        raise run.failure(f"gateway-{spare.gateway}", f"no readings of {spare.device} reached v_readings")
    read_s = time.monotonic() - t0
    out.print(
        f"[green]✓[/green] fleet: {plan.operator} added {spare.device} through the console; {spare.gateway} "
        f"applied version {applied['applied_version']} after {applied_s:.1f} s (no drift); its readings are in "
        f"v_readings after {read_s:.1f} s"
    )
    run.record(
        "fleet-add",
        step="done through the console",
        applied=applied,
        applied_after_s=round(applied_s, 1),
        readings_after_s=round(read_s, 1),
        **info,
    )


def _run_rules(run: _Run) -> None:
    """rules: each past year evaluated, then the rules service started."""
    for y in run.years:
        run.cli("rules", "run", "--year", str(y))
    run.supervisor.start("rules", [_bin("parkpulse"), "rules", "serve"])
    out.print(f"[green]✓[/green] rules evaluated for {run.years}")
    run.record("rules", years=run.years)


def _run_live(run: _Run) -> None:
    """live: the summary printed; the park runs until Ctrl-C or --duration, the outage played out."""
    run.live.set()
    url = f"http://127.0.0.1:{run.opts.console_port}/"
    print_summary(out, run.dsn, run.today.year - 1, url, "admin", run.password)
    began = time.monotonic()
    outage = _Outage(run.proxies, run.outage_gateway, run.opts.outage_after, run.opts.outage_for)
    while not run.stop.is_set():
        elapsed = time.monotonic() - began
        outage.play(elapsed)
        _fail_if_any_died(run.supervisor)
        if run.opts.duration and elapsed >= run.opts.duration:
            break
        run.stop.wait(1.0)
    run.record(
        "live",
        seconds=round(time.monotonic() - began, 1),
        outage=outage.state,
        notifications=_report_notifications(run),
        **stage_counts(run.dsn),
    )
    out.print("[bold]stopping…[/bold]")


_STAGES: tuple[Callable[[_Run], None], ...] = (
    _start_env,
    _fresh_database,
    _start_simulators,
    _import_registry,
    _fill_history,
    _costs,
    _start_notify,
    _setup_fleet,
    _start_services,
    _run_rules,
    _fleet_add_meter,
    _run_live,
)
"""The demo's stages in order; each prints its line and records its figures."""


@dataclass
class _Outage:
    """The uplink outage of one gateway while the park runs live: pending → down → restored."""

    proxies: list[TcpProxy]
    gateway: str | None
    after: float
    length: float
    state: str = "pending"

    def play(self, elapsed: float) -> None:
        if self.proxies and self.state == "pending" and elapsed >= self.after:
            for p in self.proxies:
                p.cut()
            self.state = "down"
            out.print(f"[yellow]![/yellow] gateway {self.gateway} lost its uplink (for {self.length:.0f} s)")
        elif self.state == "down" and elapsed >= self.after + self.length:
            for p in self.proxies:
                p.restore()
            self.state = "restored"
            out.print(f"[green]✓[/green] gateway {self.gateway} uplink restored; its spool replays")


def _fail_if_any_died(sup: Supervisor) -> None:
    dead = sup.dead()
    if dead:
        for c in dead:
            out.print(f"[red]✗ {c.name} exited[/red]\n{c.tail()}")
        raise EnvironmentError_("a service stopped: " + ", ".join(c.name for c in dead))


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
