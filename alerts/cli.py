"""`parkpulse alerts …`: run the engine, list rules, act on alerts, manage webhooks."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from pathlib import Path

import orjson
import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from alerts._engine import AlertEngine
from alerts._limits_sync import sync_limits
from alerts._ruleset import RuleSet, load_rules
from alerts._settings import AlertSettings
from parkpulse.errors import ConfigError, ParkPulseError, ValidationReport
from parkpulse.redact import redact_text, redact_url
from parkpulse.settings import describe_settings_error

__all__ = ["app"]

app = typer.Typer(
    help="Alert engine: emission exceedance, data gaps, tamper signs, thresholds.", no_args_is_help=True
)
webhooks_app = typer.Typer(
    help="Webhook subscriptions (HMAC-SHA256 signed, retried from an outbox).", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")
limits_app = typer.Typer(
    help="Emission limits in the database (v_emission_limits, read by Grafana).", no_args_is_help=True
)
app.add_typer(limits_app, name="limits")
out = Console()
err = Console(stderr=True)

RulesOpt = typer.Option(None, "--rules", help="alert rules YAML (default: shipped data/alert_rules.yaml)")
LimitsOpt = typer.Option(
    None, "--limits", help="emission limits YAML (default: shipped data/emission_limits.yaml)"
)
DbOpt = typer.Option(
    None, "--database-url", help="default: PARKPULSE_ALERTS_DATABASE_URL or PARKPULSE_DATABASE_URL"
)


def _settings(database_url: str | None = None, **kw: object) -> AlertSettings:
    try:
        s = AlertSettings()
    except ValidationError as exc:
        err.print(
            describe_settings_error(exc, "PARKPULSE_ALERTS_"), style="red", markup=False, highlight=False
        )
        raise typer.Exit(2) from None
    upd = {k: v for k, v in kw.items() if v is not None}
    if database_url:
        upd["database_url"] = database_url
    return s.model_copy(update=upd)


def _load(rules: Path | None, limits: Path | None) -> RuleSet:
    try:
        return load_rules(rules, limits)
    except ValidationReport as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def run(
    rules: Path | None = RulesOpt,
    limits: Path | None = LimitsOpt,
    database_url: str | None = DbOpt,
    mqtt_url: str | None = typer.Option(None, "--mqtt-url"),
    park: str | None = typer.Option(None, "--park", help="watch one park ('+' = all)"),
    group: str | None = typer.Option(None, "--group", help="MQTT shared-subscription group"),
    http_port: int | None = typer.Option(
        None, "--http-port", help="serve /healthz and /metrics on this port"
    ),
    client_id: str | None = typer.Option(
        None, "--client-id", help="fixed MQTT client id (persistent session)"
    ),
    log_level: str = typer.Option("INFO", "--log-level"),
) -> None:
    """Run the alert engine until SIGINT/SIGTERM."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(
        database_url,
        mqtt_url=mqtt_url,
        park=park,
        group=group,
        rules_file=rules,
        limits_file=limits,
        http_port=http_port,
        client_id=client_id,
    )
    try:
        settings.mqtt()
    except ValueError as exc:  # the message shows the URL redacted
        err.print(f"mqtt-url: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except ConfigError as exc:  # a bad PARKPULSE_MQTT_URL, named and redacted
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    ruleset = _load(settings.rules_file, settings.limits_file)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        engine = AlertEngine(settings, ruleset, shutdown=stop)
        await engine.run()
        logging.getLogger("parkpulse.alerts").info("alerts: stopped %s", engine.stats)

    try:
        asyncio.run(main())
    except ParkPulseError as exc:
        err.print(f"[red]alerts: {exc}[/red]")
        raise typer.Exit(1) from None


@app.command("rules")
def rules_cmd(
    rules: Path | None = RulesOpt,
    limits: Path | None = LimitsOpt,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List the alert rules with their versions and parameters, and the emission limits with sources."""
    rs = _load(rules, limits)
    if as_json:
        doc = {
            "version": rs.version,
            "source": rs.source,
            "rules": [
                {
                    "id": r.id,
                    "version": r.version,
                    "kind": r.kind,
                    "severity": r.severity,
                    "parks": list(r.parks) if r.parks else None,
                    "params": r.params.model_dump(),
                    "checksum": r.checksum,
                }
                for r in rs.rules
            ],
            "limits": {
                "version": rs.limits.version,
                "reference_o2": {
                    k: {"o2_ref_pct": v[0], "source": v[1]} for k, v in rs.limits.reference_o2.items()
                },
                "limit_sets": {k: v.model_dump() for k, v in rs.limits.limit_sets.items()},
                "special_limit_areas": {k: v.model_dump(mode="json") for k, v in rs.limits.areas.items()},
                "overrides": {k: v.model_dump() for k, v in rs.limits.overrides.items()},
            },
        }
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    t = Table(title=f"alert rules (rule set v{rs.version}, {rs.source})")
    for c in ("rule", "version", "kind", "severity", "parks", "parameters"):
        t.add_column(c)
    for r in rs.rules:
        params = ", ".join(f"{k}={v}" for k, v in r.params.model_dump().items())
        t.add_row(r.id, str(r.version), r.kind, r.severity, ",".join(r.parks) if r.parks else "all", params)
    out.print(t)
    lt = Table(title=f"emission limits v{rs.limits.version} (mg/m³ at reference O₂)")
    for c in ("set / override", "source type", "pollutant", "limit", "verified", "source"):
        lt.add_column(c)
    for ls in rs.limits.limit_sets.values():
        for st, per in ls.limits.items():
            for m, v in per.items():
                lt.add_row(
                    f"{ls.id} ({ls.table}, {ls.applies_to})", st, m, f"{v:g}", _yes(ls.verified), ls.source
                )
    for ov in rs.limits.overrides.values():
        for m, v in ov.limits.items():
            lt.add_row(
                f"{ov.id} (override{', ' + ','.join(ov.cities) if ov.cities else ''})",
                ",".join(ov.source_types or ["*"]),
                m,
                f"{v:g}",
                _yes(ov.verified),
                ov.source,
            )
    for st, (o2, src) in rs.limits.reference_o2.items():
        ref_doc = rs.limits.reference_o2_docs.get(st)
        lt.add_row("reference O₂", st, "o2_pct", f"{o2:g} %", _yes(bool(ref_doc and ref_doc.verified)), src)
    for area in rs.limits.areas.values():
        lt.add_row(
            f"{area.id} (special limits from {area.since})",
            "*",
            "*",
            "Table 3",
            _yes(area.verified),
            f"{area.label_en}: {', '.join(area.cities)}",
        )
    out.print(lt)


def _yes(verified: bool) -> str:
    return "yes" if verified else "NO"


@app.command()
def check(rules: Path | None = RulesOpt, limits: Path | None = LimitsOpt) -> None:
    """Validate rule and limit files; every problem is listed, exit code 1 when any."""
    rs = _load(rules, limits)
    out.print(f"ok: {len(rs.rules)} rules, rule set v{rs.version}, limits v{rs.limits.version}")


@app.command("list")
def list_cmd(
    database_url: str | None = DbOpt,
    park: str | None = typer.Option(None, "--park"),
    all_: bool = typer.Option(False, "--all", help="include resolved alerts"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per alert (v_alerts columns)"),
) -> None:
    """List open (or all) alerts."""
    s = _settings(database_url)
    with psycopg.connect(s.dsn()) as conn:
        if as_json:
            cur = conn.execute(
                "SELECT to_jsonb(v) - 'evidence' FROM v_alerts v WHERE (%s::text IS NULL OR park_id = %s) "
                "AND (%s OR state <> 'resolved') ORDER BY opened_at DESC LIMIT %s",
                (park, park, all_, limit),
            )
            for (doc,) in cur:
                typer.echo(orjson.dumps(doc).decode())
            return
        rows = conn.execute(
            "SELECT alert_id, state, severity, rule_id, park_id, subject, value, limit_value, unit, opened_at, message_en "
            "FROM v_alerts WHERE (%s::text IS NULL OR park_id = %s) AND (%s OR state <> 'resolved') "
            "ORDER BY opened_at DESC LIMIT %s",
            (park, park, all_, limit),
        ).fetchall()
    t = Table()
    for c in ("id", "state", "severity", "rule", "park", "subject", "value", "limit", "opened", "message"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            str(r[0]),
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            f"{r[6]:g}" if r[6] is not None else "",
            f"{r[7]:g} {r[8] or ''}" if r[7] is not None else "",
            f"{r[9]:%Y-%m-%d %H:%M:%S}",
            r[10],
        )
    out.print(t)


def _act(alert_id: int, actor: str, action: str, comment: str | None, database_url: str | None) -> None:
    s = _settings(database_url)
    try:
        with psycopg.connect(s.dsn()) as conn:
            row = conn.execute(
                "SELECT pp_alert_act(%s, %s, %s, %s)", (alert_id, actor, action, comment)
            ).fetchone()
    except psycopg.Error as exc:
        err.print(f"[red]alerts: {exc.diag.message_primary or exc}[/red]")
        raise typer.Exit(1) from None
    out.print(f"alert {alert_id}: {row[0] if row else '?'}")


ActorOpt = typer.Option(..., "--actor", help="who acts (user name)")


@app.command()
def ack(
    alert_id: int,
    actor: str = ActorOpt,
    comment: str | None = typer.Option(None, "--comment"),
    database_url: str | None = DbOpt,
) -> None:
    """Acknowledge a firing alert."""
    _act(alert_id, actor, "acknowledge", comment, database_url)


@app.command()
def resolve(
    alert_id: int,
    actor: str = ActorOpt,
    comment: str | None = typer.Option(None, "--comment"),
    database_url: str | None = DbOpt,
) -> None:
    """Resolve an alert by hand."""
    _act(alert_id, actor, "resolve", comment, database_url)


@app.command()
def comment(alert_id: int, text: str, actor: str = ActorOpt, database_url: str | None = DbOpt) -> None:
    """Add a comment to an alert's audit trail."""
    _act(alert_id, actor, "comment", text, database_url)


@app.command()
def audit(alert_id: int, database_url: str | None = DbOpt) -> None:
    """Show an alert's audit trail."""
    s = _settings(database_url)
    with psycopg.connect(s.dsn()) as conn:
        rows = conn.execute(
            "SELECT event_id, at, actor, action, coalesce(comment, '') FROM alert_events WHERE alert_id = %s ORDER BY event_id",
            (alert_id,),
        ).fetchall()
    t = Table(title=f"alert {alert_id}")
    for c in ("event", "at", "actor", "action", "comment"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r[0]), f"{r[1]:%Y-%m-%d %H:%M:%S}", r[2], r[3], r[4])
    out.print(t)


@webhooks_app.command("add")
def webhooks_add(
    name: str,
    url: str,
    secret: str | None = typer.Option(
        None, "--secret", help="HMAC key (≥ 16 chars); generated and printed if omitted"
    ),
    park: str | None = typer.Option(None, "--park", help="only this park (default: all)"),
    kinds: str | None = typer.Option(
        None, "--kinds", help="comma list: emission,data_gap,tamper,threshold,rate_of_change"
    ),
    actions: str | None = typer.Option(
        None, "--actions", help="comma list: fired,acknowledged,resolved,comment,…"
    ),
    min_severity: str = typer.Option("info", "--min-severity"),
    database_url: str | None = DbOpt,
) -> None:
    """Add a webhook subscription."""
    if not url.startswith(("http://", "https://")):
        err.print(
            f"url: must start with http:// or https:// (got {redact_url(url)!r})",
            style="red",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)
    if secret is not None and len(secret) < 16:
        err.print(f"[red]secret: must be at least 16 characters (got {len(secret)})[/red]")
        raise typer.Exit(1)
    if min_severity not in ("info", "warning", "critical"):
        err.print(f"[red]min-severity: expected info, warning or critical (got {min_severity!r})[/red]")
        raise typer.Exit(1)
    generated = secret is None
    key = secret or secrets.token_urlsafe(32)
    s = _settings(database_url)
    try:
        with psycopg.connect(s.dsn()) as conn:
            conn.execute(
                "INSERT INTO webhook_subscriptions (name, url, secret, park_id, kinds, actions, min_severity, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, 'cli')",
                (
                    name,
                    url,
                    key,
                    park,
                    kinds.split(",") if kinds else None,
                    actions.split(",") if actions else None,
                    min_severity,
                ),
            )
    except psycopg.errors.UniqueViolation:
        err.print(f"[red]name: a webhook named {name!r} exists already[/red]")
        raise typer.Exit(1) from None
    out.print(f"webhook {name} → {redact_url(url)}", markup=False, highlight=False)
    if generated:
        out.print(f"secret (shown once): {key}")


@webhooks_app.command("list")
def webhooks_list(database_url: str | None = DbOpt) -> None:
    """List webhook subscriptions with their delivery counts."""
    s = _settings(database_url)
    with psycopg.connect(s.dsn()) as conn:
        rows = conn.execute(
            """SELECT s.name, s.url, coalesce(s.park_id, '*'), s.enabled,
                      count(*) FILTER (WHERE o.state = 'pending'), count(*) FILTER (WHERE o.state = 'delivered'),
                      count(*) FILTER (WHERE o.state = 'dead'), max(o.last_error) FILTER (WHERE o.state = 'pending')
               FROM webhook_subscriptions s LEFT JOIN webhook_outbox o USING (subscription_id)
               GROUP BY s.subscription_id ORDER BY s.name"""
        ).fetchall()
    t = Table()
    for c in ("name", "url", "park", "enabled", "pending", "delivered", "dead", "last error"):
        t.add_column(
            c, overflow="fold" if c in ("url", "last error") else "ellipsis"
        )  # the URL is shown whole, redacted
    for r in rows:
        t.add_row(
            r[0],
            redact_url(r[1]),
            r[2],
            "yes" if r[3] else "no",
            str(r[4]),
            str(r[5]),
            str(r[6]),
            redact_text(r[7] or ""),
        )
    out.print(t)


@webhooks_app.command("remove")
def webhooks_remove(name: str, database_url: str | None = DbOpt) -> None:
    """Remove a webhook subscription (its pending deliveries go with it)."""
    s = _settings(database_url)
    with psycopg.connect(s.dsn()) as conn:
        n = conn.execute("DELETE FROM webhook_subscriptions WHERE name = %s", (name,)).rowcount
    if not n:
        err.print(f"[red]name: no webhook named {name!r}[/red]")
        raise typer.Exit(1)
    out.print(f"removed {name}")


@webhooks_app.command("retry")
def webhooks_retry(name: str, database_url: str | None = DbOpt) -> None:
    """Send dead deliveries of a webhook again (and the pending ones now)."""
    s = _settings(database_url)
    with psycopg.connect(s.dsn()) as conn:
        n = conn.execute(
            "UPDATE webhook_outbox o SET state = 'pending', next_attempt_at = now(), created_at = now() "
            "FROM webhook_subscriptions s WHERE s.subscription_id = o.subscription_id AND s.name = %s "
            "AND o.state <> 'delivered'",
            (name,),
        ).rowcount
    out.print(f"{n} deliveries queued again")


@limits_app.command("sync")
def limits_sync(
    rules: Path | None = RulesOpt,
    limits: Path | None = LimitsOpt,
    database_url: str | None = DbOpt,
) -> None:
    """Copy the emission limits (with sources) into the database now; the engine also does it when it starts."""
    s = _settings(database_url, rules_file=rules, limits_file=limits)
    rs = _load(s.rules_file, s.limits_file)
    try:
        with psycopg.connect(s.dsn()) as conn:
            res = sync_limits(conn, rs)
    except psycopg.OperationalError as exc:
        err.print(f"[red]database-url: cannot connect ({str(exc).strip()[:200]})[/red]")
        raise typer.Exit(1) from None
    except ParkPulseError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    typer.echo(
        f"emission limits v{rs.limits.version} synced from {rs.limits.path}: {res.rows} rows "
        f"({res.inserted} new, {res.rows - res.inserted} updated, {res.deleted} stale removed)"
    )
