"""`parkpulse console serve` and `parkpulse users add|list|disable|enable|set-password|lockouts|unlock`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from console.errors import AccountError
from console.settings import ConsoleSettings
from parkpulse.errors import ParkPulseError

if TYPE_CHECKING:
    import psycopg

__all__ = ["console_app", "users_app"]

console_app = typer.Typer(help="The web console and HTTP API.", no_args_is_help=True)
users_app = typer.Typer(
    help="Console accounts: inspectors, park managers, operators, admins.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

DsnOpt = Annotated[
    str | None, typer.Option("--database-url", envvar="PARKPULSE_DATABASE_URL", help="PostgreSQL URL")
]


@console_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=1, max=65535)] = 8080,
    database_url: DsnOpt = None,
    insecure_cookies: Annotated[
        bool, typer.Option("--insecure-cookies", help="drop the Secure cookie flag (local plain http only)")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="reverse-proxy addresses trusted for X-Forwarded-For/-Proto (e.g. 127.0.0.1); "
            "without it the peer address is the client (login throttling per address)"
        ),
    ] = None,
) -> None:
    """Serve the console (pages, /api/v1, live alert feed) with uvicorn."""
    import logging

    import uvicorn

    from console._server import guarded_h11
    from console.app import create_app

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("psycopg", "psycopg.pool", "httpx", "multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if insecure_cookies:
        overrides["cookie_secure"] = False
    settings = ConsoleSettings(**overrides)
    app = create_app(settings)
    if not settings.cookie_secure:
        err.print("[yellow]cookies are sent without the Secure flag: use this only on localhost over http[/]")
    # Live feeds are long-lived responses: do not wait for them for ever on shutdown. Reading a
    # request has deadlines (console._server); idle kept-alive connections close after keep_alive_s.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=3,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        http=guarded_h11(settings.header_timeout_s, settings.body_timeout_s),
        ws="none",
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
    )


def _conn(database_url: str | None) -> psycopg.Connection:
    from parkpulse.db import connect
    from parkpulse.settings import get_settings

    return connect(database_url or ConsoleSettings().dsn() or get_settings().database_url)


def _read_password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _fail(exc: ParkPulseError) -> None:
    err.print(f"[red]error:[/] {exc}")
    raise typer.Exit(2)


@users_app.command("add")
def users_add(
    user: Annotated[str, typer.Argument(help="user name (a-z 0-9 . _ -)")],
    role: Annotated[str, typer.Option(help="admin | inspector | park_manager | operator")],
    park: Annotated[list[str] | None, typer.Option(help="park id (inspector: repeat for several)")] = None,
    firm: Annotated[str | None, typer.Option(help="firm id (operator)")] = None,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="read the password from the first line of stdin")
    ] = False,
    database_url: DsnOpt = None,
) -> None:
    """Create a user. The password is prompted for (or read from stdin), never taken as an argument."""
    from console.accounts import add_user

    password = _read_password(password_stdin)
    try:
        with _conn(database_url) as conn:
            add_user(
                conn, user, password, role, parks=park or [], firms=[firm] if firm else [], display_name=name
            )
    except (AccountError, ParkPulseError) as exc:
        _fail(exc)
    out.print(f"added {user} ({role})")


@users_app.command("list")
def users_list(database_url: DsnOpt = None) -> None:
    """List users, their roles and scope."""
    from console.accounts import list_users

    try:
        with _conn(database_url) as conn:
            users = list_users(conn)
    except ParkPulseError as exc:
        _fail(exc)
    table = Table("user", "name", "roles", "scope", "disabled", "last login")
    for u in users:
        table.add_row(
            u.user_name,
            u.display_name or "",
            ", ".join(sorted({r for r, _, _ in u.roles})),
            ", ".join(p or f or "" for _, p, f in u.roles) or "*",
            "yes" if u.disabled else "",
            u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "",
        )
    out.print(table)


@users_app.command("disable")
def users_disable(user: str, database_url: DsnOpt = None) -> None:
    """Disable a user and end their sessions at once."""
    from console.accounts import disable_user

    try:
        with _conn(database_url) as conn:
            ended = disable_user(conn, user)
    except ParkPulseError as exc:
        _fail(exc)
    out.print(f"disabled {user} ({ended} session(s) ended)")


@users_app.command("enable")
def users_enable(user: str, database_url: DsnOpt = None) -> None:
    """Enable a disabled user again (and clear their login throttle)."""
    from console.accounts import enable_user

    try:
        with _conn(database_url) as conn:
            enable_user(conn, user)
    except ParkPulseError as exc:
        _fail(exc)
    out.print(f"enabled {user}")


@users_app.command("set-password")
def users_set_password(
    user: str,
    password_stdin: Annotated[
        bool, typer.Option(help="read the password from the first line of stdin")
    ] = False,
    database_url: DsnOpt = None,
) -> None:
    """Set a new password; ends the user's sessions."""
    from console.accounts import set_password

    password = _read_password(password_stdin)
    try:
        with _conn(database_url) as conn:
            ended = set_password(conn, user, password)
    except ParkPulseError as exc:
        _fail(exc)
    out.print(f"password set for {user} ({ended} session(s) ended)")


@users_app.command("lockouts")
def users_lockouts(database_url: DsnOpt = None) -> None:
    """Failed-login counters of the last day and the lockouts they hold (active ones first).

    While a user or address is locked out even the right password is refused (by design);
    `parkpulse users unlock` lifts it. `user hash` is what failed-login log lines show."""
    from console.lockouts import list_lockouts

    try:
        with _conn(database_url) as conn:
            rows = list_lockouts(conn)
    except ParkPulseError as exc:
        _fail(exc)
    if not rows:
        out.print("no failed logins in the last day")
        return
    for r in rows:  # one line each (names, hashes and addresses are never cut short)
        locked = f"LOCKED for {r.remaining_s} s" if r.active else "not locked"
        out.print(
            f"{r.kind:<4} {r.subject}  user-hash={r.user_hash or '-'}  failures={r.failures}  "
            f"last={r.last_failure.isoformat(timespec='seconds')}  {locked}  key={r.key}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@users_app.command("unlock")
def users_unlock(
    user: Annotated[str | None, typer.Argument(help="user name whose lockout to lift")] = None,
    address: Annotated[
        str | None, typer.Option(help="lift the lockout of this client address instead")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="lift this key exactly as `users lockouts` lists it")
    ] = None,
    database_url: DsnOpt = None,
) -> None:
    """Lift a login lockout: forget the failed logins of a user, an address or a listed key."""
    from console.lockouts import unlock, unlock_key

    try:
        if key is not None:
            if user is not None or address is not None:
                raise AccountError("key", key, "give --key alone")
            with _conn(database_url) as conn:
                lifted = unlock_key(conn, key)
        else:
            with _conn(database_url) as conn:
                lifted = unlock(conn, user=user, address=address)
    except ParkPulseError as exc:
        _fail(exc)
    what = key or (f"user {user}" if user is not None else f"address {address}")
    out.print(f"lockout lifted for {what}" if lifted else f"no failed logins recorded for {what}")
