"""Energy per firm and period: physical quantities → kgce/tce (当量值 and 等价值) and tCO2.

Pure functions over a loaded rule set; every number comes with its explanation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from parkpulse.errors import FieldError
from rules._ruleset import RuleSet

__all__ = ["CarrierAmount", "EnergyResult", "UnitError", "firm_energy", "resolve_unit", "to_base"]


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
    tce: float                  # 当量值
    tce_dengjia: float          # 等价值
    tco2: float
    electricity_mwh: float
    per_carrier: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    carbon_complete: bool = True

    def explanation(self) -> dict[str, object]:
        return {"tce_dangliang": self.tce, "tce_dengjia": self.tce_dengjia, "tco2": self.tco2,
                "carriers": self.per_carrier, "notes": self.notes, "carbon_complete": self.carbon_complete}


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


def kgce_per_base(rs: RuleSet, carrier: str, year: int) -> tuple[float, float, dict[str, object]]:
    """(当量值, 等价值) kgce per base unit, and where they come from."""
    cc = rs.coal.carriers[carrier]
    if carrier == "steam" and cc.pressure_mpa is not None and rs.coal.steam_by_pressure is not None:
        table = rs.coal.steam_by_pressure
        p = cc.pressure_mpa.value
        kgoe = next(v for lo, v in sorted(table.table, reverse=True) if p >= lo)
        coef = kgoe / table.kgoe_per_kgce
        cite: dict[str, object] = {"dangliang": {"value": coef, "unit": "kgce/t", "source": table.source,
                                                 "derivation": f"{kgoe} kgoe/t at >= {p} MPa / {table.kgoe_per_kgce}",
                                                 "verified": table.verified and cc.pressure_mpa.verified}}
        return coef, coef, cite
    assert cc.dangliang is not None
    dl = cc.dangliang.value
    cite = {"dangliang": cc.dangliang.cite()}
    if cc.dengjia_by_year:
        fig = cc.dengjia_by_year.get(str(year)) or cc.dengjia_by_year["default"]
        cite["dengjia"] = {**fig.cite(), "year": year if str(year) in cc.dengjia_by_year else "default"}
        return dl, fig.value, cite
    cite["dengjia"] = "equals 当量值 (no separate 等价值 configured for this carrier)"
    return dl, dl, cite


def tco2_per_base(rs: RuleSet, carrier: str, year: int) -> tuple[float | None, dict[str, object] | str]:
    e = rs.emissions
    if carrier == "electricity":
        grid = e.grids[rs.settings.grid]
        fig = grid.by_year.get(year)
        chosen = fig or grid.default
        # tCO2/MWh → tCO2/kWh
        return chosen.value / 1000.0, {**chosen.cite(), "grid": rs.settings.grid,
                                        "year": year if fig else "default"}
    if carrier in e.fuels:
        f = e.fuels[carrier]
        per_base_tj = f.ncv.value * (f.ncv.per_base or 0.0) / 1000.0  # GJ per base unit → TJ
        factor = per_base_tj * f.carbon.value * f.oxidation.value * 44.0 / 12.0
        return factor, {"derivation": "NCV x carbon content x oxidation x 44/12", "ncv": f.ncv.cite(),
                        "carbon": f.carbon.cite(), "oxidation": f.oxidation.cite()}
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
            "carrier": carrier, "quantity": q, "unit": cc.base_unit,
            "kgce_dangliang": q * dl, "kgce_dengjia": q * dj, "coefficients": cite, "in_total": cc.in_total,
            "tco2": None if co2 is None else q * co2, "emission_factor": co2_cite,
        }
        if sources.get(carrier):
            row["from"] = sources[carrier]
        rows.append(row)
        if carrier == "electricity":
            elec_kwh += q
        if not cc.in_total:
            notes.append(f"{carrier}: listed but not counted in the total (in_total: false in {rs.coal.name})")
            continue
        kgce += q * dl
        kgce_dj += q * dj
        if co2 is None:
            complete = False
            notes.append(f"{carrier}: no emission factor configured; carbon excludes it")
        else:
            tco2 += q * co2
    return EnergyResult(tce=kgce / 1000.0, tce_dengjia=kgce_dj / 1000.0, tco2=tco2, electricity_mwh=elec_kwh / 1000.0,
                        per_carrier=rows, notes=notes, carbon_complete=complete)
