"""Read a park's figures for a period from the contract views: one query per section for all its
firms (the costs, the dearest section, optionally in chunks of firms: load_park_head + load_costs).

Only views are read (docs/architecture.md): v_parks, v_firms, v_devices, v_firm_energy_daily,
v_readings_1d, v_firm_kpi_year, v_park_scorecard, v_alerts, v_emission_hours, v_data_gaps,
v_gateway_status, and the costs contract's pp_firm_cost_monthly (v_firm_cost_monthly for a range). Standard-coal coefficients come from the rules results
(v_firm_kpi_year.explanation: the coefficients of the run, with its rule set and version), so a
report never loads rules/ itself and states the rule-set version it used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from reports._model import (
    AlertRow,
    CompletenessRow,
    CostRow,
    DailyRow,
    FirmInfo,
    GapRow,
    KpiRow,
    ParkInfo,
    ScoreRow,
)
from reports._period import Period
from reports.errors import ReportInputError

# A coefficient per one unit, applied to a quantity metered in a multiple of it.
_SCALE = {("GJ", "MJ"): 1000.0, ("MWh", "kWh"): 1000.0, ("t", "kg"): 1000.0, ("m³", "m3"): 1.0}


@dataclass
class Coefficient:
    kgce_per_unit: float  # per the coefficient's own unit
    unit: str  # the quantity unit it applies to (the part after "kgce/")
    in_total: bool


@dataclass
class ParkData:
    """Everything a park's reports need for one period, grouped by firm id."""

    park: ParkInfo
    period: Period
    now: datetime
    firms: dict[str, FirmInfo]
    daily: dict[str, list[DailyRow]] = field(default_factory=dict)
    suspect: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    kpis: dict[str, KpiRow] = field(default_factory=dict)
    coefficients: dict[str, dict[str, Coefficient]] = field(default_factory=dict)
    costs: dict[str, list[CostRow]] = field(default_factory=dict)
    alerts: dict[str, list[AlertRow]] = field(default_factory=dict)
    completeness: dict[str, list[CompletenessRow]] = field(default_factory=dict)
    gaps: dict[str, list[GapRow]] = field(default_factory=dict)
    scorecard: list[ScoreRow] = field(default_factory=list)
    scorecard_year: int | None = None

    def bounds(self) -> tuple[datetime, datetime]:
        """The period as instants: local midnights in the park's time zone."""
        tz = ZoneInfo(self.park.timezone)
        return (
            datetime.combine(self.period.start, time(), tz),
            datetime.combine(self.period.end, time(), tz),
        )


def coefficient_for(coefs: dict[str, Coefficient], carrier: str, unit: str) -> float | None:
    """kgce per one `unit` of `carrier`, or None when the results have none that fits the unit."""
    c = coefs.get(carrier)
    if c is None:
        return None
    if c.unit.casefold() == unit.casefold():
        return c.kgce_per_unit
    scale = _SCALE.get((unit, c.unit))
    return None if scale is None else c.kgce_per_unit * scale


def _coefficients(carriers: Any) -> dict[str, Coefficient]:
    out: dict[str, Coefficient] = {}
    if not isinstance(carriers, list):
        return out
    for row in carriers:
        dl = (row.get("coefficients") or {}).get("dangliang") if isinstance(row, dict) else None
        if not isinstance(dl, dict) or not isinstance(dl.get("value"), int | float):
            continue
        unit = str(dl.get("unit") or "")
        out[str(row["carrier"])] = Coefficient(
            kgce_per_unit=float(dl["value"]),
            unit=unit.split("/", 1)[1] if "/" in unit else str(row.get("unit") or ""),
            in_total=bool(row.get("in_total", True)),
        )
    return out


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def load_park(
    conn: psycopg.Connection[Any], park_id: str, period: Period, firm_id: str | None = None
) -> ParkData:
    """Read the park (or only `firm_id` of it) for the period. Unknown ids are refused by name."""
    data = load_park_head(conn, park_id, period, firm_id)
    load_costs(conn, data, list(data.firms))
    return data


def load_park_head(
    conn: psycopg.Connection[Any], park_id: str, period: Period, firm_id: str | None = None
) -> ParkData:
    """Everything of `load_park` but the costs: one query per section for all the firms read.

    The costs (pp_firm_cost_monthly: it prices every 15-minute slot of the period's months) are the
    dearest section; `load_costs` reads them for a list of firms, so a caller can read them in
    chunks and render the firms of one chunk while the next is read (reports/_stream.py)."""
    cur = conn.cursor(row_factory=dict_row)
    p = cur.execute(
        "SELECT park_id, name, name_en, timezone, land_mu FROM v_parks WHERE park_id = %s", (park_id,)
    ).fetchone()
    if p is None:
        raise ReportInputError("park", park_id, "no such park")
    park = ParkInfo(p["park_id"], p["name"], p["name_en"], p["timezone"] or "Asia/Shanghai", _f(p["land_mu"]))
    firms = {
        r["firm_id"]: FirmInfo(
            r["firm_id"], r["name"], r["name_en"], r["cluster_name"], r["industry"], _f(r["land_mu"])
        )
        for r in cur.execute(
            "SELECT firm_id, name, name_en, cluster_name, industry, land_mu FROM v_firms "
            "WHERE park_id = %s AND (%s::text IS NULL OR firm_id = %s) ORDER BY firm_id",
            (park_id, firm_id, firm_id),
        )
    }
    if firm_id is not None and firm_id not in firms:
        raise ReportInputError("firm", firm_id, f"no such firm in park {park_id!r}")
    now = cur.execute("SELECT now() AS now").fetchone()
    assert now is not None
    data = ParkData(park=park, period=period, now=now["now"], firms=firms)
    args = _args(data, list(firms))
    _energy(cur, data, args)
    _kpis(cur, data, args)
    _alerts(cur, data, args)
    _completeness(cur, data, args)
    _gaps(cur, data, args)
    if firm_id is None:
        _scorecard(cur, data, args)
    return data


def load_costs(conn: psycopg.Connection[Any], data: ParkData, firm_ids: list[str]) -> None:
    """The costs of `firm_ids` (firms of `data`) for the period, in one query, into data.costs."""
    unknown = [f for f in firm_ids if f not in data.firms]
    if unknown:
        raise ReportInputError("firm", unknown[0], f"not among the firms read for park {data.park.park_id!r}")
    for f in firm_ids:
        data.costs.pop(f, None)  # read again: replaced, not added to
    if firm_ids:
        _costs(conn.cursor(row_factory=dict_row), data, _args(data, firm_ids))


def _args(data: ParkData, firm_ids: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {
        "park": data.park.park_id,
        "firms": firm_ids,
        "start": data.period.start,
        "end": data.period.end,
        "year": data.period.year,
    }
    args["t0"], args["t1"] = data.bounds()
    return args


def find_park(conn: psycopg.Connection[Any], firm_id: str) -> str:
    row = conn.execute("SELECT park_id FROM v_firms WHERE firm_id = %s", (firm_id,)).fetchone()
    if row is None:
        raise ReportInputError("firm", firm_id, "no such firm")
    return str(row[0])


def _energy(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    for r in cur.execute(
        """SELECT firm_id, day, carrier, direction, unit, quantity, suspect FROM v_firm_energy_daily
           WHERE park_id = %(park)s AND firm_id = ANY(%(firms)s) AND day >= %(start)s AND day < %(end)s
           ORDER BY firm_id, day, carrier, direction""",
        args,
    ):
        data.daily.setdefault(r["firm_id"], []).append(
            DailyRow(r["day"], r["carrier"], r["direction"], r["unit"], float(r["quantity"] or 0.0))
        )
        if r["suspect"]:
            data.suspect.setdefault(r["firm_id"], set()).add((r["carrier"], r["direction"]))


def _kpis(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    """The period's year of the results, else the latest earlier year (the report says which)."""
    for r in cur.execute(
        """SELECT DISTINCT ON (firm_id) firm_id, year, rule_set, rule_version, energy_tce,
                  intensity_tce_per_10k_cny, intensity_change_pct, mu_tax_10k_cny, mu_added_value_10k_cny,
                  score, class, explanation -> 'energy' -> 'carriers' AS carriers
           FROM v_firm_kpi_year
           WHERE park_id = %(park)s AND firm_id = ANY(%(firms)s) AND year <= %(year)s
           ORDER BY firm_id, year DESC""",
        args,
    ):
        fid = r["firm_id"]
        data.kpis[fid] = KpiRow(
            fid,
            data.firms[fid].name,
            int(r["year"]),
            str(r["rule_set"]),
            str(r["rule_version"]),
            _f(r["energy_tce"]),
            _f(r["intensity_tce_per_10k_cny"]),
            _f(r["intensity_change_pct"]),
            _f(r["mu_tax_10k_cny"]),
            _f(r["mu_added_value_10k_cny"]),
            _f(r["score"]),
            r["class"],
        )
        data.coefficients[fid] = _coefficients(r["carriers"])


def _costs(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    for r in cur.execute(
        """SELECT firm_id, month, carrier, period, sum(quantity) AS quantity, unit, price, price_unit,
                  sum(cost_yuan) AS cost_yuan, tariff_id, tariff_version, bool_and(verified) AS verified,
                  coalesce(bool_or(register_mismatch), false) AS mismatch
           FROM pp_firm_cost_monthly(%(firms)s::text[], %(start)s::date, %(end)s::date - 1)
           WHERE park_id = %(park)s AND month >= %(start)s AND month < %(end)s
           GROUP BY firm_id, month, carrier, period, unit, price, price_unit, tariff_id, tariff_version
           ORDER BY firm_id, month, carrier, period, price""",
        args,
    ):
        tariff = None if r["tariff_id"] is None else f"{r['tariff_id']} {r['tariff_version']}"
        data.costs.setdefault(r["firm_id"], []).append(
            CostRow(
                r["month"],
                r["carrier"],
                r["period"],
                _f(r["quantity"]),
                r["unit"],
                _f(r["price"]),
                r["price_unit"],
                _f(r["cost_yuan"]),
                tariff,
                r["verified"],
                bool(r["mismatch"]),
            )
        )


def _alerts(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    """Emission alerts open at any time in the period, with the valid and exceeded stack-hours of
    their device and metric while open (v_emission_hours), within the period."""
    for r in cur.execute(
        """SELECT a.alert_id, a.firm_id, a.kind, a.severity, a.device_id, a.metric, a.state, a.opened_at,
                  a.resolved_at, a.value, a.limit_value, a.unit,
                  coalesce(h.valid, 0) AS valid_hours, coalesce(h.exceeded, 0) AS exceeded_hours
           FROM v_alerts a
           LEFT JOIN LATERAL (
               SELECT count(*) FILTER (WHERE e.valid)::int AS valid,
                      count(*) FILTER (WHERE e.valid AND e.exceeded)::int AS exceeded
               FROM v_emission_hours e
               WHERE e.gateway_id = a.gateway_id AND e.device_id = a.device_id AND e.metric = a.metric
                 AND e.hour >= greatest(%(t0)s, date_trunc('hour', a.opened_at))
                 AND e.hour < least(%(t1)s, coalesce(a.resolved_at, %(t1)s))
           ) h ON true
           WHERE a.park_id = %(park)s AND a.firm_id = ANY(%(firms)s) AND a.kind = 'emission'
             AND a.opened_at < %(t1)s AND (a.resolved_at IS NULL OR a.resolved_at >= %(t0)s)
           ORDER BY a.firm_id, a.opened_at, a.alert_id""",
        args,
    ):
        data.alerts.setdefault(r["firm_id"], []).append(
            AlertRow(
                int(r["alert_id"]),
                r["firm_id"],
                r["kind"],
                r["severity"],
                r["device_id"],
                r["metric"],
                r["state"],
                r["opened_at"],
                r["resolved_at"],
                _f(r["value"]),
                _f(r["limit_value"]),
                r["unit"],
                int(r["valid_hours"]),
                int(r["exceeded_hours"]),
            )
        )


def _completeness(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    """Per enabled device with a poll interval: polls expected in the part of the period that has
    passed (and, for a device silent in it, since it was registered), and polls received (the
    readings of its best-reported metric)."""
    received: dict[int, int] = defaultdict(int)
    for r in cur.execute(
        """SELECT device_pk, max(n)::bigint AS n FROM (
               SELECT device_pk, metric, sum(n) AS n FROM v_readings_1d
               WHERE park_id = %(park)s AND firm_id = ANY(%(firms)s) AND day >= %(start)s AND day < %(end)s
               GROUP BY device_pk, metric) x
           GROUP BY device_pk""",
        args,
    ):
        received[int(r["device_pk"])] = int(r["n"] or 0)
    t0, t1 = args["t0"], min(args["t1"], data.now)
    for r in cur.execute(
        """SELECT device_pk, firm_id, gateway_id, device_id, kind, poll_interval_s, registered_at
           FROM v_devices
           WHERE park_id = %(park)s AND firm_id = ANY(%(firms)s) AND enabled AND poll_interval_s > 0
           ORDER BY firm_id, gateway_id, device_id""",
        args,
    ):
        got = received.get(int(r["device_pk"]), 0)
        reg = r["registered_at"]
        # a device that reported in the period counts from its start (history imports are registered
        # after the readings they bring); a silent one from when it was registered
        start = t0 if got or reg is None else max(t0, reg)
        span = max((t1 - start).total_seconds(), 0.0)
        expected = int(span // float(r["poll_interval_s"]))
        data.completeness.setdefault(r["firm_id"], []).append(
            CompletenessRow(
                r["firm_id"],
                r["gateway_id"],
                r["device_id"],
                r["kind"],
                float(r["poll_interval_s"]),
                expected,
                got,
            )
        )


def _gaps(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    for r in cur.execute(
        """SELECT g.kind, s.firm_id, g.gateway_id, g.device_id, g.metric, g.start_ts, g.end_ts, g.count,
                  g.reason, g.reported_at
           FROM v_data_gaps g
           JOIN v_gateway_status s USING (gateway_id)
           WHERE s.park_id = %(park)s AND s.firm_id = ANY(%(firms)s)
             AND coalesce(g.start_ts, g.reported_at) < %(t1)s
             AND coalesce(g.end_ts, g.filled_at, g.reported_at) >= %(t0)s
           ORDER BY s.firm_id, coalesce(g.start_ts, g.reported_at), g.gateway_id""",
        args,
    ):
        data.gaps.setdefault(r["firm_id"], []).append(
            GapRow(
                r["kind"],
                r["firm_id"],
                r["gateway_id"],
                r["device_id"],
                r["metric"],
                r["start_ts"] or r["reported_at"],
                r["end_ts"],
                r["count"],
                r["reason"],
            )
        )


def _scorecard(cur: psycopg.Cursor[dict[str, Any]], data: ParkData, args: dict[str, Any]) -> None:
    rows = cur.execute(
        """SELECT year, indicator, value, target, unit, met FROM v_park_scorecard
           WHERE park_id = %(park)s
             AND year = (SELECT max(year) FROM v_park_scorecard WHERE park_id = %(park)s AND year <= %(year)s)
           ORDER BY indicator""",
        args,
    ).fetchall()
    data.scorecard = [
        ScoreRow(r["indicator"], _f(r["value"]), _f(r["target"]), r["unit"], r["met"]) for r in rows
    ]
    data.scorecard_year = int(rows[0]["year"]) if rows else None
