"""The yearly evaluation: inputs (registry, economics, energy, telemetry, rule set) → results.

Pure: no database, no files. rules/_store.py and rules/_csvio.py build the same `YearInputs`
from the database and from CSV files, so both paths produce the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rules._energy import CarrierAmount, EnergyResult, firm_energy
from rules._green import GreenInputs, GreenResult, evaluate_green
from rules._mu import MuFirm, MuOutcome, classify
from rules._ruleset import GreenEdition, RuleSet
from rules._smart import SmartResult, SmartTelemetry, evaluate_firm_smart, evaluate_smart

__all__ = [
    "ComplianceRow",
    "Economics",
    "FirmKpi",
    "FirmRecord",
    "ScoreRow",
    "YearInputs",
    "YearResult",
    "evaluate_year",
]


@dataclass
class Economics:
    """A firm's yearly economic data (money in 万元)."""

    added_value: float | None = None
    tax: float | None = None
    revenue: float | None = None
    rd_spend: float | None = None
    employees: float | None = None
    pollutant_t: float | None = None
    output_units: float | None = None
    output_value: float | None = None
    profit: float | None = None  # 利润总额 (negative for a loss)
    green_declared: dict[str, object] = field(default_factory=dict)
    source: str = ""


@dataclass
class FirmRecord:
    firm_id: str
    park_id: str
    name: str = ""
    land_mu: float = 0.0
    above_scale: bool = True
    years_in_production: float | None = None
    cluster_id: str | None = None
    industry: str | None = None


@dataclass
class YearInputs:
    year: int
    firms: list[FirmRecord]
    economics: dict[tuple[str, int], Economics] = field(default_factory=dict)
    energy: dict[tuple[str, int], list[CarrierAmount]] = field(default_factory=dict)
    water_reuse: dict[str, tuple[float, float]] = field(default_factory=dict)  # firm → (reused m3, fresh m3)
    smart_firms: dict[str, SmartTelemetry] = field(default_factory=dict)
    smart_workshops: dict[str, list[SmartTelemetry]] = field(default_factory=dict)
    month: int | None = None
    telemetry: bool = False  # smart-workshop telemetry was available (database path)


@dataclass
class FirmKpi:
    park_id: str
    firm_id: str
    year: int
    energy_tce: float | None
    energy_tce_equal_value: float | None
    carbon_tco2: float | None
    added_value_10k_cny: float | None
    intensity_tce_per_10k_cny: float | None
    intensity_change_pct: float | None
    mu_tax_10k_cny: float | None
    mu_added_value_10k_cny: float | None
    score: float | None
    klass: str
    explanation: dict[str, object]
    inputs: dict[str, object]

    def public(self) -> dict[str, object]:
        """The keys of `parkpulse kpi evaluate` (issue 4), in order."""
        return {
            "firm_id": self.firm_id,
            "energy_tce": self.energy_tce,
            "energy_tce_equal_value": self.energy_tce_equal_value,
            "carbon_tco2": self.carbon_tco2,
            "intensity_tce_per_10k_cny": self.intensity_tce_per_10k_cny,
            "intensity_change_pct": self.intensity_change_pct,
            "mu_tax_10k_cny": self.mu_tax_10k_cny,
            "score": self.score,
            "class": self.klass,
            "explanation": self.explanation,
        }


@dataclass
class ScoreRow:
    park_id: str
    year: int
    indicator: str
    value: float | None
    target: float | None
    unit: str | None
    met: bool | None
    source: str
    detail: dict[str, object] = field(default_factory=dict)

    def public(self) -> dict[str, object]:
        return {
            "indicator": self.indicator,
            "value": self.value,
            "target": self.target,
            "unit": self.unit,
            "met": self.met,
            "source": self.source,
            "detail": self.detail,
        }


@dataclass
class ComplianceRow:
    park_id: str
    firm_id: str
    workshop_id: str | None
    year: int
    month: int | None
    scheme: str
    verdict: str
    score: float | None
    detail: dict[str, object]


@dataclass
class YearResult:
    rule_set: str
    rule_version: str
    year: int
    month: int | None
    firms: list[FirmKpi]
    scorecard: dict[str, list[ScoreRow]]
    compliance: list[ComplianceRow]


def _basis(rs: RuleSet, e: EnergyResult, which: str) -> float:
    return e.tce if which == "dangliang" else e.tce_dengjia


def _energy(rs: RuleSet, inp: YearInputs, firm_id: str, year: int) -> EnergyResult | None:
    lines = inp.energy.get((firm_id, year))
    if not lines:
        return None
    return firm_energy(rs, lines, year)


def _intensity(rs: RuleSet, e: EnergyResult | None, econ: Economics | None) -> float | None:
    if e is None or econ is None or not econ.added_value:
        return None
    return _basis(rs, e, rs.settings.intensity_basis) / econ.added_value


def _mu_firm(rs: RuleSet, f: FirmRecord, econ: Economics | None, e: EnergyResult | None) -> MuFirm:
    return MuFirm(
        firm_id=f.firm_id,
        land_mu=f.land_mu,
        above_scale=f.above_scale,
        years_in_production=f.years_in_production,
        added_value=econ.added_value if econ else None,
        tax=econ.tax if econ else None,
        revenue=econ.revenue if econ else None,
        rd_spend=econ.rd_spend if econ else None,
        employees=econ.employees if econ else None,
        pollutant_t=econ.pollutant_t if econ else None,
        output_value=econ.output_value if econ else None,
        profit=econ.profit if econ else None,
        energy_tce=_basis(rs, e, rs.settings.productivity_basis) if e else None,
        electricity_mwh=e.electricity_mwh if e else None,
        has_economics=econ is not None,
    )


def _mu_outcomes(
    rs: RuleSet,
    inp: YearInputs,
    firms_by_park: dict[str, list[FirmRecord]],
    energy: dict[str, EnergyResult | None],
) -> dict[str, MuOutcome]:
    """Every firm's 亩均 outcome; the firms of a park are ranked among themselves."""
    mu: dict[str, MuOutcome] = {}
    for firms in firms_by_park.values():
        mu_firms = [
            _mu_firm(rs, f, inp.economics.get((f.firm_id, inp.year)), energy[f.firm_id]) for f in firms
        ]
        for o in classify(rs.mu, mu_firms):
            mu[o.firm_id] = o
    return mu


def _intensity_explanation(
    rs: RuleSet,
    e: EnergyResult | None,
    econ: Economics | None,
    inten: float | None,
    prev_inten: float | None,
    change: float | None,
) -> dict[str, object]:
    target = rs.settings.intensity_target_pct
    basis_zh = "当量值" if rs.settings.intensity_basis == "dangliang" else "等价值"
    out: dict[str, object] = {
        "basis": f"{rs.settings.intensity_basis} ({basis_zh})",
        "formula": "tce / industrial added value (10k CNY); change = (this year / previous year - 1) x 100",
        "value": inten,
        "previous": prev_inten,
        "change_pct": change,
        "target_pct": target.cite(),
        "met": None if change is None else change <= target.value,
        "note": "added value as declared (comparable prices are the declarant's responsibility)",
    }
    if inten is None:
        out["missing"] = (
            "no energy data"
            if e is None
            else "no added value declared"
            if not (econ and econ.added_value)
            else ""
        )
    if change is None and inten is not None:
        out["missing_previous"] = "no energy or added value for the previous year"
    return out


def _firm_kpi(
    rs: RuleSet,
    inp: YearInputs,
    f: FirmRecord,
    energy: tuple[EnergyResult | None, EnergyResult | None],
    o: MuOutcome,
    mu_scheme: dict[str, object],
) -> FirmKpi:
    """One firm's KPIs with the explanation and inputs behind them; `energy` is (this year, previous)."""
    year = inp.year
    econ = inp.economics.get((f.firm_id, year))
    prev_econ = inp.economics.get((f.firm_id, year - 1))
    e, pe = energy
    inten = _intensity(rs, e, econ)
    prev_inten = _intensity(rs, pe, prev_econ)
    change = None
    if inten is not None and prev_inten:
        change = (inten / prev_inten - 1.0) * 100.0
    explanation: dict[str, object] = {
        "rule_set": rs.name,
        "rule_version": rs.version,
        "year": year,
        "mu_scheme": mu_scheme,
        "text": o.explanation.get("text"),
        "text_zh": o.explanation.get("text_zh"),
        "class": o.klass,
        "energy": e.explanation() if e else {"missing": "no energy data for the year"},
        "intensity": _intensity_explanation(rs, e, econ, inten, prev_inten, change),
        "mu": o.explanation,
        "indicators": o.indicators,
    }
    inputs: dict[str, object] = {
        "firm": {
            "land_mu": f.land_mu,
            "above_scale": f.above_scale,
            "years_in_production": f.years_in_production,
            "cluster_id": f.cluster_id,
            "industry": f.industry,
        },
        "economics": _econ_dict(econ),
        "previous_economics": _econ_dict(prev_econ),
        "energy": [a.__dict__ for a in inp.energy.get((f.firm_id, year), [])],
        "previous_energy": [a.__dict__ for a in inp.energy.get((f.firm_id, year - 1), [])],
    }
    return FirmKpi(
        park_id=f.park_id,
        firm_id=f.firm_id,
        year=year,
        energy_tce=e.tce if e else None,
        energy_tce_equal_value=e.tce_dengjia if e else None,
        carbon_tco2=e.tco2 if e else None,
        added_value_10k_cny=econ.added_value if econ else None,
        intensity_tce_per_10k_cny=inten,
        intensity_change_pct=change,
        mu_tax_10k_cny=o.indicators.get("mu_tax"),
        mu_added_value_10k_cny=o.indicators.get("mu_added_value"),
        score=o.score,
        klass=o.klass,
        explanation=explanation,
        inputs=inputs,
    )


def _smart_compliance(
    rs: RuleSet, inp: YearInputs, compliance: list[ComplianceRow]
) -> dict[str, SmartResult]:
    """Smart-workshop verdicts of every declared workshop and every firm (appended to `compliance`)."""
    smart_firm: dict[str, SmartResult] = {}
    for f in inp.firms:
        ws_results: list[tuple[str, SmartResult]] = []
        for t in inp.smart_workshops.get(f.firm_id, []):
            r = evaluate_smart(rs, t)
            ws_results.append((t.workshop_id or "", r))
            compliance.append(
                ComplianceRow(
                    f.park_id,
                    f.firm_id,
                    t.workshop_id,
                    inp.year,
                    inp.month,
                    "smart_workshop",
                    r.verdict,
                    r.score,
                    r.detail,
                )
            )
        ft = inp.smart_firms.get(f.firm_id) or SmartTelemetry(f.park_id, f.firm_id, None)
        fr = evaluate_firm_smart(rs, ft, ws_results)
        smart_firm[f.firm_id] = fr
        compliance.append(
            ComplianceRow(
                f.park_id,
                f.firm_id,
                None,
                inp.year,
                inp.month,
                "smart_workshop",
                fr.verdict,
                fr.score,
                fr.detail,
            )
        )
    return smart_firm


def _green_compliance(
    edition: GreenEdition,
    inp: YearInputs,
    results: list[FirmKpi],
    energy: dict[str, EnergyResult | None],
    compliance: list[ComplianceRow],
) -> dict[str, GreenResult]:
    """Green-factory verdicts of every firm with economic data (appended to `compliance`)."""
    year = inp.year
    green: dict[str, GreenResult] = {}
    for f, k in zip(inp.firms, results, strict=True):
        econ = inp.economics.get((f.firm_id, year))
        if econ is None:
            continue
        g = evaluate_green(edition, _green_inputs(f, econ, energy[f.firm_id], inp.water_reuse.get(f.firm_id)))
        green[f.firm_id] = g
        compliance.append(
            ComplianceRow(
                f.park_id,
                f.firm_id,
                None,
                year,
                None,
                "green_factory",
                g.verdict,
                g.score,
                {**g.detail, "firm_class": k.klass},
            )
        )
    return green


def _smart_workshops_passed(compliance: list[ComplianceRow], ids: set[str]) -> int:
    return sum(
        1
        for c in compliance
        if c.firm_id in ids and c.workshop_id and c.scheme == "smart_workshop" and c.verdict == "pass"
    )


def evaluate_year(rs: RuleSet, inp: YearInputs) -> YearResult:
    year = inp.year
    firms_by_park: dict[str, list[FirmRecord]] = defaultdict(list)
    for f in inp.firms:
        firms_by_park[f.park_id].append(f)
    energy: dict[str, EnergyResult | None] = {}
    prev_energy: dict[str, EnergyResult | None] = {}
    for f in inp.firms:
        energy[f.firm_id] = _energy(rs, inp, f.firm_id, year)
        prev_energy[f.firm_id] = _energy(rs, inp, f.firm_id, year - 1)
    mu = _mu_outcomes(rs, inp, firms_by_park, energy)
    mu_scheme = rs.mu.describe(rs.files["mu_scheme"])
    results = [
        _firm_kpi(rs, inp, f, (energy[f.firm_id], prev_energy[f.firm_id]), mu[f.firm_id], mu_scheme)
        for f in inp.firms
    ]
    compliance: list[ComplianceRow] = []
    smart_firm = _smart_compliance(rs, inp, compliance) if inp.telemetry else {}
    edition = rs.green_edition(year)
    green = _green_compliance(edition, inp, results, energy, compliance) if inp.month is None else {}
    scorecard: dict[str, list[ScoreRow]] = {}
    for park, firms in firms_by_park.items():
        ids = {f.firm_id for f in firms}
        scorecard[park] = park_scorecard(
            rs,
            park,
            year,
            firms,
            [r for r in results if r.firm_id in ids],
            inp,
            {k: v for k, v in smart_firm.items() if k in ids},
            {k: v for k, v in green.items() if k in ids},
            _smart_workshops_passed(compliance, ids) if inp.telemetry else None,
        )
    return YearResult(rs.name, rs.version, year, inp.month, results, scorecard, compliance)


def _econ_dict(e: Economics | None) -> dict[str, object] | None:
    if e is None:
        return None
    return {
        "added_value_10k_cny": e.added_value,
        "tax_10k_cny": e.tax,
        "revenue_10k_cny": e.revenue,
        "rd_spend_10k_cny": e.rd_spend,
        "employees": e.employees,
        "pollutant_t": e.pollutant_t,
        "output_units": e.output_units,
        "output_value_10k_cny": e.output_value,
        "profit_10k_cny": e.profit,
        "source": e.source,
    }


def _green_inputs(
    f: FirmRecord, econ: Economics, e: EnergyResult | None, water: tuple[float, float] | None
) -> GreenInputs:
    ind: dict[str, float | None] = {}
    how: dict[str, str] = {}
    units = econ.output_units
    ind["unit_product_energy_kgce"] = e.tce * 1000.0 / units if e and units else None
    how["unit_product_energy_kgce"] = "comprehensive energy (当量值, kgce) / output units"
    ind["unit_product_carbon_kgco2"] = e.tco2 * 1000.0 / units if e and units else None
    how["unit_product_carbon_kgco2"] = "tCO2 x 1000 / output units"
    ind["unit_product_pollutant_kg"] = (
        econ.pollutant_t * 1000.0 / units if econ.pollutant_t is not None and units else None
    )
    how["unit_product_pollutant_kg"] = "declared pollutant discharge (t) x 1000 / output units"
    ind["output_value_per_mu"] = (
        econ.output_value / f.land_mu if econ.output_value is not None and f.land_mu else None
    )
    how["output_value_per_mu"] = "output value (10k CNY) / land (mu)"
    if water and (water[0] + water[1]) > 0:
        ind["water_reuse_rate"] = water[0] / (water[0] + water[1])
        how["water_reuse_rate"] = f"reused {water[0]:.6g} m3 / (reused + fresh {water[1]:.6g} m3), metered"
    else:
        ind["water_reuse_rate"] = None
        how["water_reuse_rate"] = "water reuse not metered"
    return GreenInputs(f.firm_id, f.industry, econ.green_declared, ind, how)


@dataclass
class _Scorecard:
    """The rows of one park's scorecard: `add` appends an indicator the targets file names, with its verdict."""

    rs: RuleSet
    park: str
    year: int
    rows: list[ScoreRow] = field(default_factory=list)

    def add(self, key: str, value: float | None, detail: dict[str, object], unit: str | None = None) -> None:
        t = self.rs.targets.indicators
        if key not in t:
            return
        spec = t[key]
        target = spec.target.value if spec.target else None
        met: bool | None = None
        if value is not None and target is not None:
            met = value >= target if spec.comparison == "at_least" else value <= target
        src = (
            spec.target.source
            if spec.target
            else (spec.threshold.source if spec.threshold else self.rs.targets.source)
        )
        self.rows.append(
            ScoreRow(
                self.park,
                self.year,
                key,
                value,
                target,
                unit or (spec.target.unit if spec.target else spec.unit),
                met,
                src,
                {"zh": spec.zh, **detail},
            )
        )


def _add_mu_tax(
    card: _Scorecard,
    in_scope: list[FirmKpi],
    econ: dict[str, Economics | None],
    land: dict[str, float],
) -> None:
    """亩均税收 of the park (its in-scope firms' total tax / total land) and the share of firms at the threshold."""
    t = card.rs.targets.indicators
    tax = 0.0
    for r in in_scope:
        fe = econ[r.firm_id]
        if fe is not None and fe.tax is not None:
            tax += fe.tax
    mu = sum(land[r.firm_id] for r in in_scope)
    card.add(
        "mu_tax_10k_cny_per_mu",
        tax / mu if mu else None,
        {
            "tax_10k_cny": tax,
            "land_mu": mu,
            "firms": len(in_scope),
            "formula": "sum of tax / sum of land, in-scope firms",
        },
    )
    thr = t["firms_at_mu_tax_target_pct"].threshold if "firms_at_mu_tax_target_pct" in t else None
    if thr is not None:
        at = [r.firm_id for r in in_scope if r.mu_tax_10k_cny is not None and r.mu_tax_10k_cny >= thr.value]
        card.add(
            "firms_at_mu_tax_target_pct",
            100.0 * len(at) / len(in_scope) if in_scope else None,
            {"firms_at_target": len(at), "firms": len(in_scope), "threshold": thr.cite()},
        )


def _add_intensity_change(
    card: _Scorecard, results: list[FirmKpi], econ: dict[str, Economics | None], inp: YearInputs
) -> None:
    """The park's energy intensity change, over the firms with both years' energy and added value."""
    cur_e = cur_v = prev_e = prev_v = 0.0
    used: list[str] = []
    for r in results:
        ex = r.explanation.get("intensity")
        if not isinstance(ex, dict) or ex.get("value") is None or ex.get("previous") is None:
            continue
        pe = econ[r.firm_id]
        prev = inp.economics.get((r.firm_id, card.year - 1))
        if pe is None or prev is None or not pe.added_value or not prev.added_value:
            continue
        cur_e += float(ex["value"]) * pe.added_value
        cur_v += pe.added_value
        prev_e += float(ex["previous"]) * prev.added_value
        prev_v += prev.added_value
        used.append(r.firm_id)
    change = None
    if used and cur_v and prev_v and prev_e:
        change = ((cur_e / cur_v) / (prev_e / prev_v) - 1.0) * 100.0
    card.add(
        "energy_intensity_change_pct",
        change,
        {
            "firms": len(used),
            "tce": cur_e,
            "added_value_10k_cny": cur_v,
            "previous_tce": prev_e,
            "previous_added_value_10k_cny": prev_v,
            "basis": card.rs.settings.intensity_basis,
            "formula": "(sum tce / sum added value) this year vs previous year, firms with both years",
        },
    )


def _add_smart_coverage(
    card: _Scorecard, firms: list[FirmRecord], smart: dict[str, SmartResult], telemetry: bool
) -> None:
    """Smart-transformation coverage: above-scale firms whose smart verdict is pass."""
    if not (smart or telemetry):
        card.add("smart_transformation_coverage_pct", None, {"missing": "no telemetry in this evaluation"})
        return
    above = [f for f in firms if f.above_scale]
    transformed = [f.firm_id for f in above if smart.get(f.firm_id) and smart[f.firm_id].verdict == "pass"]
    card.add(
        "smart_transformation_coverage_pct",
        100.0 * len(transformed) / len(above) if above else None,
        {"transformed": len(transformed), "above_scale_firms": len(above)},
    )


def _add_clusters(card: _Scorecard, firms: list[FirmRecord], econ: dict[str, Economics | None]) -> None:
    """Clusters whose firms' output value (revenue where none is declared) reaches the threshold."""
    t = card.rs.targets.indicators
    if "clusters_at_100bn_cny" not in t:
        return
    spec = t["clusters_at_100bn_cny"]
    limit = spec.threshold.value if spec.threshold else 1e7
    out: dict[str, float] = defaultdict(float)
    for f in firms:
        e = econ[f.firm_id]
        if f.cluster_id and e is not None:
            out[f.cluster_id] += e.output_value if e.output_value is not None else (e.revenue or 0.0)
    card.add(
        "clusters_at_100bn_cny",
        float(sum(1 for v in out.values() if v >= limit)) if out else 0.0,
        {
            "cluster_output_10k_cny": dict(out),
            "threshold_10k_cny": limit,
            "note": "output value (revenue where output value is not declared) of the park's firms; target is province-wide",
        },
    )


def park_scorecard(
    rs: RuleSet,
    park: str,
    year: int,
    firms: list[FirmRecord],
    results: list[FirmKpi],
    inp: YearInputs,
    smart: dict[str, SmartResult],
    green: dict[str, GreenResult],
    smart_workshops: int | None,
) -> list[ScoreRow]:
    """The park against the province's targets (targets file of the rule set)."""
    card = _Scorecard(rs, park, year)
    in_scope = [r for r in results if r.klass != "out_of_scope"]
    econ = {f.firm_id: inp.economics.get((f.firm_id, year)) for f in firms}
    land = {f.firm_id: f.land_mu for f in firms}
    _add_mu_tax(card, in_scope, econ, land)
    _add_intensity_change(card, results, econ, inp)
    _add_smart_coverage(card, firms, smart, inp.telemetry)
    _add_clusters(card, firms, econ)
    card.add(
        "green_factories",
        float(sum(1 for g in green.values() if g.verdict == "pass")) if green else 0.0,
        {
            "evaluated": len(green),
            "edition": rs.green_edition(year).edition,
            "note": "target is province-wide",
        },
    )
    card.add(
        "smart_workshops",
        float(smart_workshops) if smart_workshops is not None else None,
        {} if smart_workshops is not None else {"missing": "no telemetry in this evaluation"},
    )
    for key in ("green_parks", "smart_demonstration_parks"):
        card.add(
            key,
            None,
            {"missing": "a province-wide count of recognised parks: not computable from one park's data"},
        )
    return card.rows
