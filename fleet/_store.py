"""Each gateway's desired configuration, versioned in the store with who, when and why.

Nothing is stored that the gateway's own validator refuses (ConfigRejected lists every problem).
The registry follows in the same transaction (fleet/_registry.py: devices added, disabled, dropped).
A write notifies the publisher (`parkpulse fleet serve`) on the channel `fleet_config` in the
same transaction, so the retained message follows the commit.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json

from fleet import profiles as library
from fleet._errors import ConfigRejected, UnknownGateway, UnknownVersion
from fleet._registry import sync_registry
from fleet._secrets import redact_config, restore_secrets
from fleet._validate import config_problems, who_problems
from fleet._yaml import as_json_values, to_yaml
from parkpulse.errors import FieldError
from parkpulse.wire import config_digest, config_payload

__all__ = [
    "NOTIFY_CHANNEL",
    "ConfigVersion",
    "desired",
    "diff",
    "gateway_identity",
    "history",
    "rollback",
    "set_desired",
    "validate",
    "version",
]

NOTIFY_CHANNEL = "fleet_config"


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    gateway_id: str
    version: int
    config: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    sha256: str
    created_by: str
    created_at: datetime
    reason: str
    rollback_of: int | None = None

    def redacted(self) -> dict[str, Any]:
        """The config with its secrets masked, fit to show (a masked value sent back keeps the stored one)."""
        out: dict[str, Any] = redact_config(self.config)
        return out


_COLS = "gateway_id, version, config, profiles, sha256, created_by, created_at, reason, rollback_of"


def _row(r: dict[str, Any]) -> ConfigVersion:
    return ConfigVersion(**r)


def gateway_identity(conn: psycopg.Connection[Any], gateway_id: str) -> tuple[str, str, str]:
    """(park, firm, gateway) of a registered gateway; UnknownGateway otherwise."""
    r = conn.execute(
        "SELECT f.park_id, g.firm_id FROM gateways g JOIN firms f USING (firm_id) WHERE g.gateway_id = %s",
        (gateway_id,),
    ).fetchone()
    if r is None:
        raise UnknownGateway(gateway_id)
    return str(r[0]), str(r[1]), gateway_id


def desired(conn: psycopg.Connection[Any], gateway_id: str) -> ConfigVersion | None:
    """The newest desired configuration of a gateway, or None when it has none (it runs its local file)."""
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            f"SELECT {_COLS} FROM fleet_configs WHERE gateway_id = %s ORDER BY version DESC LIMIT 1",
            (gateway_id,),
        ).fetchone()
    return None if r is None else _row(r)


def version(conn: psycopg.Connection[Any], gateway_id: str, number: int) -> ConfigVersion:
    """One version of a gateway's configuration; UnknownVersion when there is no such version."""
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            f"SELECT {_COLS} FROM fleet_configs WHERE gateway_id = %s AND version = %s", (gateway_id, number)
        ).fetchone()
    if r is None:
        raise UnknownVersion(f"version: gateway {gateway_id!r} has no config version {number}")
    return _row(r)


def history(conn: psycopg.Connection[Any], gateway_id: str) -> list[ConfigVersion]:
    """Every version of a gateway's configuration, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLS} FROM fleet_configs WHERE gateway_id = %s ORDER BY version DESC", (gateway_id,)
        ).fetchall()
    return [_row(r) for r in rows]


def validate(
    conn: psycopg.Connection[Any], gateway_id: str, config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[FieldError]]:
    """What `set_desired` would store, without storing it: the config (masked secrets restored from
    the current version), the library profiles it uses, and every problem found."""
    identity = gateway_identity(conn, gateway_id)
    try:
        config = as_json_values(config)
    except FieldError as exc:
        return config, {}, [exc]
    current = desired(conn, gateway_id)
    config, problems = restore_secrets(config, current.config if current else None)
    profiles = library.resolve(conn, config)
    problems += config_problems(identity, config, library.not_builtin(profiles))
    return config, profiles, problems


def _insert(
    conn: psycopg.Connection[Any],
    gateway_id: str,
    config: dict[str, Any],
    profiles: dict[str, dict[str, Any]],
    by: str,
    reason: str,
    rollback_of: int | None,
) -> ConfigVersion:
    sha = config_digest(config, profiles)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT 1 FROM gateways WHERE gateway_id = %s FOR UPDATE", (gateway_id,))
        prev = desired(conn, gateway_id)
        sync_registry(cur, gateway_id, (config, profiles), (prev.config, prev.profiles) if prev else None)
        r = cur.execute(
            f"""INSERT INTO fleet_configs (gateway_id, version, config, profiles, sha256, created_by, reason, rollback_of)
                SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s
                FROM fleet_configs WHERE gateway_id = %s
                RETURNING {_COLS}""",
            (gateway_id, Json(config), Json(profiles), sha, by, reason, rollback_of, gateway_id),
        ).fetchone()
        cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, gateway_id))
    assert r is not None
    return _row(r)


def _size_problem(
    gateway_id: str, config: dict[str, Any], profiles: dict[str, dict[str, Any]]
) -> list[FieldError]:
    try:
        config_payload(gateway_id, 1, config, profiles, issued_by="size-check", reason="")
    except ValueError as exc:
        return [FieldError("config", None, str(exc))]
    return []


def set_desired(
    conn: psycopg.Connection[Any], gateway_id: str, config: dict[str, Any], *, by: str, reason: str
) -> ConfigVersion:
    """Store a new desired version after the gateway's own validator accepted it with the library's
    profiles; ConfigRejected lists every problem and nothing is stored. A secret sent back masked
    (`***`) keeps the value of the current version."""
    config, profiles, problems = validate(conn, gateway_id, config)
    problems = who_problems(by, reason) + problems
    if not problems:
        problems = _size_problem(gateway_id, config, profiles)
    if problems:
        raise ConfigRejected(f"config of gateway {gateway_id!r}", problems)
    return _insert(conn, gateway_id, config, profiles, by, reason, None)


def rollback(
    conn: psycopg.Connection[Any], gateway_id: str, to_version: int, *, by: str, reason: str
) -> ConfigVersion:
    """A new version whose content (config and the profiles frozen with it) equals `to_version`'s,
    checked again by the gateway's validator."""
    identity = gateway_identity(conn, gateway_id)
    old = version(conn, gateway_id, to_version)
    problems = who_problems(by, reason) + config_problems(
        identity, old.config, library.not_builtin(old.profiles)
    )
    if problems:
        raise ConfigRejected(f"rollback of gateway {gateway_id!r} to version {to_version}", problems)
    return _insert(conn, gateway_id, old.config, old.profiles, by, reason, to_version)


def _label(v: ConfigVersion | None, gateway_id: str) -> str:
    return f"{gateway_id} (none)" if v is None else f"{gateway_id} v{v.version}"


def diff(a: ConfigVersion | None, b: ConfigVersion) -> str:
    """Unified diff of the YAML of two versions (secrets masked), then of their profiles when those differ."""
    before = to_yaml(a.redacted()) if a is not None else ""
    out = list(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            to_yaml(b.redacted()).splitlines(keepends=True),
            _label(a, b.gateway_id),
            _label(b, b.gateway_id),
        )
    )
    old_profiles = a.profiles if a is not None else {}
    if old_profiles != b.profiles:
        out += difflib.unified_diff(
            to_yaml(old_profiles).splitlines(keepends=True) if old_profiles else [],
            to_yaml(b.profiles).splitlines(keepends=True),
            _label(a, b.gateway_id) + " profiles",
            _label(b, b.gateway_id) + " profiles",
        )
    return "".join(out)
