"""`parkpulse notify …`: the notification service and its channels, contacts and subscriptions."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from notify._admin import add_channel, add_contact, add_subscription, channel_from_file, dumps, list_channels
from notify._facts import channel_facts
from notify._service import NotifyService
from notify._settings import NotifySettings
from parkpulse.errors import ParkPulseError
from parkpulse.redact import redact_text, redact_url

__all__ = ["app", "main"]

app = typer.Typer(
    help="Notifications to phones: e-mail, WeCom and DingTalk robots, SMS.", no_args_is_help=True
)
channels_app = typer.Typer(help="Channels (secrets are stored, never shown).", no_args_is_help=True)
app.add_typer(channels_app, name="channels")

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

DsnOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="default: PARKPULSE_NOTIFY_DATABASE_URL / PARKPULSE_DATABASE_URL"),
]


def _dsn(value: str | None) -> str:
    return value or NotifySettings().dsn()


def _fail(exc: Exception) -> typer.Exit:
    err.print(redact_text(str(exc)), markup=False)
    return typer.Exit(1)


@app.command()
def serve(
    database_url: DsnOpt = None,
    http_port: Annotated[int | None, typer.Option(help="/healthz and /metrics on this port")] = None,
    start: Annotated[str | None, typer.Option(help="latest | beginning (a new cursor only)")] = None,
) -> None:
    """Run the notification service until SIGTERM / Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpcore"):  # they log request URLs, which carry robot keys and signatures
        logging.getLogger(noisy).setLevel(logging.WARNING)
    extra: dict[str, object] = {}
    if database_url:
        extra["database_url"] = database_url
    if http_port is not None:
        extra["http_port"] = http_port
    if start:
        extra["start"] = start
    try:
        settings = NotifySettings(**extra)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _fail(exc) from None
    logging.getLogger("parkpulse.notify").info(
        "notify: database %s, console links %s", redact_url(settings.dsn()), settings.public_console_url()
    )
    asyncio.run(_serve(settings))


async def _serve(settings: NotifySettings) -> None:
    svc = NotifyService(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.stop.set)
    await svc.run()


@channels_app.command("add")
def channels_add(
    file: Annotated[
        Path,
        typer.Option("-f", "--file", exists=True, dir_okay=False, help="YAML: id, kind, config, secrets"),
    ],
    name: Annotated[str | None, typer.Option("--id", help="overrides the file's id")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="replace a channel of that id")] = False,
    database_url: DsnOpt = None,
) -> None:
    """Add a channel from a file (keep the file private: it holds the secrets)."""
    try:
        ch = channel_from_file(file, name)
        with psycopg.connect(_dsn(database_url)) as conn:
            add_channel(conn, ch, replace=replace)
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(
        f"channel {ch.channel_id} ({ch.kind}) saved; secrets: {', '.join(sorted(ch.secrets)) or 'none'}"
    )


@channels_app.command("list")
def channels_list(
    database_url: DsnOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Channels, their health, and the names of their secrets (never the values)."""
    with psycopg.connect(_dsn(database_url)) as conn:
        rows = list_channels(conn)
    if as_json:
        out.print(dumps(rows), markup=False)
        return
    t = Table("id", "kind", "status", "failures in a row", "pending", "secrets", "last error")
    for r in rows:
        t.add_row(
            r["channel_id"],
            r["kind"],
            r["status"] or "",
            str(r["failures_in_row"] or 0),
            str(r["pending"] or 0),
            ", ".join(r["secrets"]),
            r["last_error"] or "",
        )
    out.print(t)


@channels_app.command("remove")
def channels_remove(channel_id: str, database_url: DsnOpt = None) -> None:
    """Remove a channel with its contacts, subscriptions and outbox."""
    with psycopg.connect(_dsn(database_url)) as conn:
        n = conn.execute("DELETE FROM notify_channels WHERE channel_id = %s", (channel_id,)).rowcount
    if not n:
        raise _fail(ParkPulseError(f"channel: no channel {channel_id!r}"))
    out.print(f"channel {channel_id} removed")


@app.command("contact")
def contact(
    channel: Annotated[str, typer.Option(help="channel id")],
    user: Annotated[str | None, typer.Option(help="console user")] = None,
    label: Annotated[str | None, typer.Option(help="a group robot's name (no user)")] = None,
    address: Annotated[str | None, typer.Option(help="e-mail address or mobile number")] = None,
    language: Annotated[str, typer.Option(help="zh | en")] = "zh",
    quiet: Annotated[str | None, typer.Option(help="quiet hours, e.g. 22:00-07:00")] = None,
    timezone: Annotated[str, typer.Option(help="IANA zone of the quiet hours")] = "Asia/Shanghai",
    database_url: DsnOpt = None,
) -> None:
    """Add a recipient: a user's address on a channel, or a group robot."""
    try:
        with psycopg.connect(_dsn(database_url)) as conn:
            cid = add_contact(
                conn,
                channel_id=channel,
                user_name=user,
                label=label,
                address=address,
                language=language,
                quiet=quiet,
                timezone=timezone,
            )
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(f"contact {cid} added")


def _split(v: str | None) -> list[str] | None:
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


@app.command()
def subscribe(
    user: Annotated[str | None, typer.Option(help="a console user")] = None,
    role: Annotated[str | None, typer.Option(help="admin | inspector | park_manager | operator")] = None,
    contact: Annotated[int | None, typer.Option(help="a contact id (group robot)")] = None,
    channel: Annotated[
        str | None, typer.Option(help="only the user's / role's contacts on this channel")
    ] = None,
    park: Annotated[str | None, typer.Option(help="default: every park")] = None,
    kinds: Annotated[str | None, typer.Option(help="comma-separated alert kinds; default: all")] = None,
    min_severity: Annotated[str, typer.Option(help="info | warning | critical")] = "warning",
    actions: Annotated[str | None, typer.Option(help="default: fired,reopened")] = None,
    database_url: DsnOpt = None,
) -> None:
    """Subscribe a user, a role or a group robot to alerts by park, kind and severity."""
    try:
        with psycopg.connect(_dsn(database_url)) as conn:
            sid = add_subscription(
                conn,
                user_name=user,
                role=role,
                contact_id=contact,
                channel_id=channel,
                park_id=park,
                kinds=_split(kinds),
                min_severity=min_severity,
                actions=_split(actions),
            )
    except ParkPulseError as exc:
        raise _fail(exc) from None
    out.print(f"subscription {sid} added")


@app.command()
def deliveries(
    limit: Annotated[int, typer.Option(help="newest first")] = 20,
    database_url: DsnOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent messages with their recipient and delivery state."""
    with psycopg.connect(_dsn(database_url)) as conn:
        cur = conn.execute(
            """SELECT message_id, coalesce(user_name, label), channel_id, form, items, state, attempts, title,
                      sent_at, last_error FROM v_notify_deliveries ORDER BY message_id DESC LIMIT %s""",
            (limit,),
        )
        rows = cur.fetchall()
    if as_json:
        keys = (
            "message_id",
            "recipient",
            "channel_id",
            "form",
            "items",
            "state",
            "attempts",
            "title",
            "sent_at",
            "last_error",
        )
        out.print(dumps([dict(zip(keys, r, strict=True)) for r in rows]), markup=False)
        return
    t = Table("id", "recipient", "channel", "form", "items", "state", "attempts", "title", "last error")
    for r in rows:
        t.add_row(*(str(x) if x is not None else "" for x in (*r[:8], r[9])))
    out.print(t)


@app.command()
def facts() -> None:
    """The channels' API figures used, with their sources and whether they were verified."""
    for f in channel_facts().values():
        mark = "verified" if f.verified else "NOT verified"
        out.print(f"{f.path} = {f.value}  [{mark}]  source: {f.source}", markup=False)


def main() -> None:
    try:
        app()
    except ParkPulseError as exc:
        err.print(redact_text(str(exc)), markup=False)
        sys.exit(1)
