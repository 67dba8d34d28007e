"""A managed configuration checked with the gateway's own validator (gateway.config.parse_config),
with the profiles it will be pushed with, before anything is stored or sent."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from gateway.config import parse_config
from parkpulse.errors import FieldError, ValidationReport
from parkpulse.wire import LOCAL_ONLY_KEYS

__all__ = ["PROFILE_DIR_KEYS", "PROFILE_SOURCES", "config_problems", "used_profiles", "who_problems"]

PROFILE_SOURCES: dict[str, tuple[str, str, str]] = {
    # source -> (its profiles-folder key, the config key of its devices, their profile field)
    "modbus": ("profiles_dir", "devices", "profile"),
    "dlt645": ("dlt645_profiles_dir", "dlt645_meters", "profile"),
}
PROFILE_DIR_KEYS = frozenset(v[0] for v in PROFILE_SOURCES.values())

# Files on the gateway's own host (OPC UA certificates and keys, a password file) cannot be read
# here: "cannot read" problems on these fields are left to the gateway, which checks them on apply.
_HOST_FILE_FIELDS = (".certificate", ".private_key", ".server_certificate", ".password_file")
_PLACEHOLDER_UPLINK = "mqtt://127.0.0.1:1883"
_PLACEHOLDER_SPOOL = "/nonexistent/parkpulse-fleet-validation/spool.db"


def used_profiles(config: dict[str, Any]) -> dict[str, set[str]]:
    """Per source, the profile names the config's devices name (entries that are not mappings are skipped)."""
    out: dict[str, set[str]] = {}
    for source, (_dir, key, field) in PROFILE_SOURCES.items():
        entries = config.get(key)
        names = {
            e[field]
            for e in (entries if isinstance(entries, list) else [])
            if isinstance(e, dict) and isinstance(e.get(field), str)
        }
        out[source] = names
    return out


def _shape_problems(config: dict[str, Any]) -> list[FieldError]:
    problems = [
        FieldError(
            key, config[key], "a local-only key: it stays in the gateway's own file and is never pushed"
        )
        for key in sorted(LOCAL_ONLY_KEYS & set(config))
    ]
    problems += [
        FieldError(
            key,
            config[key],
            "profiles come from the platform's library (parkpulse gateways profiles put), not a folder on the gateway",
        )
        for key in sorted(PROFILE_DIR_KEYS & set(config))
    ]
    return problems


def _write_profiles(root: Path, profiles: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each source's profiles as `{name}.yaml` in a folder of its own; the folder keys to set."""
    keys: dict[str, str] = {}
    for source, (dir_key, _k, _f) in PROFILE_SOURCES.items():
        folder = root / source
        folder.mkdir()
        for name, doc in (profiles.get(source) or {}).items():
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        keys[dir_key] = str(folder)
    return keys


def _from_gateway(problem: FieldError, folders: dict[str, str]) -> FieldError | None:
    """A problem of the gateway's validator as the platform shows it (None: left to the gateway)."""
    if problem.path.endswith(_HOST_FILE_FIELDS) and problem.reason.startswith("cannot read"):
        return None
    for source, (dir_key, _k, _f) in PROFILE_SOURCES.items():
        if problem.path == dir_key:
            reason = problem.reason.replace(folders[dir_key] + "/", "")
            return FieldError(f"profiles.{source}", None, reason)
    return problem


def config_problems(
    identity: tuple[str, str, str], config: dict[str, Any], profiles: dict[str, dict[str, Any]]
) -> list[FieldError]:
    """Every problem of `config` for the gateway (park, firm, gateway id), with `profiles`
    ({source: {name: document}}) standing in for the gateway's profile folders."""
    problems = _shape_problems(config)  # reported, and the rest checked without those keys
    config = {k: v for k, v in config.items() if k not in LOCAL_ONLY_KEYS | PROFILE_DIR_KEYS}
    park, firm, gateway_id = identity
    with tempfile.TemporaryDirectory(prefix="pp-fleet-") as tmp:
        folders = _write_profiles(Path(tmp), profiles)
        doc = {
            **config,
            "gateway": {"park": park, "firm": firm, "id": gateway_id},
            "uplink": {"url": _PLACEHOLDER_UPLINK},
            "spool": {"path": _PLACEHOLDER_SPOOL},
            **folders,
        }
        try:
            parse_config(doc, "config")
        except ValidationReport as exc:
            problems += [p for p in (_from_gateway(p, folders) for p in exc.problems) if p is not None]
    return problems


def who_problems(by: str, reason: str) -> list[FieldError]:
    """Every change names who made it and why."""
    problems = []
    if not by.strip():
        problems.append(FieldError("by", by, "who makes the change must be named"))
    if not reason.strip():
        problems.append(FieldError("reason", reason, "say why (it is kept in the history)"))
    return problems
