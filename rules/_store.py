"""The database side: build YearInputs from the contract views and store results.

Reads only the kernel's contract views (v_devices, v_firm_energy_daily, v_energy_daily,
v_counter_daily, v_readings_1d, v_readings_15m, v_device_last_seen) and the registry and
firm_economics tables; writes the rules result tables of migration 0200.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from parkpulse.wire import Quality
from rules._energy import CarrierAmount, kgce_per_base, to_base
from rules._evaluate import Economics, FirmRecord, YearInputs, YearResult
from rules._ruleset import RuleSet
from rules._smart import SmartTelemetry

__all__ = ["load_inputs", "period_bounds", "store_result"]


def period_bounds(year: int, month: int | None) -> tuple[date, date]:
    """[start, end) of a year or a month, as local calendar days."""
    if month is None:
        return date(year, 1, 1), date(year + 1, 1, 1)
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]) + timedelta(days=1)


def _previous(year: int, month: int | None) -> tuple[int, int | None]:
    if month is None:
        return year - 1, None
    return (year, month - 1) if month > 1 else (year - 1, 12)


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def load_inputs(
    conn: psycopg.Connection,
    rs: RuleSet,
    year: int,
    month: int | None = None,
    park: str | None = None,
    now: datetime | None = None,
) -> YearInputs:
    """Everything an evaluation of `year` (or one month of it) needs, read from the database."""
    now = now or datetime.now(UTC)
    firms: list[FirmRecord] = []
    year_end = date(year, 12, 31)
    for fid, pid, name, land, size, start, cluster, industry in conn.execute(
        """SELECT firm_id, park_id, name, land_mu, size_class, production_start, cluster_id, industry
           FROM firms WHERE %(park)s::text IS NULL OR park_id = %(park)s ORDER BY firm_id""",
        {"park": park},
    ):
        yip = None if start is None else (year_end - start).days / 365.25
        firms.append(FirmRecord(fid, pid, name, float(land), size == "above_scale", yip, cluster, industry))
    ids = [f.firm_id for f in firms]
    economics: dict[tuple[str, int], Economics] = {}
    for row in conn.execute(
        """SELECT firm_id, year, added_value_10k_cny, tax_10k_cny, revenue_10k_cny, rd_spend_10k_cny, employees,
                  pollutant_t, output_units, output_value_10k_cny, green_declared, source_file, profit_10k_cny
           FROM firm_economics WHERE year IN (%s, %s) AND firm_id = ANY(%s)""",
        (year, year - 1, ids),
    ):
        economics[(row[0], row[1])] = Economics(
            added_value=_f(row[2]),
            tax=_f(row[3]),
            revenue=_f(row[4]),
            rd_spend=_f(row[5]),
            employees=_f(row[6]),
            pollutant_t=_f(row[7]),
            output_units=_f(row[8]),
            output_value=_f(row[9]),
            green_declared=dict(row[10] or {}),
            profit=_f(row[12]),
            source=f"firm_economics ({row[11]})" if row[11] else "firm_economics",
        )
    start, end = period_bounds(year, month)
    py, pm = _previous(year, month)
    pstart, _ = period_bounds(py, pm)
    energy: dict[tuple[str, int], list[CarrierAmount]] = {}
    # boundary meters, per firm, carrier and direction; the previous period too (for the change)
    sums: dict[tuple[str, bool, str, str], tuple[float, str, int, int, int]] = {}
    # The planner underestimates the day filter on this view (an expression on the bucket) and picks
    # nested loops that take ~30 s for 1 000 firms; hash joins take ~1.5 s (bench/rules.py).
    conn.execute("SET LOCAL enable_nestloop = off")
    firm_rows = conn.execute(
        """SELECT firm_id, day >= %(start)s AS cur, carrier, direction, unit, sum(quantity), max(meters),
                  count(*) FILTER (WHERE suspect), max(worst_quality)
           FROM v_firm_energy_daily
           WHERE day >= %(pstart)s AND day < %(end)s AND (day >= %(start)s OR day < %(pend)s)
             AND firm_id = ANY(%(ids)s)
           GROUP BY 1, 2, 3, 4, 5""",
        {"start": start, "end": end, "pstart": pstart, "pend": period_bounds(py, pm)[1], "ids": ids},
    ).fetchall()
    conn.execute("RESET enable_nestloop")
    for fid, is_cur, carrier, direction, unit, qty, meters, suspect_days, worst in firm_rows:
        sums[(fid, bool(is_cur), carrier, direction or "import")] = (
            float(qty or 0.0),
            unit,
            meters,
            suspect_days,
            int(worst or 0),
        )
    by_period: dict[tuple[str, bool], list[CarrierAmount]] = {}
    for (fid, cur, carrier, direction), (qty, unit, meters, suspect, worst) in sorted(sums.items()):
        if direction != "import" or carrier not in rs.coal.carriers:
            continue
        exported = sums.get((fid, cur, carrier, "export"))
        net = qty - (exported[0] if exported else 0.0)
        label = (
            (f"{year}" if month is None else f"{year}-{month:02d}")
            if cur
            else (f"{py}" if pm is None else f"{py}-{pm:02d}")
        )
        src = f"v_firm_energy_daily {label}: {qty:.6g} {unit} imported"
        if exported:
            src += f" - {exported[0]:.6g} {unit} exported (GB/T 2589: energy delivered out is deducted)"
        src += f", {meters} boundary meter(s)"
        if suspect:
            src += f", {suspect} day(s) with a suspect counter step (clamped to 0)"
        if worst:
            src += f", worst reading quality {worst} ({_quality_name(worst)})"
        by_period.setdefault((fid, cur), []).append(CarrierAmount(carrier, net, unit, src))
    for (fid, cur), amounts in by_period.items():
        if cur:
            energy[(fid, year)] = amounts
        elif month is None:  # a month run reports the month; the change vs the previous year is yearly
            energy[(fid, year - 1)] = amounts
    # water reuse (metered) for the green-factory indicator
    water: dict[str, tuple[float, float]] = {}
    reused: dict[str, float] = {}
    reuse_pks = [
        r[0]
        for r in conn.execute(
            """SELECT DISTINCT device_pk FROM v_readings_1d
           WHERE metric = 'water_reused_m3' AND day >= %s AND day < %s AND firm_id = ANY(%s)""",
            (start, end, ids),
        )
    ]
    if reuse_pks:  # device_pk filters push into the counter view's window: only these meters are computed
        for fid, q in conn.execute(
            """SELECT dv.firm_id, sum(c.increase) FROM v_counter_daily c JOIN metrics m USING (metric_id)
               JOIN v_devices dv USING (device_pk)
               WHERE c.device_pk = ANY(%s) AND m.name = 'water_reused_m3' AND c.day >= %s AND c.day < %s
               GROUP BY 1""",
            (reuse_pks, start, end),
        ):
            reused[fid] = float(q or 0.0)
    for fid, r in reused.items():
        fresh = sum(
            to_base(rs, a.carrier, a.quantity, a.unit)[0]
            for a in energy.get((fid, year), [])
            if a.carrier == "water"
        )
        water[fid] = (r, fresh)
    smart_firms, smart_ws = _smart_telemetry(conn, rs, firms, year, month, now, by_period)
    return YearInputs(
        year=year,
        firms=firms,
        economics=economics,
        energy=energy,
        water_reuse=water,
        smart_firms=smart_firms,
        smart_workshops=smart_ws,
        month=month,
        telemetry=True,
    )


@dataclass(frozen=True)
class _Period:
    """The evaluated period and the previous one, as local calendar days of the store."""

    year: int
    prev_year: int
    start: date
    end: date
    pstart: date
    pend: date
    tz: str
    today: date

    @property
    def current(self) -> bool:
        return self.start <= self.today < self.end


_Device = tuple[str, str | None, str]  # firm, workshop, kind


def _read_devices(
    conn: psycopg.Connection, ids: list[str]
) -> tuple[dict[int, _Device], list[int], dict[int, tuple[bool, datetime]]]:
    """The firms' devices, their workshop sub-meters (level >= 2) and (enabled now, registered at) of each."""
    devices: dict[int, _Device] = {}
    sub_meters: list[int] = []
    in_service: dict[int, tuple[bool, datetime]] = {}
    for pk, fid, ws, kind, level, enabled, reg in conn.execute(
        "SELECT device_pk, firm_id, workshop_id, kind, meter_level, enabled, registered_at FROM v_devices "
        "WHERE firm_id = ANY(%s)",
        (ids,),
    ):
        devices[pk] = (fid, ws, kind)
        in_service[pk] = (bool(enabled), reg)
        if ws is not None and kind == "meter" and (level or 1) >= 2:
            sub_meters.append(pk)
    return devices, sub_meters, in_service


def _reporting(
    conn: psycopg.Connection, ids: list[str], p: _Period, window: float
) -> tuple[set[int], dict[int, tuple[int, int]]]:
    """Networked devices (heard within the online window now; in a closed period: reported in it) and
    each device's (readings, good readings) in the period."""
    networked: set[int] = set()
    if p.current:
        for (pk,) in conn.execute(
            "SELECT device_pk FROM v_device_last_seen WHERE firm_id = ANY(%s) AND silent_s <= %s",
            (ids, window),
        ):
            networked.add(pk)
    n_by: dict[int, tuple[int, int]] = {}
    for pk, n, good in conn.execute(
        """SELECT device_pk, sum(n), sum(n_good) FROM v_readings_1d
           WHERE day >= %s AND day < %s AND firm_id = ANY(%s) GROUP BY 1""",
        (p.start, p.end, ids),
    ):
        n_by[pk] = (int(n or 0), int(good or 0))
        if not p.current and (n or 0) > 0:
            networked.add(pk)
    return networked, n_by


def _drop_out_of_service(
    devices: dict[int, _Device],
    in_service: dict[int, tuple[bool, datetime]],
    n_by: dict[int, tuple[int, int]],
    p: _Period,
) -> None:
    """Keep the devices of the period. Current (or future) period: the enabled ones. A closed period: the
    devices in service then — every device that reported in it (also one disabled since, e.g. a history
    import channel), and the silent ones that were registered before it ended and are still enabled (a
    device registered later was not installed yet; a disabled one that never reported in it was out of
    service, when exactly is not recorded)."""
    period_end = datetime.combine(p.end, datetime.min.time(), ZoneInfo(p.tz))
    for pk, (enabled, reg) in in_service.items():
        reported = n_by.get(pk, (0, 0))[0] > 0
        keep = enabled if p.current or p.start > p.today else (reported or (enabled and reg < period_end))
        if not keep:
            del devices[pk]


def _line_figures(
    conn: psycopg.Connection, lines: list[int], p: _Period
) -> tuple[dict[int, tuple[int, int, float | None]], dict[tuple[int, str, bool], float]]:
    """Per production line: (planned, running 15-minute buckets, ideal rate) in the period, and its good and
    reject counts per (line, metric, this period?)."""
    state: dict[int, tuple[int, int, float | None]] = {}
    counts: dict[tuple[int, str, bool], float] = defaultdict(float)
    if not lines:
        return state, counts
    for pk, planned, running, ideal in conn.execute(
        """SELECT device_pk,
                  count(*) FILTER (WHERE metric = 'machine_state' AND last NOT IN (0, 4)),
                  count(*) FILTER (WHERE metric = 'machine_state' AND last = 2),
                  avg(avg) FILTER (WHERE metric = 'ideal_rate_pcs_h')
           FROM v_readings_15m
           WHERE device_pk = ANY(%s) AND metric IN ('machine_state', 'ideal_rate_pcs_h')
             AND bucket >= (%s::date::timestamp AT TIME ZONE %s) AND bucket < (%s::date::timestamp AT TIME ZONE %s)
           GROUP BY 1""",
        (lines, p.start, p.tz, p.end, p.tz),
    ):
        state[pk] = (int(planned), int(running), _f(ideal))
    for pk, metric, cur, inc in conn.execute(
        """SELECT c.device_pk, m.name, c.day >= %(start)s, sum(c.increase)
           FROM v_counter_daily c JOIN metrics m USING (metric_id)
           WHERE c.device_pk = ANY(%(lines)s) AND m.name IN ('good_count', 'reject_count')
             AND c.day >= %(pstart)s AND c.day < %(end)s AND (c.day >= %(start)s OR c.day < %(pend)s)
           GROUP BY 1, 2, 3""",
        {"lines": lines, "start": p.start, "end": p.end, "pstart": p.pstart, "pend": p.pend},
    ):
        counts[(pk, metric, bool(cur))] += float(inc or 0.0)
    return state, counts


def _workshop_kgce(
    conn: psycopg.Connection, rs: RuleSet, sub_meters: list[int], p: _Period
) -> dict[tuple[str, bool], float]:
    """Workshop energy from the workshops' sub-meters (kgce 当量值), this and the previous period; the
    device_pk filter pushes into the counter view's window, so only these meters are computed."""
    ws_kgce: dict[tuple[str, bool], float] = defaultdict(float)
    if not sub_meters:
        return ws_kgce
    for ws, carrier, unit, cur, qty in conn.execute(
        """SELECT workshop_id, carrier, unit, day >= %(start)s, sum(quantity)
           FROM v_energy_daily
           WHERE device_pk = ANY(%(pks)s) AND direction = 'import'
             AND day >= %(pstart)s AND day < %(end)s AND (day >= %(start)s OR day < %(pend)s)
           GROUP BY 1, 2, 3, 4""",
        {"pks": sub_meters, "start": p.start, "end": p.end, "pstart": p.pstart, "pend": p.pend},
    ):
        if carrier not in rs.coal.carriers or not rs.coal.carriers[carrier].in_total:
            continue
        base, _ = to_base(rs, carrier, float(qty or 0.0), unit)
        ws_kgce[(ws, bool(cur))] += base * kgce_per_base(rs, carrier, p.year if cur else p.prev_year)[0]
    return ws_kgce


def _firm_kgce(
    rs: RuleSet, firm_energy: dict[tuple[str, bool], list[CarrierAmount]], p: _Period
) -> dict[tuple[str, bool], float]:
    """Firm energy (kgce 当量值) from the boundary meters' amounts, this and the previous period."""
    firm_kgce: dict[tuple[str, bool], float] = defaultdict(float)
    for (fid, cur), amounts in firm_energy.items():
        for a in amounts:
            if a.carrier in rs.coal.carriers and rs.coal.carriers[a.carrier].in_total:
                base, _ = to_base(rs, a.carrier, a.quantity, a.unit)
                firm_kgce[(fid, cur)] += (
                    base * kgce_per_base(rs, a.carrier, p.year if cur else p.prev_year)[0]
                )
    return firm_kgce


def _ideal_rate(state: dict[int, tuple[int, int, float | None]], lines: list[int]) -> float | None:
    """The workshop's ideal rate per running line-hour: the lines' rates weighted by running time."""
    num = den = 0.0
    for pk in lines:
        ideal = state[pk][2]
        if ideal is not None:
            num += ideal * max(state[pk][1], 1)
            den += max(state[pk][1], 1)
    return num / den if den else None


@dataclass
class _TelemetryFacts:
    """What was read for the period; `telemetry` sums it over one firm's or one workshop's devices."""

    park_of: dict[str, str]
    declared: dict[str, bool]
    devices: dict[int, _Device]
    networked: set[int]
    n_by: dict[int, tuple[int, int]]
    state: dict[int, tuple[int, int, float | None]]
    counts: dict[tuple[int, str, bool], float]
    ws_kgce: dict[tuple[str, bool], float]
    firm_kgce: dict[tuple[str, bool], float]

    def telemetry(self, fid: str, ws: str | None, pks: list[int]) -> SmartTelemetry:
        t = SmartTelemetry(
            self.park_of[fid], fid, ws, smart_declared=bool(self.declared.get(ws, False)) if ws else False
        )
        t.devices_registered = len(pks)
        t.devices_networked = sum(1 for pk in pks if pk in self.networked)
        t.readings_n = sum(self.n_by.get(pk, (0, 0))[0] for pk in pks)
        t.readings_good = sum(self.n_by.get(pk, (0, 0))[1] for pk in pks)
        lp = [pk for pk in pks if pk in self.state]
        line_pks = [pk for pk in pks if self.devices[pk][2] == "line"]
        t.lines = len(line_pks)
        if lp:
            t.planned_buckets = sum(self.state[pk][0] for pk in lp)
            t.running_buckets = sum(self.state[pk][1] for pk in lp)
            t.ideal_rate_pcs_h = _ideal_rate(self.state, lp)
        if line_pks:
            t.good = sum(self.counts.get((pk, "good_count", True), 0.0) for pk in line_pks)
            t.reject = sum(self.counts.get((pk, "reject_count", True), 0.0) for pk in line_pks)
            t.prev_good = sum(self.counts.get((pk, "good_count", False), 0.0) for pk in line_pks) or None
        key = ws if ws is not None else fid
        src = self.ws_kgce if ws is not None else self.firm_kgce
        t.energy_kgce = src.get((key, True))
        t.prev_energy_kgce = src.get((key, False))
        return t


def _period(conn: psycopg.Connection, year: int, month: int | None, now: datetime) -> _Period:
    start, end = period_bounds(year, month)
    py, pm = _previous(year, month)
    pstart, pend = period_bounds(py, pm)
    # local calendar days of the store (the day columns of the views use the same zone)
    tz_row = conn.execute("SELECT value FROM store_info WHERE key = 'timezone'").fetchone()
    tz = tz_row[0] if tz_row else "UTC"
    today = now.astimezone(ZoneInfo(tz)).date()
    return _Period(year, py, start, end, pstart, pend, tz, today)


def _smart_telemetry(
    conn: psycopg.Connection,
    rs: RuleSet,
    firms: list[FirmRecord],
    year: int,
    month: int | None,
    now: datetime,
    firm_energy: dict[tuple[str, bool], list[CarrierAmount]],
) -> tuple[dict[str, SmartTelemetry], dict[str, list[SmartTelemetry]]]:
    ids = [f.firm_id for f in firms]
    p = _period(conn, year, month, now)
    devices, sub_meters, in_service = _read_devices(conn, ids)
    declared = {
        w: d
        for w, d in conn.execute(
            "SELECT workshop_id, smart_declared FROM workshops WHERE firm_id = ANY(%s)", (ids,)
        )
    }
    ws_firm = {
        w: f
        for w, f in conn.execute("SELECT workshop_id, firm_id FROM workshops WHERE firm_id = ANY(%s)", (ids,))
    }
    networked, n_by = _reporting(conn, ids, p, rs.smart.online_window_s.value)
    _drop_out_of_service(devices, in_service, n_by, p)
    sub_meters = [pk for pk in sub_meters if pk in devices]
    lines = [pk for pk, (_, _, kind) in devices.items() if kind == "line"]
    state, counts = _line_figures(conn, lines, p)
    facts = _TelemetryFacts(
        park_of={f.firm_id: f.park_id for f in firms},
        declared=declared,
        devices=devices,
        networked=networked,
        n_by=n_by,
        state=state,
        counts=counts,
        ws_kgce=_workshop_kgce(conn, rs, sub_meters, p),
        firm_kgce=_firm_kgce(rs, firm_energy, p),
    )
    by_ws: dict[str, list[int]] = defaultdict(list)
    by_firm: dict[str, list[int]] = defaultdict(list)
    for pk, (fid, ws, _) in devices.items():
        by_firm[fid].append(pk)
        if ws:
            by_ws[ws].append(pk)
    smart_firms = {fid: facts.telemetry(fid, None, pks) for fid, pks in by_firm.items()}
    smart_ws: dict[str, list[SmartTelemetry]] = defaultdict(list)
    for ws in sorted(set(ws_firm)):
        smart_ws[ws_firm[ws]].append(facts.telemetry(ws_firm[ws], ws, by_ws.get(ws, [])))
    return smart_firms, dict(smart_ws)


def _j(v: object) -> Jsonb:
    return Jsonb(v)


def store_result(conn: psycopg.Connection, result: YearResult, park: str | None = None) -> int:
    """Store a result in one transaction (replacing the previous one for the same keys). Returns run_id."""
    with conn.transaction():
        # one writer at a time (rules serve and a manual rules run may overlap): no key conflicts
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('parkpulse.rules.store'))")
        row = conn.execute(
            """INSERT INTO rule_runs (rule_set, rule_version, year, month, park_id, firms, summary)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING run_id""",
            (
                result.rule_set,
                result.rule_version,
                result.year,
                result.month,
                park,
                len(result.firms),
                _j({"classes": _class_counts(result), "compliance": len(result.compliance)}),
            ),
        ).fetchone()
        assert row is not None
        run_id = int(row[0])
        ids = [f.firm_id for f in result.firms]
        with conn.cursor() as cur:
            if result.month is None:
                cur.execute(
                    "DELETE FROM firm_kpi_results WHERE year = %s AND firm_id = ANY(%s)", (result.year, ids)
                )
                cur.executemany(
                    """INSERT INTO firm_kpi_results (firm_id, year, park_id, run_id, rule_set, rule_version, energy_tce,
                         energy_tce_equal_value, carbon_tco2, added_value_10k_cny, intensity_tce_per_10k_cny,
                         intensity_change_pct, mu_tax_10k_cny, mu_added_value_10k_cny, score, class, explanation, inputs)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        (
                            f.firm_id,
                            f.year,
                            f.park_id,
                            run_id,
                            result.rule_set,
                            result.rule_version,
                            f.energy_tce,
                            f.energy_tce_equal_value,
                            f.carbon_tco2,
                            f.added_value_10k_cny,
                            f.intensity_tce_per_10k_cny,
                            f.intensity_change_pct,
                            f.mu_tax_10k_cny,
                            f.mu_added_value_10k_cny,
                            f.score,
                            f.klass,
                            _j(f.explanation),
                            _j(f.inputs),
                        )
                        for f in result.firms
                    ],
                )
                parks = list(result.scorecard)
                cur.execute(
                    "DELETE FROM park_scorecard_results WHERE year = %s AND park_id = ANY(%s)",
                    (result.year, parks),
                )
                cur.executemany(
                    """INSERT INTO park_scorecard_results (park_id, year, indicator, run_id, rule_set, rule_version,
                         value, target, unit, met, source, detail)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        (
                            s.park_id,
                            s.year,
                            s.indicator,
                            run_id,
                            result.rule_set,
                            result.rule_version,
                            s.value,
                            s.target,
                            s.unit,
                            s.met,
                            s.source,
                            _j(s.detail),
                        )
                        for rows in result.scorecard.values()
                        for s in rows
                    ],
                )
            else:
                cur.execute(
                    "DELETE FROM firm_energy_month_results WHERE year = %s AND month = %s AND firm_id = ANY(%s)",
                    (result.year, result.month, ids),
                )
                cur.executemany(
                    """INSERT INTO firm_energy_month_results (firm_id, year, month, park_id, run_id, rule_set,
                         rule_version, energy_tce, energy_tce_equal_value, carbon_tco2, explanation)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        (
                            f.firm_id,
                            f.year,
                            result.month,
                            f.park_id,
                            run_id,
                            result.rule_set,
                            result.rule_version,
                            f.energy_tce,
                            f.energy_tce_equal_value,
                            f.carbon_tco2,
                            _j(f.explanation.get("energy")),
                        )
                        for f in result.firms
                    ],
                )
            cur.execute(
                "DELETE FROM compliance_results WHERE year = %s AND month IS NOT DISTINCT FROM %s AND firm_id = ANY(%s)",
                (result.year, result.month, ids),
            )
            cur.executemany(
                """INSERT INTO compliance_results (park_id, firm_id, workshop_id, year, month, scheme, run_id, rule_set,
                     rule_version, verdict, score, detail)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                [
                    (
                        c.park_id,
                        c.firm_id,
                        c.workshop_id,
                        c.year,
                        c.month,
                        c.scheme,
                        run_id,
                        result.rule_set,
                        result.rule_version,
                        c.verdict,
                        c.score,
                        _j(c.detail),
                    )
                    for c in result.compliance
                ],
            )
        conn.execute("UPDATE rule_runs SET finished_at = now() WHERE run_id = %s", (run_id,))
    return run_id


def _class_counts(result: YearResult) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for f in result.firms:
        out[f.klass] += 1
    return dict(out)


def _quality_name(code: int) -> str:
    """The kernel's name of a quality code ('uncertain', 'bad', …), or the code itself if unknown."""
    try:
        return Quality(code).name.lower()
    except ValueError:
        return str(code)
