"""A park file against the registry: what it adds, updates and moves, then one transaction that applies it.

A *move* re-parents an entry that already exists: a cluster or firm to another park, a workshop or
gateway to another firm. A firm's or gateway's readings follow it, so a move is refused unless the
caller allows it; an allowed move is recorded in `registry_audit` (migration 0020).
Devices are keyed by (gateway, device id): a device never moves on its own, only with its gateway.
"""

from __future__ import annotations

import getpass
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from parkpulse.errors import FieldError, StoreError, ValidationReport

if TYPE_CHECKING:  # psycopg is imported where it is used: the gateway reads park files without it
    import psycopg
    from psycopg import sql

    from parkpulse.registry import ParkFile

__all__ = ["Change", "ImportPlan", "MovesRefused", "apply_import", "plan_import"]

Action = Literal["add", "update", "move", "unchanged"]
_LOCK = 7_720_020  # serialises registry imports (pg_advisory_xact_lock)


@dataclass(frozen=True)
class _Table:
    entity: str
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    parent: str | None = None  # the column whose change re-parents an existing entry
    park_sql: str = "t.park_id"  # the park an existing row `t` is in now
    real: frozenset[str] = frozenset()  # float4 columns: compared at float4 precision
    numeric: frozenset[str] = frozenset()

    @cached_property
    def upsert(self) -> sql.Composed:
        from psycopg import sql

        cols = (*self.key, *self.columns)
        return sql.SQL(
            "INSERT INTO {t} ({cols}) VALUES ({ph}) ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now()"
        ).format(
            t=sql.Identifier(self.name),
            cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
            ph=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            key=sql.SQL(", ").join(map(sql.Identifier, self.key)),
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in self.columns
            ),
        )


_VIA_FIRM = "(SELECT f.park_id FROM firms f WHERE f.firm_id = t.firm_id)"
PARKS = _Table(
    "park",
    "parks",
    ("park_id",),
    (
        "name",
        "name_en",
        "province",
        "city",
        "timezone",
        "land_mu",
        "special_limits_apply",
        "special_limits_basis",
        "special_limits_since",
    ),
    numeric=frozenset({"land_mu"}),
)
CLUSTERS = _Table(
    "cluster", "clusters", ("cluster_id",), ("park_id", "name", "name_en", "industry"), "park_id"
)
FIRMS = _Table(
    "firm",
    "firms",
    ("firm_id",),
    (
        "park_id",
        "cluster_id",
        "name",
        "name_en",
        "credit_code",
        "land_mu",
        "industry",
        "size_class",
        "production_start",
    ),
    "park_id",
    numeric=frozenset({"land_mu"}),
)
WORKSHOPS = _Table(
    "workshop",
    "workshops",
    ("workshop_id",),
    ("firm_id", "name", "name_en", "smart_declared"),
    "firm_id",
    _VIA_FIRM,
)
GATEWAYS = _Table("gateway", "gateways", ("gateway_id",), ("firm_id", "name"), "firm_id", _VIA_FIRM)
DEVICES = _Table(
    "device",
    "devices",
    ("gateway_id", "device_id"),
    (
        "workshop_id",
        "name",
        "kind",
        "profile",
        "meter_level",
        "carrier",
        "measures",
        "source_type",
        "poll_interval_s",
        "rated_power_kw",
        "enabled",
        "fuel",
        "age_class",
    ),
    park_sql="(SELECT f.park_id FROM gateways g JOIN firms f ON f.firm_id = g.firm_id WHERE g.gateway_id = t.gateway_id)",
    real=frozenset({"poll_interval_s", "rated_power_kw"}),
)
TABLES = (PARKS, CLUSTERS, FIRMS, WORKSHOPS, GATEWAYS, DEVICES)

# What a moved entry takes along: label → SQL counting it, given the entry's id.
_CARRIED: dict[str, list[tuple[str, str]]] = {
    "cluster": [("firms", "SELECT count(*) FROM firms WHERE cluster_id = %s")],
    "firm": [
        ("gateways", "SELECT count(*) FROM gateways WHERE firm_id = %s"),
        (
            "devices",
            "SELECT count(*) FROM devices d JOIN gateways g ON g.gateway_id = d.gateway_id WHERE g.firm_id = %s",
        ),
        (
            "readings",
            "SELECT count(*) FROM readings r JOIN devices d ON d.device_pk = r.device_pk "
            "JOIN gateways g ON g.gateway_id = d.gateway_id WHERE g.firm_id = %s",
        ),
    ],
    "workshop": [("devices", "SELECT count(*) FROM devices WHERE workshop_id = %s")],
    "gateway": [
        ("devices", "SELECT count(*) FROM devices WHERE gateway_id = %s"),
        (
            "readings",
            "SELECT count(*) FROM readings r JOIN devices d ON d.device_pk = r.device_pk WHERE d.gateway_id = %s",
        ),
    ],
}


@dataclass(frozen=True)
class _Entry:
    table: _Table
    at: str  # where it is in the file, e.g. firms[0].gateways[1]
    key: tuple[str, ...]
    values: dict[str, object]
    park: str  # the park the file puts it in


@dataclass(frozen=True)
class Change:
    """One entry of the file against the registry. `diff` maps a column to (before, after)."""

    action: Action
    entity: str
    id: str
    at: str
    diff: dict[str, tuple[object, object]] = field(default_factory=dict)
    from_park: str | None = None
    to_park: str | None = None
    from_parent: str | None = None
    to_parent: str | None = None
    carried: dict[str, int] = field(default_factory=dict)

    def headline(self) -> str:
        """One line: `firm f1: park a → park b (1 gateway, 3 devices, 100,039 readings)`."""
        if self.action == "add":
            return f"{self.entity} {self.id}" + ("" if self.entity == "park" else f" (park {self.to_park})")
        if self.action != "move":
            return f"{self.entity} {self.id}"
        if self.entity in ("cluster", "firm"):
            where = f"park {self.from_park} → park {self.to_park}"
        else:
            where = f"firm {self.from_parent} (park {self.from_park}) → firm {self.to_parent} (park {self.to_park})"
        return f"{self.entity} {self.id}: {where}" + (
            f" ({_carried_text(self.carried)})" if self.carried else ""
        )

    def lines(self) -> list[str]:
        """The headline and one `column: before → after` line per changed column (added entries: none)."""
        if self.action == "add":
            return [self.headline()]
        return [self.headline(), *(f"    {c}: {_show(b)} → {_show(a)}" for c, (b, a) in self.diff.items())]


@dataclass(frozen=True)
class ImportPlan:
    park_id: str
    changes: list[Change]
    counts: dict[str, int]  # entries of the file per table (parks, clusters, firms, …)

    def of(self, action: Action) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    def summary(self, *, done: bool = False) -> str:
        """`2 to add, 1 to update, 0 to move, 9 unchanged`, or with `done` `2 added, 1 updated, …`."""
        n = {a: len(self.of(a)) for a in ("add", "update", "move", "unchanged")}
        words = ("added", "updated", "moved") if done else ("to add", "to update", "to move")
        return f"{n['add']} {words[0]}, {n['update']} {words[1]}, {n['move']} {words[2]}, {n['unchanged']} unchanged"


class MovesRefused(ValidationReport):
    """The file re-parents existing entries and moves were not allowed; nothing was written."""

    def __init__(self, source: str, moves: list[Change]) -> None:
        self.moves = moves
        super().__init__(
            source,
            [
                FieldError(
                    f"{m.at}.id",
                    m.id,
                    f"re-parenting refused, {_refusal(m)}; nothing was written "
                    "(import with --move to move it and its history)",
                )
                for m in moves
            ],
        )


def _refusal(m: Change) -> str:
    carried = f", with {_carried_text(m.carried)}" if m.carried else ""
    if m.entity in ("cluster", "firm"):
        return (
            f"{m.entity} {m.id} is in park {m.from_park} and this file puts it in park {m.to_park}{carried}"
        )
    return (
        f"{m.entity} {m.id} belongs to firm {m.from_parent} in park {m.from_park} and this file puts it under "
        f"firm {m.to_parent} in park {m.to_park}{carried}"
    )


def _carried_text(carried: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {what[:-1] if n == 1 else what}" for what, n in carried.items())


def _show(v: object) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def _entries(pf: ParkFile) -> list[_Entry]:
    """Every entry of the file, with its path in the file (written table by table, in the order of TABLES)."""
    p = pf.park
    sel = p.special_emission_limits
    special = {
        "special_limits_apply": sel.applies if sel else None,
        "special_limits_basis": sel.basis if sel else None,
        "special_limits_since": sel.since if sel else None,
    }
    out = [
        _Entry(
            PARKS,
            "park",
            (p.id,),
            {**{c: getattr(p, c) for c in PARKS.columns if c not in special}, **special},
            p.id,
        )
    ]
    for i, c in enumerate(pf.clusters):
        out.append(
            _Entry(
                CLUSTERS,
                f"clusters[{i}]",
                (c.id,),
                {"park_id": p.id, "name": c.name, "name_en": c.name_en, "industry": c.industry},
                p.id,
            )
        )
    for i, f in enumerate(pf.firms):
        at = f"firms[{i}]"
        out.append(
            _Entry(
                FIRMS,
                at,
                (f.id,),
                {
                    "park_id": p.id,
                    "cluster_id": f.cluster,
                    "name": f.name,
                    "name_en": f.name_en,
                    "credit_code": f.credit_code,
                    "land_mu": f.land_mu,
                    "industry": f.industry,
                    "size_class": f.size_class,
                    "production_start": f.production_start,
                },
                p.id,
            )
        )
        for j, w in enumerate(f.workshops):
            out.append(
                _Entry(
                    WORKSHOPS,
                    f"{at}.workshops[{j}]",
                    (w.id,),
                    {
                        "firm_id": f.id,
                        "name": w.name,
                        "name_en": w.name_en,
                        "smart_declared": w.smart_declared,
                    },
                    p.id,
                )
            )
        for j, g in enumerate(f.gateways):
            out.append(
                _Entry(GATEWAYS, f"{at}.gateways[{j}]", (g.id,), {"firm_id": f.id, "name": g.name}, p.id)
            )
            for k, d in enumerate(g.devices):
                values = {c: getattr(d, c) for c in DEVICES.columns if c != "workshop_id"}
                out.append(
                    _Entry(
                        DEVICES,
                        f"{at}.gateways[{j}].devices[{k}]",
                        (g.id, d.id),
                        {"workshop_id": d.workshop, **values},
                        p.id,
                    )
                )
    return out


def _current(
    conn: psycopg.Connection, t: _Table, keys: list[tuple[str, ...]]
) -> dict[tuple[str, ...], tuple[dict[str, object], str | None]]:
    """The stored rows for these keys: key → (columns, the park the row is in now)."""
    from psycopg import sql

    if not keys:
        return {}
    q = sql.SQL(
        "SELECT {key}, {cols}, {park} FROM {t} t WHERE ({key}) IN (SELECT * FROM unnest({arrays}))"
    ).format(
        key=sql.SQL(", ").join(sql.Identifier("t", k) for k in t.key),
        cols=sql.SQL(", ").join(sql.Identifier("t", c) for c in t.columns),
        park=sql.SQL(t.park_sql),  # a constant of this module
        t=sql.Identifier(t.name),
        arrays=sql.SQL(", ").join(sql.SQL("{}::text[]").format(sql.Placeholder()) for _ in t.key),
    )
    params = [list(col) for col in zip(*keys, strict=True)]
    nk = len(t.key)
    out: dict[tuple[str, ...], tuple[dict[str, object], str | None]] = {}
    for row in conn.execute(q, params):
        out[tuple(row[:nk])] = (dict(zip(t.columns, row[nk:-1], strict=True)), row[-1])
    return out


def _same(t: _Table, column: str, before: object, after: object) -> bool:
    """Equal as stored: float4 and numeric columns compare at the precision the database keeps."""
    if before is None or after is None:
        return before is None and after is None
    if column in t.real and isinstance(after, float | int) and isinstance(before, float | int):
        return _float4(before) == _float4(after)  # psycopg reads real as text: compare at float4 precision
    if column in t.numeric and isinstance(after, float | int) and isinstance(before, Decimal):
        return before == Decimal(repr(float(after))) or before == Decimal(f"{float(after):.15g}")
    return before == after


def _float4(v: float) -> float:
    return float(struct.unpack("f", struct.pack("f", v))[0])


def _count(conn: psycopg.Connection, query: str, ident: str) -> int:
    row = conn.execute(query, (ident,)).fetchone()
    assert row is not None  # a count(*) always returns one row
    return int(row[0])


def _compare(
    conn: psycopg.Connection, e: _Entry, stored: tuple[dict[str, object], str | None] | None
) -> Change:
    t, ident = e.table, "/".join(e.key)
    if stored is None:
        return Change(
            "add", t.entity, ident, e.at, {c: (None, v) for c, v in e.values.items()}, to_park=e.park
        )
    before, park_now = stored
    diff = {c: (before[c], v) for c, v in e.values.items() if not _same(t, c, before[c], v)}
    if t.parent and t.parent in diff:
        old_parent, new_parent = diff[t.parent]
        carried = {what: _count(conn, q, ident) for what, q in _CARRIED[t.entity]}
        return Change(
            "move", t.entity, ident, e.at, diff, park_now, e.park, str(old_parent), str(new_parent), carried
        )
    return Change("update" if diff else "unchanged", t.entity, ident, e.at, diff, park_now, e.park)


def plan_import(conn: psycopg.Connection, pf: ParkFile) -> ImportPlan:
    """What importing `pf` would add, update and move; reads only."""
    entries = _entries(pf)
    changes: list[Change] = []
    for t in TABLES:
        mine = [e for e in entries if e.table is t]
        stored = _current(conn, t, [e.key for e in mine])
        changes += [_compare(conn, e, stored.get(e.key)) for e in mine]
    counts = {t.name: sum(1 for e in entries if e.table is t) for t in TABLES}
    return ImportPlan(pf.park.id, changes, counts)


def apply_import(
    conn: psycopg.Connection, pf: ParkFile, *, move: bool = False, source: str | None = None
) -> ImportPlan:
    """Plan and write `pf` in one transaction. Moves raise MovesRefused (nothing written) unless `move`;
    allowed moves are recorded in registry_audit."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        plan = plan_import(conn, pf)
        moves = plan.of("move")
        if moves and not move:
            raise MovesRefused(source or f"park {pf.park.id}", moves)
        entries = _entries(pf)
        with conn.cursor() as cur:
            for t in TABLES:
                rows = [(*e.key, *(e.values[c] for c in t.columns)) for e in entries if e.table is t]
                if rows:
                    cur.executemany(t.upsert, rows)
        if moves:
            _audit(conn, moves, source)
    return plan


def _audit(conn: psycopg.Connection, moves: Iterable[Change], source: str | None) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    try:
        user: str | None = getpass.getuser()
    except Exception:  # no user name in this environment (getpass raises several kinds)
        user = None
    try:
        for m in moves:
            conn.execute(
                """INSERT INTO registry_audit (action, entity, entity_id, from_park_id, to_park_id, from_parent,
                                               to_parent, diff, carried, source, os_user)
                   VALUES ('move', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    m.entity,
                    m.id,
                    m.from_park,
                    m.to_park,
                    m.from_parent,
                    m.to_parent,
                    Jsonb({c: [b, a] for c, (b, a) in m.diff.items()}, dumps=_dumps),
                    Jsonb(m.carried),
                    source,
                    user,
                ),
            )
    except psycopg.errors.UndefinedTable:
        raise StoreError(
            "registry_audit is missing: run `parkpulse db migrate` before moving entries"
        ) from None


def _dumps(obj: object) -> str:
    return json.dumps(
        obj, ensure_ascii=False, default=lambda v: float(v) if isinstance(v, Decimal) else str(v)
    )
