"""The platform's library of meter profiles (Modbus register maps, DL/T 645 data identifiers), versioned.

The gateway's built-in profiles are part of the library as version 0; a park adds its own (or a
corrected copy of a built-in one) with `put`, checked by the source's own profile parser. A
configuration is stored with the profiles it uses, frozen, and pushed with them.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.rows import dict_row
from psycopg.types.json import Json

from fleet._errors import ConfigRejected, UnknownVersion
from fleet._validate import PROFILE_SOURCES, used_profiles, who_problems
from fleet._yaml import as_json_values
from gateway.sources import dlt645, modbus
from parkpulse.errors import FieldError, ValidationReport

__all__ = ["SOURCES", "ProfileVersion", "history", "list", "not_builtin", "put", "resolve", "show"]

SOURCES = tuple(PROFILE_SOURCES)
_NAME = r"^[a-z0-9][a-z0-9-]{0,63}$"


@dataclass(frozen=True, slots=True)
class ProfileVersion:
    source: str
    name: str
    version: int  # 0: the gateway's built-in profile
    doc: dict[str, Any]
    sha256: str
    created_by: str
    created_at: datetime | None
    reason: str

    @property
    def builtin(self) -> bool:
        return self.version == 0


def _sha(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _folder(source: str) -> Path:
    return Path(modbus.PROFILES_DIR if source == "modbus" else dlt645.PROFILES_DIR)


@cache
def _builtin(source: str) -> dict[str, ProfileVersion]:
    out: dict[str, ProfileVersion] = {}
    for f in sorted(_folder(source).glob("*.yaml")):
        doc = as_json_values(yaml.safe_load(f.read_text(encoding="utf-8")), f.name)
        out[f.stem] = ProfileVersion(
            source, f.stem, 0, doc, _sha(doc), "builtin", None, f"shipped with the gateway ({f.name})"
        )
    return out


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ConfigRejected(
            "profile", [FieldError("source", source, f"must be one of {', '.join(SOURCES)}")]
        )


def _row(r: dict[str, Any]) -> ProfileVersion:
    return ProfileVersion(
        r["source"],
        r["name"],
        r["version"],
        r["doc"],
        r["sha256"],
        r["created_by"],
        r["created_at"],
        r["reason"],
    )


_COLS = "source, name, version, doc, sha256, created_by, created_at, reason"


def list(conn: psycopg.Connection[Any], source: str | None = None) -> builtins.list[ProfileVersion]:
    """The newest version of every profile (stored ones over built-ins of the same name), by source and name."""
    sources = SOURCES if source is None else (source,)
    for s in sources:
        _check_source(s)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT DISTINCT ON (source, name) {_COLS} FROM fleet_profiles
                WHERE source = ANY(%s) ORDER BY source, name, version DESC""",
            ([*sources],),
        ).fetchall()
    out = {(s, n): p for s in sources for n, p in _builtin(s).items()}
    out.update({(r["source"], r["name"]): _row(r) for r in rows})
    return [out[k] for k in sorted(out)]


def show(conn: psycopg.Connection[Any], source: str, name: str, version: int | None = None) -> ProfileVersion:
    """One profile: its newest version, or `version` (0 = the built-in one)."""
    _check_source(source)
    if version != 0:
        with conn.cursor(row_factory=dict_row) as cur:
            r = cur.execute(
                f"""SELECT {_COLS} FROM fleet_profiles WHERE source = %s AND name = %s
                    AND (%s::int IS NULL OR version = %s::int) ORDER BY version DESC LIMIT 1""",
                (source, name, version, version),
            ).fetchone()
        if r is not None:
            return _row(r)
    if version in (None, 0) and name in _builtin(source):
        return _builtin(source)[name]
    what = f"version {version} of " if version is not None else ""
    raise UnknownVersion(f"profile: no {what}{source} profile {name!r} in the library")


def history(conn: psycopg.Connection[Any], source: str, name: str) -> builtins.list[ProfileVersion]:
    """Every version of a profile, newest first (the built-in one last, when there is one)."""
    _check_source(source)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLS} FROM fleet_profiles WHERE source = %s AND name = %s ORDER BY version DESC",
            (source, name),
        ).fetchall()
    out = [_row(r) for r in rows]
    if name in _builtin(source):
        out.append(_builtin(source)[name])
    return out


def _doc_problems(source: str, name: str, doc: dict[str, Any]) -> builtins.list[FieldError]:
    problems: builtins.list[FieldError] = []
    if not re.match(_NAME, name):
        problems.append(FieldError("name", name, "lowercase letters, digits and '-', 1…64 characters"))
    if doc.get("name") != name:
        problems.append(FieldError("name", doc.get("name"), f"the document's name must be {name!r}"))
    parser = modbus.parse_profile if source == "modbus" else dlt645.parse_profile
    try:
        parser(doc, f"{source} profile {name}")
    except ValidationReport as exc:
        problems += exc.problems
    return problems


def put(
    conn: psycopg.Connection[Any], source: str, name: str, doc: dict[str, Any], *, by: str, reason: str
) -> ProfileVersion:
    """Store a new version of a profile after the source's own parser accepted it; ConfigRejected lists every problem."""
    _check_source(source)
    doc = as_json_values(doc, "doc")
    problems = _doc_problems(source, name, doc) + who_problems(by, reason)
    if problems:
        raise ConfigRejected(f"{source} profile {name!r}", problems)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext('fleet_profiles:' || %s || ':' || %s))", (source, name)
        )
        r = cur.execute(
            f"""INSERT INTO fleet_profiles (source, name, version, doc, sha256, created_by, reason)
                SELECT %s, %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s
                FROM fleet_profiles WHERE source = %s AND name = %s
                RETURNING {_COLS}""",
            (source, name, Json(doc), _sha(doc), by, reason, source, name),
        ).fetchone()
    assert r is not None
    return _row(r)


def resolve(conn: psycopg.Connection[Any], config: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{source: {name: document}} of the library's newest version of every profile `config` names
    (a name the library does not hold is left out: the validator reports it)."""
    wanted = used_profiles(config)
    library = {(p.source, p.name): p for p in list(conn)}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for source, names in wanted.items():
        found = {n: library[(source, n)].doc for n in sorted(names) if (source, n) in library}
        if found:
            out[source] = found
    return out


def not_builtin(profiles: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The profiles that differ from the gateway's built-in ones (the validator knows those already)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for source, docs in profiles.items():
        shipped = _builtin(source) if source in SOURCES else {}
        differ = {n: d for n, d in docs.items() if n not in shipped or shipped[n].doc != d}
        if differ:
            out[source] = differ
    return out
