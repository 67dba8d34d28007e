"""Worked examples for every GB/T 2589-2020 conversion and the carbon factors, computed by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules._energy import CarrierAmount, UnitError, firm_energy, to_base
from rules._ruleset import load_rule_set

RS = load_rule_set("henan-2025")


def tce(carrier: str, q: float, unit: str, year: int = 2025) -> float:
    return firm_energy(RS, [CarrierAmount(carrier, q, unit)], year).tce


@pytest.mark.parametrize(
    ("carrier", "q", "unit", "kgce"),
    [
        ("electricity", 1, "MWh", 1000 * 0.1229),        # 1 MWh = 1 000 kWh x 0.1229 = 122.9 kgce
        ("electricity", 1, "10^4 kWh", 10000 * 0.1229),  # 万kWh: 10 000 x 0.1229 = 1 229 kgce
        ("electricity", 36, "GJ", 10000 * 0.1229),       # 36 GJ = 36 000 MJ / 3.6 = 10 000 kWh
        ("natural_gas", 1, "10^4 m3", 10000 * 1.2143),   # 10 000 m3 x 1.2143 = 12 143 kgce
        ("natural_gas", 250, "m3", 250 * 1.2143),        # 303.575 kgce
        ("raw_coal", 1, "t", 1000 * 0.7143),             # 714.3 kgce
        ("coke", 2, "t", 2000 * 0.9714),                 # 1 942.8 kgce
        ("fuel_oil", 1, "t", 1000 * 1.4286),             # 1 428.6 kgce
        ("gasoline", 500, "kg", 500 * 1.4714),           # 735.7 kgce
        ("diesel", 1, "t", 1000 * 1.4571),               # 1 457.1 kgce
        ("lpg", 1, "t", 1000 * 1.7143),                  # 1 714.3 kgce
        ("heat", 1, "GJ", 1000 * 0.03412),               # 1 000 MJ x 0.03412 = 34.12 kgce
        ("heat", 500, "MJ", 500 * 0.03412),              # 17.06 kgce
        ("steam", 10, "t", 10 * 76 / 0.7),               # 1.0 MPa: 76 kgoe/t / 0.7 = 108.5714 kgce/t
        ("water", 100, "m3", 100 * 0.2571),              # 100 m3 = 100 t x 0.2571 = 25.71 kgce
        ("water", 100, "t", 100 * 0.2571),
    ],
)  # fmt: skip
def test_dangliang_conversions(carrier: str, q: float, unit: str, kgce: float) -> None:
    assert tce(carrier, q, unit) == pytest.approx(kgce / 1000, rel=1e-12)


def test_electricity_dengjia_is_configured_per_year() -> None:
    # 等价值: 1 000 kWh x 0.404 (the default: no year-specific figure shipped) = 404 kgce = 0.404 tce
    r = firm_energy(RS, [CarrierAmount("electricity", 1000, "kWh")], 2025)
    assert r.tce_dengjia == pytest.approx(0.404) and r.tce == pytest.approx(0.1229)
    cite = r.per_carrier[0]["coefficients"]
    assert cite["dengjia"]["year"] == "default" and cite["dengjia"]["verified"] is False  # type: ignore[index]


def test_carbon_worked_examples() -> None:
    # grid (Central China, 2023): 1 MWh x 0.5271 tCO2/MWh = 0.5271 t
    assert firm_energy(RS, [CarrierAmount("electricity", 1, "MWh")], 2023).tco2 == pytest.approx(0.5271)
    # 2025 has no regional figure: the MEE 2023-2025 reporting default 0.5703
    assert firm_energy(RS, [CarrierAmount("electricity", 1, "MWh")], 2025).tco2 == pytest.approx(0.5703)
    # natural gas 10 000 m3: 389.31 GJ = 0.38931 TJ x 15.3 tC/TJ x 0.99 x 44/12 = 21.6220... t
    gas = firm_energy(RS, [CarrierAmount("natural_gas", 1, "10^4 m3")], 2025).tco2
    assert gas == pytest.approx(0.38931 * 15.3 * 0.99 * 44 / 12, rel=1e-12)
    assert gas / 10000 * 1000 == pytest.approx(2.162, abs=5e-4)  # ≈ 2.162 kgCO2/m3 (standards.md)
    # diesel 1 t: 42.652 GJ = 0.042652 TJ x 20.2 x 0.98 x 44/12 = 3.0958... t
    assert firm_energy(RS, [CarrierAmount("diesel", 1, "t")], 2025).tco2 == pytest.approx(0.042652 * 20.2 * 0.98 * 44 / 12)


def test_total_sums_carriers_and_excludes_compressed_air() -> None:
    # 122.9 (1 MWh) + 12 143 (10^4 m3 gas) = 12 265.9 kgce; compressed air is listed but not counted
    r = firm_energy(RS, [CarrierAmount("electricity", 1, "MWh"), CarrierAmount("natural_gas", 10000, "m3"),
                         CarrierAmount("compressed_air", 5000, "m3")], 2025)  # fmt: skip
    assert r.tce == pytest.approx(12.2659)
    assert any("compressed_air" in n for n in r.notes)


@pytest.mark.parametrize(
    ("carrier", "unit", "why"),
    [("unobtainium", "kg", "unknown carrier"), ("electricity", "furlongs", "unknown unit"),
     ("natural_gas", "kWh", "cannot measure natural_gas")],
)  # fmt: skip
def test_unknown_carriers_and_units_are_errors(carrier: str, unit: str, why: str) -> None:
    with pytest.raises(UnitError, match=why):
        to_base(RS, carrier, 1.0, unit)


SAME = {
    "electricity": [("kWh", 1.0), ("MWh", 1e-3), ("10^4 kWh", 1e-4), ("MJ", 3.6), ("GJ", 3.6e-3), ("度", 1.0)],
    "natural_gas": [("m3", 1.0), ("10^4 m3", 1e-4), ("万m3", 1e-4), ("Nm3", 1.0), ("m³", 1.0)],
    "raw_coal": [("kg", 1.0), ("t", 1e-3), ("吨", 1e-3), ("10^4 t", 1e-7)],
    "heat": [("MJ", 1.0), ("GJ", 1e-3), ("kWh", 1 / 3.6)],
    "water": [("t", 1.0), ("m3", 1.0), ("kg", 1000.0), ("10^4 m3", 1e-4)],
    "steam": [("t", 1.0), ("kg", 1000.0)],
}


@settings(max_examples=200, deadline=None)
@given(carrier=st.sampled_from(sorted(SAME)), q=st.floats(min_value=0.001, max_value=1e9), data=st.data())
def test_converting_units_never_changes_tce(carrier: str, q: float, data: st.DataObject) -> None:
    unit, factor = data.draw(st.sampled_from(SAME[carrier]))
    base = firm_energy(RS, [CarrierAmount(carrier, q, SAME[carrier][0][0])], 2025)
    other = firm_energy(RS, [CarrierAmount(carrier, q * factor, unit)], 2025)
    assert other.tce == pytest.approx(base.tce, rel=1e-9)
    assert other.tce_dengjia == pytest.approx(base.tce_dengjia, rel=1e-9)
    assert other.tco2 == pytest.approx(base.tco2, rel=1e-9)
