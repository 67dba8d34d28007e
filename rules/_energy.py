"""Energy per firm and period: physical quantities → kgce/tce (当量值 and 等价值) and tCO2.

Pure functions over a loaded rule set; every number comes with its explanation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from parkpulse.errors import FieldError
from rules._figures import Figure
from rules._ruleset import CarrierCoef, RuleSet, SteamTable

__all__ = [
    "CarrierAmount",
    "EnergyResult",
    "UnitError",
    "dengjia_figure",
    "firm_energy",
    "grid_factor",
    "resolve_unit",
    "steam_kgce_per_t",
    "to_base",
]


class UnitError(FieldError):
    """A carrier or unit the rule set does not know, or a unit that does not fit the carrier."""


@dataclass(frozen=True)
class CarrierAmount:
    carrier: str
    quantity: float
    unit: str
    source: str = ""  # where the figure came from (file line, meter view), for the explanation


@dataclass
class EnergyResult:
    tce: float  # 当量值
    tce_dengjia: float  # 等价值
    tco2: float
    electricity_mwh: float
    per_carrier: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    carbon_complete: bool = True

    def explanation(self) -> dict[str, object]:
        return {
            "tce_dangliang": self.tce,
            "tce_dengjia": self.tce_dengjia,
            "tco2": self.tco2,
            "carriers": self.per_carrier,
            "notes": self.notes,
            "carbon_complete": self.carbon_complete,
        }


def _key(unit: str) -> str:
    return unit.replace(" ", "").replace("\u00a0", "").casefold()


def resolve_unit(rs: RuleSet, unit: str) -> str | None:
    """The canonical unit name for a unit as people write it, or None."""
    k = _key(unit)
    for name, d in rs.units.units.items():
        if k == _key(name) or k in (_key(a) for a in d.aliases):
            return name
    return None


def to_base(rs: RuleSet, carrier: str, quantity: float, unit: str) -> tuple[float, str]:
    """Convert a quantity to the carrier's base unit. Returns (quantity in base unit, base unit)."""
    cc = rs.coal.carriers.get(carrier)
    if cc is None:
        raise UnitError("carrier", carrier, f"unknown carrier (known: {', '.join(sorted(rs.coal.carriers))})")
    canon = resolve_unit(rs, unit)
    if canon is None:
        raise UnitError("unit", unit, f"unknown unit (known: {', '.join(sorted(rs.units.units))})")
    u = rs.units.units[canon]
    base = rs.units.units[cc.base_unit]
    if u.dimension == base.dimension:
        return quantity * u.factor / base.factor, cc.base_unit
    for eq_unit, eq_factor in cc.equivalences.items():
        e = rs.units.units[eq_unit]
        if e.dimension == u.dimension:
            return quantity * u.factor / e.factor * eq_factor, cc.base_unit
    raise UnitError("unit", unit, f"a {u.dimension} unit cannot measure {carrier} (base unit {cc.base_unit})")


def steam_kgce_per_t(table: SteamTable, pressure_mpa: float) -> tuple[float, float, float]:
    """(kgce/t, kgoe/t, band lower edge) for steam at a pressure: the band whose lower edge is the
    highest one <= pressure (a pressure exactly at an edge belongs to the band starting there)."""
    if pressure_mpa < 0:
        raise UnitError("pressure_mpa", pressure_mpa, "steam pressure must be >= 0 MPa")
    lo, kgoe = next((lo, v) for lo, v in sorted(table.table, reverse=True) if pressure_mpa >= lo)
    return kgoe / table.kgoe_per_kgce, kgoe, lo


def dengjia_figure(cc: CarrierCoef, year: int) -> tuple[Figure, int | None]:
    """The year's 等价值 figure, or the default (then year None)."""
    by_year = cc.dengjia_by_year or {}
    if year in by_year:
        return by_year[year], year
    assert cc.dengjia_default is not None  # checked when the rule set is loaded
    return cc.dengjia_default, None


def kgce_per_base(rs: RuleSet, carrier: str, year: int) -> tuple[float, float, dict[str, object]]:
    """(当量值, 等价值) kgce per base unit, and where they come from."""
    cc = rs.coal.carriers[carrier]
    if carrier == "steam" and cc.pressure_mpa is not None and rs.coal.steam_by_pressure is not None:
        table = rs.coal.steam_by_pressure
        p = cc.pressure_mpa.value
        coef, kgoe, lo = steam_kgce_per_t(table, p)
        cite: dict[str, object] = {
            "dangliang": {
                "value": coef,
                "unit": "kgce/t",
                "source": table.source,
                "derivation": f"{p:g} MPa is in the band >= {lo:g} MPa: "
                f"{kgoe:g} kgoe/t / {table.kgoe_per_kgce:g}",
                "verified": table.verified and cc.pressure_mpa.verified,
            }
        }
        return coef, coef, cite
    assert cc.dangliang is not None
    dl = cc.dangliang.value
    cite = {"dangliang": cc.dangliang.cite()}
    if cc.dengjia_by_year is not None or cc.dengjia_default is not None:
        fig, fig_year = dengjia_figure(cc, year)
        cite["dengjia"] = {
            **fig.cite(),
            "year": year,
            "figure_year": fig_year if fig_year is not None else "default",
        }
        return dl, fig.value, cite
    cite["dengjia"] = "equals 当量值 (no separate 等价值 configured for this carrier)"
    return dl, dl, cite


def grid_factor(rs: RuleSet, year: int) -> tuple[Figure, str, int] | None:
    """The grid factor for a year: the region's own value for the year, else its latest earlier value,
    else the same from its `fallback` region (national). Returns (figure, region, year of the figure)."""
    region: str | None = rs.settings.grid
    seen: set[str] = set()
    while region is not None and region not in seen:
        seen.add(region)
        grid = rs.emissions.grids[region]
        earlier = [y for y in grid.by_year if y <= year]
        if earlier:
            y = max(earlier)
            return grid.by_year[y], region, y
        region = grid.fallback
    return None


def tco2_per_base(rs: RuleSet, carrier: str, year: int) -> tuple[float | None, dict[str, object] | str]:
    e = rs.emissions
    if carrier == "electricity":
        found = grid_factor(rs, year)
        if found is None:
            first = min(min(g.by_year) for g in e.grids.values())
            return None, (
                f"no grid factor for {year} or an earlier year (the {rs.settings.grid} series starts in "
                f"{first})"
            )
        fig, region, fig_year = found
        cite: dict[str, object] = {
            **fig.cite(),
            "grid": rs.settings.grid,
            "year": year,
            "factor_year": fig_year,
            "factor_region": region,
            "series": e.grids[region].series,
        }
        if fig_year != year or region != rs.settings.grid:
            cite["fallback"] = (
                f"no {year} factor for {rs.settings.grid}: the latest earlier value of the "
                f"{region} series ({fig_year}) is used"
            )
        # tCO2/MWh → tCO2/kWh
        return fig.value / 1000.0, cite
    if carrier in e.fuels:
        f = e.fuels[carrier]
        per_base_tj = f.ncv.value * (f.ncv.per_base or 0.0) / 1000.0  # GJ per base unit → TJ
        factor = per_base_tj * f.carbon.value * f.oxidation.value * 44.0 / 12.0
        return factor, {
            "derivation": "NCV x carbon content x oxidation x 44/12",
            "ncv": f.ncv.cite(),
            "carbon": f.carbon.cite(),
            "oxidation": f.oxidation.cite(),
        }
    if carrier in e.direct:
        return e.direct[carrier].value, e.direct[carrier].cite()
    return None, "no emission factor configured"


def firm_energy(rs: RuleSet, amounts: Iterable[CarrierAmount], year: int) -> EnergyResult:
    """Sum a firm's carriers into 当量值/等价值 tce and tCO2. Raises UnitError for unknown carriers/units."""
    by_carrier: dict[str, float] = {}
    sources: dict[str, list[str]] = {}
    for a in amounts:
        base_q, _ = to_base(rs, a.carrier, a.quantity, a.unit)
        by_carrier[a.carrier] = by_carrier.get(a.carrier, 0.0) + base_q
        if a.source:
            sources.setdefault(a.carrier, []).append(a.source)
    kgce = kgce_dj = tco2 = 0.0
    elec_kwh = 0.0
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    complete = True
    for carrier in sorted(by_carrier):
        q = by_carrier[carrier]
        cc = rs.coal.carriers[carrier]
        dl, dj, cite = kgce_per_base(rs, carrier, year)
        co2, co2_cite = tco2_per_base(rs, carrier, year)
        row: dict[str, object] = {
            "carrier": carrier,
            "quantity": q,
            "unit": cc.base_unit,
            "kgce_dangliang": q * dl,
            "kgce_dengjia": q * dj,
            "coefficients": cite,
            "in_total": cc.in_total,
            "tco2": None if co2 is None else q * co2,
            "emission_factor": co2_cite,
        }
        if sources.get(carrier):
            row["from"] = sources[carrier]
        rows.append(row)
        if carrier == "electricity":
            elec_kwh += q
            notes += _electricity_notes(cite, co2_cite, year)
        if not cc.in_total:
            notes.append(
                f"{carrier}: listed but not counted in the total (in_total: false in {rs.coal.name})"
            )
            continue
        kgce += q * dl
        kgce_dj += q * dj
        if co2 is None:
            complete = False
            notes.append(f"{carrier}: {co2_cite}; carbon excludes it")
        else:
            tco2 += q * co2
    return EnergyResult(
        tce=kgce / 1000.0,
        tce_dengjia=kgce_dj / 1000.0,
        tco2=tco2,
        electricity_mwh=elec_kwh / 1000.0,
        per_carrier=rows,
        notes=notes,
        carbon_complete=complete,
    )


def _electricity_notes(cite: dict[str, object], co2: dict[str, object] | str, year: int) -> list[str]:
    """Which year's 等价值 and grid factor were used, in words (shown with the firm's energy)."""
    out: list[str] = []
    dj = cite.get("dengjia")
    if isinstance(dj, dict):
        flag = "" if dj.get("verified", True) else ", unverified"
        if dj.get("figure_year") == "default":
            out.append(
                f"electricity 等价值: no {year} figure configured; the default {dj['value']} kgce/kWh{flag} is used"
            )
        else:
            out.append(f"electricity 等价值: the {dj['figure_year']} figure {dj['value']} kgce/kWh{flag}")
    if isinstance(co2, dict):
        out.append(
            f"electricity CO2: {co2['factor_region']} grid factor of {co2['factor_year']}, {co2['value']} tCO2/MWh"
            + (f" (no {year} factor: latest earlier value)" if co2["factor_year"] != year else "")
        )
    return out
