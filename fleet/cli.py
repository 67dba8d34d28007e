"""`parkpulse fleet serve` (the publisher) and `parkpulse gateways config …` / `gateways profiles …`
(registered through the parkpulse.commands entry points as `fleet` and `gateways`)."""

from __future__ import annotations

import getpass
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from fleet import _store as store
from fleet import profiles as library
from fleet._errors import ConfigRejected, FleetError
from fleet._publisher import Publisher
from fleet._yaml import from_yaml, to_yaml
from parkpulse.errors import FieldError, ParkPulseError
from parkpulse.redact import redact_text, redact_url
from parkpulse.settings import get_settings
from parkpulse.wire import generate_key_pair, load_signing_key

__all__ = ["app", "gateways_app"]

app = typer.Typer(
    help="Managed gateways: the publisher of their desired configurations.", no_args_is_help=True
)
gateways_app = typer.Typer(
    help="Managed gateways: desired configurations and the profile library.", no_args_is_help=True
)
config_app = typer.Typer(help="A gateway's desired configuration, versioned.", no_args_is_help=True)
profiles_app = typer.Typer(
    help="The library of meter profiles (modbus, dlt645), versioned.", no_args_is_help=True
)
gateways_app.add_typer(config_app, name="config")
gateways_app.add_typer(profiles_app, name="profiles")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DsnOpt = Annotated[
    str | None, typer.Option("--database-url", envvar="PARKPULSE_DATABASE_URL", help="PostgreSQL URL")
]
ByOpt = Annotated[str | None, typer.Option("--by", help="who makes the change (default: the login name)")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-m", help="why (kept in the history)")]
GatewayArg = Annotated[str, typer.Argument(help="gateway id")]


def _connect(dsn: str | None) -> psycopg.Connection[Any]:
    url = dsn or get_settings().database_url
    try:
        return psycopg.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        err.print(f"cannot connect to {redact_url(url)}: {redact_text(str(exc).strip())}", markup=False)
        raise typer.Exit(2) from None


def _fail(exc: ParkPulseError) -> typer.Exit:
    err.print(str(exc), markup=False)
    return typer.Exit(1 if isinstance(exc, (ConfigRejected, FieldError)) else 2)


def _by(value: str | None) -> str:
    return value or f"{getpass.getuser()}@cli"


def _read(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FieldError("FILE", str(path), f"cannot read: {exc.strerror}") from None
    return from_yaml(text, str(path))


# -- parkpulse gateways config ------------------------------------------------------------------------
@config_app.command("get")
def config_get(
    gateway: GatewayArg,
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="this version (default: the newest)")
    ] = None,
    database_url: DsnOpt = None,
) -> None:
    """Print a gateway's desired configuration as YAML (secrets masked; `set` keeps a masked value)."""
    try:
        with _connect(database_url) as conn:
            store.gateway_identity(conn, gateway)
            v = store.version(conn, gateway, version) if version is not None else store.desired(conn, gateway)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    if v is None:
        err.print(f"gateway {gateway!r} has no desired configuration (it runs its local file)", markup=False)
        raise typer.Exit(3)
    out.print(
        f"# {gateway} version {v.version} by {v.created_by} at {v.created_at:%Y-%m-%d %H:%M:%S%z}: {v.reason}",
        markup=False,
    )
    out.print(to_yaml(v.redacted()), markup=False, end="")


@config_app.command("set")
def config_set(
    gateway: GatewayArg,
    file: Annotated[Path, typer.Argument(help="YAML of the managed keys ('-': standard input)")],
    reason: ReasonOpt,
    by: ByOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check only, store nothing")] = False,
    database_url: DsnOpt = None,
) -> None:
    """Store a new desired version after the gateway's own validator accepted it; every problem is listed."""
    try:
        config = _read(file)
        with _connect(database_url) as conn:
            if dry_run:
                _config, _profiles, problems = store.validate(conn, gateway, config)
                if problems:
                    raise ConfigRejected(f"config of gateway {gateway!r}", problems)
                out.print(f"{gateway}: valid (nothing stored)", markup=False)
                return
            v = store.set_desired(conn, gateway, config, by=_by(by), reason=reason)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(f"{gateway}: version {v.version} stored (sha256 {v.sha256[:12]}…)", markup=False)


@config_app.command("diff")
def config_diff(
    gateway: GatewayArg,
    a: Annotated[int | None, typer.Argument(help="older version (default: the one before B)")] = None,
    b: Annotated[int | None, typer.Argument(help="newer version (default: the newest)")] = None,
    database_url: DsnOpt = None,
) -> None:
    """Unified diff of two versions' YAML (secrets masked)."""
    try:
        with _connect(database_url) as conn:
            store.gateway_identity(conn, gateway)
            new = store.version(conn, gateway, b) if b is not None else store.desired(conn, gateway)
            if new is None:
                err.print(f"gateway {gateway!r} has no desired configuration", markup=False)
                raise typer.Exit(3)
            older = a if a is not None else new.version - 1
            old = store.version(conn, gateway, older) if older >= 1 else None
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(store.diff(old, new) or "(no difference)", markup=False, end="")


@config_app.command("history")
def config_history(gateway: GatewayArg, database_url: DsnOpt = None) -> None:
    """Every version of a gateway's configuration, newest first: who, when, why."""
    try:
        with _connect(database_url) as conn:
            store.gateway_identity(conn, gateway)
            versions = store.history(conn, gateway)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    table = Table("version", "at", "by", "reason", "sha256", "rollback of", title=gateway)
    for v in versions:
        table.add_row(
            str(v.version),
            f"{v.created_at:%Y-%m-%d %H:%M:%S}",
            v.created_by,
            v.reason,
            v.sha256[:12],
            str(v.rollback_of or ""),
        )
    out.print(table)


@config_app.command("rollback")
def config_rollback(
    gateway: GatewayArg,
    version: Annotated[int, typer.Argument(help="the version whose content becomes desired again")],
    reason: ReasonOpt,
    by: ByOpt = None,
    database_url: DsnOpt = None,
) -> None:
    """A new version equal to an earlier one (checked again by the gateway's validator)."""
    try:
        with _connect(database_url) as conn:
            v = store.rollback(conn, gateway, version, by=_by(by), reason=reason)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(f"{gateway}: version {v.version} stored, equal to version {version}", markup=False)


# -- parkpulse gateways profiles ------------------------------------------------------------------------
@profiles_app.command("list")
def profiles_list(
    source: Annotated[str | None, typer.Option("--source", "-s", help="modbus or dlt645")] = None,
    database_url: DsnOpt = None,
) -> None:
    """The newest version of every profile (version 0: built into the gateway)."""
    try:
        with _connect(database_url) as conn:
            rows = library.list(conn, source)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    table = Table("source", "name", "version", "by", "reason")
    for p in rows:
        table.add_row(p.source, p.name, str(p.version), p.created_by, p.reason)
    out.print(table)


@profiles_app.command("put")
def profiles_put(
    source: Annotated[str, typer.Argument(help="modbus or dlt645")],
    file: Annotated[Path, typer.Argument(help="the profile's YAML; its `name` names it")],
    reason: ReasonOpt,
    by: ByOpt = None,
    database_url: DsnOpt = None,
) -> None:
    """Store a new version of a profile after the source's own parser accepted it."""
    try:
        doc = _read(file)
        name = doc.get("name")
        with _connect(database_url) as conn:
            p = library.put(
                conn, source, name if isinstance(name, str) else "", doc, by=_by(by), reason=reason
            )
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(f"{source} profile {p.name}: version {p.version} stored", markup=False)


@profiles_app.command("show")
def profiles_show(
    source: Annotated[str, typer.Argument(help="modbus or dlt645")],
    name: Annotated[str, typer.Argument(help="profile name")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="this version (0: the built-in one)")
    ] = None,
    database_url: DsnOpt = None,
) -> None:
    """Print a profile as YAML."""
    try:
        with _connect(database_url) as conn:
            p = library.show(conn, source, name, version)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(f"# {source} profile {name} version {p.version} by {p.created_by}: {p.reason}", markup=False)
    out.print(to_yaml(p.doc), markup=False, end="")


# -- parkpulse fleet serve --------------------------------------------------------------------------------
@app.callback()
def fleet_main() -> None:
    """Managed gateways: the publisher of their desired configurations."""


@app.command("serve")
def serve(
    mqtt_url: Annotated[
        str | None,
        typer.Option(
            "--mqtt-url",
            envvar="PARKPULSE_FLEET_MQTT_URL",
            help="broker URL with the fleet account (default: PARKPULSE_MQTT_URL)",
        ),
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            envvar="PARKPULSE_FLEET_SIGNING_KEY",
            help="the platform's Ed25519 private key (PEM; `parkpulse fleet keygen`)",
        ),
    ] = None,
    sweep_s: Annotated[
        float, typer.Option("--sweep-s", min=1.0, help="full comparison store ↔ broker every N s")
    ] = 30.0,
    resign_s: Annotated[
        float, typer.Option("--resign-s", min=60.0, help="re-sign and republish a retained message this old")
    ] = 86_400.0,
    once: Annotated[
        bool, typer.Option("--once", help="publish every gateway's newest version, then exit")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    database_url: DsnOpt = None,
) -> None:
    """Keep every managed gateway's retained config message equal to its newest desired version, signed."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    if signing_key is None:
        err.print(
            "PARKPULSE_FLEET_SIGNING_KEY: required (gateways refuse unsigned pushes; `parkpulse fleet keygen` makes one)",
            markup=False,
        )
        raise typer.Exit(2)
    try:
        key = load_signing_key(signing_key)
    except ValueError as exc:
        err.print(f"PARKPULSE_FLEET_SIGNING_KEY: {exc}", markup=False)
        raise typer.Exit(2) from None
    try:
        pub = Publisher(
            database_url or settings.database_url,
            mqtt_url or settings.mqtt_url,
            signing_key=key,
            sweep_s=sweep_s,
            resign_s=resign_s,
        )
    except ValueError as exc:
        err.print(f"PARKPULSE_FLEET_MQTT_URL: {exc}", markup=False)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        pub.run(stop, once=once)
    except FleetError as exc:
        raise _fail(exc) from None


@app.command("keygen")
def keygen(
    private: Annotated[Path, typer.Argument(help="where the private key goes (mode 0600; the publisher's)")],
    public: Annotated[
        Path, typer.Argument(help="where the public key goes (every managed gateway's managed.verify_key)")
    ],
) -> None:
    """Make the platform's Ed25519 key pair for signing config pushes (refuses to overwrite a key)."""
    try:
        generate_key_pair(private, public)
    except OSError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    out.print(
        f"wrote {private} (private, 0600: PARKPULSE_FLEET_SIGNING_KEY) and {public} (managed.verify_key)",
        markup=False,
    )
