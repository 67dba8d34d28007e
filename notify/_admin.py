"""Managing channels, contacts and subscriptions (what the CLI and tests call). Every bad value is
refused with its field named; a channel's secrets are written but never read back for display."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import psycopg
import yaml
from psycopg.types.json import Jsonb

from notify._channels import Channel, parse_channel
from notify.errors import ChannelConfigError
from parkpulse.errors import ConfigError

__all__ = [
    "Quiet",
    "add_channel",
    "add_contact",
    "add_subscription",
    "channel_from_file",
    "list_channels",
    "parse_quiet",
]

KINDS = ("emission", "data_gap", "tamper", "threshold", "rate_of_change")
ROLES = ("admin", "inspector", "park_manager", "operator")
SEVERITIES = ("info", "warning", "critical")
ACTIONS = ("fired", "acknowledged", "resolved", "comment", "reopened", "updated")


@dataclass(frozen=True)
class Quiet:
    start: time
    end: time


_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def parse_quiet(value: str | None) -> Quiet | None:
    """`22:00-07:00` (over midnight is fine); None or '' = no quiet hours."""
    if not value:
        return None
    m = _QUIET.match(value.strip())
    if not m or m.group(1, 2) == m.group(3, 4):
        raise ChannelConfigError("quiet", value, "expected HH:MM-HH:MM with two different times")
    return Quiet(time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4])))


def channel_from_file(path: Path, channel_id: str | None = None) -> Channel:
    """A channel file: `{id?, kind, config: {...}, secrets: {...}}` (YAML or JSON)."""
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with kind, config and secrets")
    cid = channel_id or doc.get("id")
    if not isinstance(cid, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", cid):
        raise ChannelConfigError("id", cid, "a lowercase name: letters, digits, - and _")
    return parse_channel(cid, str(doc.get("kind")), doc.get("config"), doc.get("secrets") or {})


def add_channel(conn: psycopg.Connection, ch: Channel, *, replace: bool = False) -> None:
    conflict = (
        "ON CONFLICT (channel_id) DO UPDATE SET kind = EXCLUDED.kind, config = EXCLUDED.config, "
        "secrets = EXCLUDED.secrets"
        if replace
        else ""
    )
    try:
        conn.execute(
            f"INSERT INTO notify_channels (channel_id, kind, config, secrets) VALUES (%s, %s, %s, %s) {conflict}",
            (ch.channel_id, ch.kind, Jsonb(ch.config.model_dump(mode="json")), Jsonb(ch.secrets)),
        )
    except psycopg.errors.UniqueViolation:
        raise ChannelConfigError(
            "id", ch.channel_id, "a channel of this name exists (use --replace)"
        ) from None


def list_channels(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Channels with their config and the names (never the values) of their secrets, and health."""
    rows = conn.execute(
        """SELECT c.channel_id, c.kind, c.config, ARRAY(SELECT jsonb_object_keys(c.secrets) ORDER BY 1), c.enabled,
                  h.status, h.failures_in_row, h.pending, h.last_success_at, h.last_error
           FROM notify_channels c LEFT JOIN v_notify_channel_health h USING (channel_id) ORDER BY 1"""
    ).fetchall()
    keys = (
        "channel_id",
        "kind",
        "config",
        "secrets",
        "enabled",
        "status",
        "failures_in_row",
        "pending",
        "last_success_at",
        "last_error",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def add_contact(
    conn: psycopg.Connection,
    *,
    channel_id: str,
    user_name: str | None = None,
    label: str | None = None,
    address: str | None = None,
    language: str = "zh",
    quiet: str | None = None,
    timezone: str = "Asia/Shanghai",
) -> int:
    if (user_name is None) == (label is None):
        raise ChannelConfigError(
            "user/label", user_name or label, "give a user, or a label for a group robot"
        )
    if language not in ("zh", "en"):
        raise ChannelConfigError("language", language, "must be zh or en")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ChannelConfigError("timezone", timezone, "not an IANA time zone") from None
    q = parse_quiet(quiet)
    row = conn.execute("SELECT kind FROM notify_channels WHERE channel_id = %s", (channel_id,)).fetchone()
    if row is None:
        raise ChannelConfigError("channel", channel_id, "no such channel")
    if row[0] in ("email", "sms") and not address:
        raise ChannelConfigError("address", address, f"a {row[0]} contact needs an address")
    if row[0] == "email" and address and "@" not in address:
        raise ChannelConfigError("address", address, "not an e-mail address")
    if row[0] == "sms" and address and not re.fullmatch(r"\+?[0-9]{6,15}", address):
        raise ChannelConfigError("address", address, "not a phone number (digits, optional +)")
    if (
        user_name is not None
        and conn.execute("SELECT 1 FROM console_users WHERE user_name = %s", (user_name,)).fetchone() is None
    ):
        raise ChannelConfigError("user", user_name, "no such console user")
    cur = conn.execute(
        """INSERT INTO notify_contacts (user_name, label, channel_id, address, language, quiet_start, quiet_end, timezone)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING contact_id""",
        (
            user_name,
            label,
            channel_id,
            address,
            language,
            q.start if q else None,
            q.end if q else None,
            timezone,
        ),
    )
    return int((cur.fetchone() or (0,))[0])


def _names(field: str, values: list[str] | None, allowed: tuple[str, ...]) -> list[str] | None:
    if values is None:
        return None
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ChannelConfigError(field, values, f"each must be one of {', '.join(allowed)}")
    return values


def add_subscription(
    conn: psycopg.Connection,
    *,
    user_name: str | None = None,
    role: str | None = None,
    contact_id: int | None = None,
    channel_id: str | None = None,
    park_id: str | None = None,
    kinds: list[str] | None = None,
    min_severity: str = "warning",
    actions: list[str] | None = None,
) -> int:
    if sum(x is not None for x in (user_name, role, contact_id)) != 1:
        raise ChannelConfigError(
            "target", [user_name, role, contact_id], "give exactly one of user, role, contact"
        )
    if role is not None and role not in ROLES:
        raise ChannelConfigError("role", role, f"must be one of {', '.join(ROLES)}")
    if min_severity not in SEVERITIES:
        raise ChannelConfigError("min_severity", min_severity, f"must be one of {', '.join(SEVERITIES)}")
    kinds = _names("kinds", kinds, KINDS)
    acts = _names("actions", actions, ACTIONS) or ["fired", "reopened"]
    if (
        park_id is not None
        and conn.execute("SELECT 1 FROM parks WHERE park_id = %s", (park_id,)).fetchone() is None
    ):
        raise ChannelConfigError("park", park_id, "no such park")
    try:
        cur = conn.execute(
            """INSERT INTO notify_subscriptions (user_name, role, contact_id, channel_id, park_id, kinds, min_severity, actions)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING subscription_id""",
            (user_name, role, contact_id, channel_id, park_id, kinds, min_severity, acts),
        )
    except psycopg.errors.ForeignKeyViolation as exc:
        raise ChannelConfigError(
            "target", [user_name, contact_id, channel_id], f"not found ({exc.diag.constraint_name})"
        ) from None
    return int((cur.fetchone() or (0,))[0])


def dumps(value: object) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode()
