"""Turn a park's figures (ParkData) into one firm's report or the park's report."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from reports._gather import ParkData, coefficient_for
from reports._model import DailyRow, EnergyRow, Report
from reports.errors import ReportInputError


def _energy_rows(data: ParkData, firm_ids: list[str], notes: list[str]) -> list[EnergyRow]:
    """Sum per carrier, direction and unit; tce per firm with that firm's coefficient."""
    qty: dict[tuple[str, str, str], float] = defaultdict(float)
    tce: dict[tuple[str, str, str], float | None] = {}
    coef: dict[tuple[str, str, str], set[float | None]] = defaultdict(set)
    in_total: dict[tuple[str, str, str], bool] = {}
    suspect: set[tuple[str, str, str]] = set()
    for fid in firm_ids:
        per: dict[tuple[str, str, str], float] = defaultdict(float)
        for d in data.daily.get(fid, []):
            per[(d.carrier, d.direction, d.unit)] += d.quantity
        coefs = data.coefficients.get(fid, {})
        for key, q in per.items():
            carrier, direction, unit = key
            k = coefficient_for(coefs, carrier, unit)
            qty[key] += q
            coef[key].add(k)
            prev = tce.get(key, 0.0)
            tce[key] = None if k is None or (key in tce and prev is None) else (prev or 0.0) + q * k / 1000.0
            c = coefs.get(carrier)
            in_total[key] = in_total.get(key, True) and (c.in_total if c else True)
            if (carrier, direction) in data.suspect.get(fid, set()):
                suspect.add(key)
            if k is None:
                notes.append(f"no_coefficient:{fid}:{carrier}:{unit}")
    rows = []
    for key in sorted(qty):
        ks = coef[key]
        single = next(iter(ks)) if len(ks) == 1 else None
        rows.append(EnergyRow(*key, qty[key], single, tce[key], in_total[key], key in suspect))
    return rows


def _versions(data: ParkData, firm_ids: list[str]) -> tuple[list[str], list[str]]:
    rule_sets = sorted({f"{k.rule_set} {k.rule_version}" for f in firm_ids if (k := data.kpis.get(f))})
    tariffs = sorted({c.tariff for f in firm_ids for c in data.costs.get(f, []) if c.tariff})
    return rule_sets, tariffs


def _no_tariff(data: ParkData, firm_ids: list[str]) -> list[str]:
    """Firms with electricity in the period and no priced electricity row."""
    out = []
    for fid in firm_ids:
        has_elec = any(d.carrier == "electricity" for d in data.daily.get(fid, []))
        priced = any(c.carrier == "electricity" and c.tariff for c in data.costs.get(fid, []))
        if not priced and (has_elec or not data.costs.get(fid)):
            out.append(fid)
    return out


def build_report(data: ParkData, firm_id: str | None = None) -> Report:
    """One firm's report, or (firm_id None) the park's: every firm of `data`."""
    if firm_id is not None and firm_id not in data.firms:
        raise ReportInputError("firm", firm_id, f"not among the firms read for park {data.park.park_id!r}")
    ids = list(data.firms) if firm_id is None else [firm_id]
    notes: list[str] = []
    rule_sets, tariffs = _versions(data, ids)
    report = Report(
        park=data.park,
        firm=None if firm_id is None else data.firms[firm_id],
        period=data.period,
        generated_at=data.now,
        firms=[data.firms[f] for f in ids],
        energy=_energy_rows(data, ids, notes),
        kpis=[k for f in ids if (k := data.kpis.get(f))],
        no_tariff=_no_tariff(data, ids),
        rule_sets=rule_sets,
        tariffs=tariffs,
        notes=sorted(set(notes)),
    )
    for fid in ids:
        report.costs += data.costs.get(fid, [])
        report.alerts += data.alerts.get(fid, [])
        report.completeness += data.completeness.get(fid, [])
        report.gaps += data.gaps.get(fid, [])
    report.daily = _daily(data, ids)
    if firm_id is None:
        report.scorecard = data.scorecard
        if data.scorecard_year is not None and data.scorecard_year != data.period.year:
            report.notes.append(f"scorecard_year:{data.scorecard_year}")
    years = {k.year for k in report.kpis}
    if any(y != data.period.year for y in years):
        report.notes.append("kpi_year:" + ",".join(str(y) for y in sorted(years)))
    if not report.kpis:
        report.notes.append(f"no_results:{data.period.year}")
    return report


def _daily(data: ParkData, ids: list[str]) -> list[DailyRow]:
    if len(ids) == 1:
        return list(data.daily.get(ids[0], []))
    acc: dict[tuple[date, str, str, str], float] = defaultdict(float)
    for fid in ids:
        for d in data.daily.get(fid, []):
            acc[(d.day, d.carrier, d.direction, d.unit)] += d.quantity
    return [DailyRow(day, c, dr, u, v) for (day, c, dr, u), v in sorted(acc.items())]
