"""Copy the emission limits the engine runs with into the database (`emission_limits`, read through
`v_emission_limits`), so Grafana and anyone else show exactly the figures the alerts use, with
their sources. One transaction: upsert every row of the file, delete the rows it no longer has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from alerts._ruleset import EmissionParams, RuleSet
from parkpulse.catalogue import load_catalogue
from parkpulse.errors import StoreError

__all__ = ["LimitRow", "SyncResult", "limit_rows", "sync_limits", "sync_limits_async"]

REFERENCE_ID = "reference-o2"


@dataclass(frozen=True)
class LimitRow:
    """One figure of the limits file as it is stored (key: entry, limit_id, source_type, metric)."""

    entry: str  # limit_set | override | reference_o2
    limit_id: str  # limit set / override id; 'reference-o2' for a reference-oxygen row
    source_type: str
    metric: str  # pollutant metric of the catalogue, or 'o2_pct' for a reference-oxygen row
    pollutant: str | None
    limit_mg_m3: float | None
    reference_o2_pct: float | None
    parks: tuple[str, ...] | None  # where it applies (None = every park)
    rule_ids: tuple[str, ...]  # enabled emission rules that apply it (empty: shipped but not switched on)
    min_valid_minutes: int | None  # HJ 75/76 valid-hour threshold of those rules (the strictest)
    source: str
    standard: str | None
    clause: str | None
    edition: str | None
    verified: bool
    note: str | None
    reference_o2_source: str | None
    limit_table: str | None = None  # "Table 1" … for a limit set's figures
    applies_when: str | None = None  # when the figure applies to a stack
    cities: tuple[str, ...] | None = None  # an override's city scope

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.entry, self.limit_id, self.source_type, self.metric)


@dataclass(frozen=True)
class SyncResult:
    rows: int  # rows the file has (inserted or updated)
    inserted: int
    deleted: int  # stale rows removed


def _union_parks(parks: list[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    if not parks or any(p is None for p in parks):
        return None
    return tuple(sorted({x for p in parks if p is not None for x in p}))


def _scope(override_parks: list[str] | None, rule_parks: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if override_parks is None:
        return rule_parks
    if rule_parks is None:
        return tuple(sorted(override_parks))
    return tuple(sorted(set(override_parks) & set(rule_parks)))


def limit_rows(rs: RuleSet) -> list[LimitRow]:
    """Every limit and reference-oxygen figure of the rule set's limits file, with its source and
    the enabled emission rules that apply it. An override without `source_types` is listed for
    every source type the file knows."""
    lim = rs.limits
    pollutant_of = {m.name: m.pollutant for m in load_catalogue().metrics}
    pollutant_of.update({x.metric: x.pollutant for x in lim.extra_pollutants.values()})
    emission = [r for r in rs.rules if isinstance(r.params, EmissionParams)]
    known_types = sorted(set(lim.reference_o2) | {st for ls in lim.limit_sets.values() for st in ls.limits})

    def users(limit_id: str, metric: str | None) -> list[Any]:
        out = []
        for r in emission:
            p: EmissionParams = r.params
            if metric is not None and metric not in p.pollutants:
                continue
            tables = (p.limit_tables.existing, p.limit_tables.new, p.limit_tables.special)
            if limit_id == REFERENCE_ID or limit_id in tables or limit_id in p.overrides:
                out.append(r)
        return out

    def valid_minutes(rules: list[Any]) -> int | None:
        return max((r.params.min_valid_minutes for r in rules), default=None)

    rows: list[LimitRow] = []
    for st in sorted(lim.reference_o2):
        o2, _ = lim.reference_o2[st]
        doc = lim.reference_o2_docs.get(st)
        rules = users(REFERENCE_ID, None)
        rows.append(
            LimitRow(
                "reference_o2",
                REFERENCE_ID,
                st,
                "o2_pct",
                None,
                None,
                o2,
                _union_parks([r.parks for r in rules]),
                tuple(r.id for r in rules),
                valid_minutes(rules),
                lim.reference_o2[st][1],
                doc.standard if doc else None,
                doc.clause if doc else None,
                doc.edition if doc else None,
                doc.verified if doc else False,
                doc.note if doc else None,
                lim.reference_o2[st][1],
            )
        )
    for ls in lim.limit_sets.values():
        when = _applies_when(rs, ls.applies_to)
        for st, per in sorted(ls.limits.items()):
            for metric, value in sorted(per.items()):
                rules = users(ls.id, metric)
                ref = lim.reference_o2.get(st)
                rows.append(
                    LimitRow(
                        "limit_set",
                        ls.id,
                        st,
                        metric,
                        pollutant_of.get(metric),
                        value,
                        ref[0] if ref else None,
                        _union_parks([r.parks for r in rules]),
                        tuple(r.id for r in rules),
                        valid_minutes(rules),
                        ls.source,
                        ls.standard,
                        ls.clause,
                        ls.edition,
                        ls.verified,
                        ls.note,
                        ref[1] if ref else None,
                        ls.table,
                        when,
                    )
                )
    for ov in lim.overrides.values():
        for st in sorted(ov.source_types) if ov.source_types is not None else known_types:
            for metric, value in sorted(ov.limits.items()):
                rules = users(ov.id, metric)
                ref = lim.reference_o2.get(st)
                rows.append(
                    LimitRow(
                        "override",
                        ov.id,
                        st,
                        metric,
                        pollutant_of.get(metric),
                        value,
                        ref[0] if ref else None,
                        _scope(ov.parks, _union_parks([r.parks for r in rules])),
                        tuple(r.id for r in rules),
                        valid_minutes(rules),
                        ov.source,
                        ov.standard,
                        ov.clause,
                        ov.edition,
                        ov.verified,
                        ov.note,
                        ref[1] if ref else None,
                        None,
                        _override_when(ov.parks, ov.cities),
                        tuple(ov.cities) if ov.cities is not None else None,
                    )
                )
    return rows


def _applies_when(rs: RuleSet, role: str) -> str:
    """When a limit set's figures apply to a stack, in words, with the special-limit areas by name."""
    if role == "existing":
        return "stack age class existing (在用), or age class not registered"
    if role == "new":
        return "stack age class new (新建)"
    areas = sorted(
        {a for r in rs.rules if isinstance(r.params, EmissionParams) for a in r.params.special_areas}
    )
    listed = "; ".join(
        f"{rs.limits.areas[a].label_en} ({a}) from {rs.limits.areas[a].since}"
        for a in areas
        if a in rs.limits.areas
    )
    return "special limits apply: the park's flag (registry), or else its city in " + (
        listed or "no listed area"
    )


def _override_when(parks: list[str] | None, cities: list[str] | None) -> str:
    where = [*(f"park {p}" for p in parks or []), *(f"city {c}" for c in cities or [])]
    return (
        "local override, "
        + (" and ".join(where) if where else "every park")
        + "; the strictest applicable limit wins"
    )


_COLUMNS = (
    "entry",
    "limit_id",
    "source_type",
    "metric",
    "pollutant",
    "limit_mg_m3",
    "reference_o2_pct",
    "parks",
    "rule_ids",
    "min_valid_minutes",
    "source",
    "standard",
    "clause",
    "edition",
    "verified",
    "note",
    "reference_o2_source",
    "limits_version",
    "rule_set_version",
    "limits_file",
    "limit_table",
    "applies_when",
    "cities",
)
_KEY = ("entry", "limit_id", "source_type", "metric")
_UPSERT = (
    f"INSERT INTO emission_limits ({', '.join(_COLUMNS)}, synced_at) "
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}, now()) "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c not in _KEY)
    + ", synced_at = now() RETURNING (xmax = 0)"
)
_DELETE_STALE = (
    "DELETE FROM emission_limits e WHERE NOT EXISTS (SELECT 1 FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
    "AS k(entry, limit_id, source_type, metric) WHERE (k.entry, k.limit_id, k.source_type, k.metric) "
    "= (e.entry, e.limit_id, e.source_type, e.metric))"
)
# one sync at a time (two engines starting together); readers are not blocked
_LOCK = "LOCK TABLE emission_limits IN SHARE ROW EXCLUSIVE MODE"


def _params(rs: RuleSet, row: LimitRow) -> tuple[Any, ...]:
    return (
        row.entry,
        row.limit_id,
        row.source_type,
        row.metric,
        row.pollutant,
        row.limit_mg_m3,
        row.reference_o2_pct,
        list(row.parks) if row.parks is not None else None,
        list(row.rule_ids),
        row.min_valid_minutes,
        row.source,
        row.standard,
        row.clause,
        row.edition,
        row.verified,
        row.note,
        row.reference_o2_source,
        rs.limits.version,
        rs.version,
        rs.limits.path,
        row.limit_table,
        row.applies_when,
        list(row.cities) if row.cities is not None else None,
    )


def _keys(rows: list[LimitRow]) -> tuple[list[str], ...]:
    return tuple([r.key[i] for r in rows] for i in range(4))


def _missing_table(exc: psycopg.errors.UndefinedTable) -> StoreError:
    return StoreError(
        f"alerts: the database lacks the emission_limits table ({exc.diag.message_primary}); run `parkpulse db migrate`"
    )


def sync_limits(conn: psycopg.Connection, rs: RuleSet) -> SyncResult:
    """Write the rule set's limits into `emission_limits` in one transaction (idempotent)."""
    rows = limit_rows(rs)
    inserted = 0
    try:
        with conn.transaction():
            conn.execute(_LOCK)
            for row in rows:
                res = conn.execute(_UPSERT, _params(rs, row)).fetchone()
                inserted += bool(res and res[0])
            deleted = conn.execute(_DELETE_STALE, _keys(rows)).rowcount
    except psycopg.errors.UndefinedTable as exc:
        raise _missing_table(exc) from exc
    return SyncResult(len(rows), inserted, deleted)


async def sync_limits_async(conn: psycopg.AsyncConnection, rs: RuleSet) -> SyncResult:
    """The same for the engine's async connection."""
    rows = limit_rows(rs)
    inserted = 0
    try:
        async with conn.transaction():
            await conn.execute(_LOCK)
            for row in rows:
                res = await (await conn.execute(_UPSERT, _params(rs, row))).fetchone()
                inserted += bool(res and res[0])
            deleted = (await conn.execute(_DELETE_STALE, _keys(rows))).rowcount
    except psycopg.errors.UndefinedTable as exc:
        raise _missing_table(exc) from exc
    return SyncResult(len(rows), inserted, deleted)
