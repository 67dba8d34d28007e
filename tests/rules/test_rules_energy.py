"""Worked examples for every GB/T 2589-2020 conversion and the carbon factors, computed by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rules._energy import CarrierAmount, UnitError, firm_energy, steam_kgce_per_t, to_base
from rules._figures import Figure
from rules._ruleset import DATA_DIR, RuleSetError, load_rule_set

RS = load_rule_set("henan-2025")


def tce(carrier: str, q: float, unit: str, year: int = 2025) -> float:
    return firm_energy(RS, [CarrierAmount(carrier, q, unit)], year).tce


@pytest.mark.parametrize(
    ("carrier", "q", "unit", "kgce"),
    [
        ("electricity", 1, "MWh", 1000 * 0.1229),  # 1 MWh = 1 000 kWh x 0.1229 = 122.9 kgce
        ("electricity", 1, "10^4 kWh", 10000 * 0.1229),  # 万kWh: 10 000 x 0.1229 = 1 229 kgce
        ("electricity", 36, "GJ", 10000 * 0.1229),  # 36 GJ = 36 000 MJ / 3.6 = 10 000 kWh
        ("natural_gas", 1, "10^4 m3", 10000 * 1.2143),  # 10 000 m3 x 1.2143 = 12 143 kgce
        ("natural_gas", 250, "m3", 250 * 1.2143),  # 303.575 kgce
        ("raw_coal", 1, "t", 1000 * 0.7143),  # 714.3 kgce
        ("coke", 2, "t", 2000 * 0.9714),  # 1 942.8 kgce
        ("fuel_oil", 1, "t", 1000 * 1.4286),  # 1 428.6 kgce
        ("gasoline", 500, "kg", 500 * 1.4714),  # 735.7 kgce
        ("diesel", 1, "t", 1000 * 1.4571),  # 1 457.1 kgce
        ("lpg", 1, "t", 1000 * 1.7143),  # 1 714.3 kgce
        ("heat", 1, "GJ", 1000 * 0.03412),  # 1 000 MJ x 0.03412 = 34.12 kgce
        ("heat", 500, "MJ", 500 * 0.03412),  # 17.06 kgce
        ("steam", 10, "t", 10 * 76 / 0.7),  # 1.0 MPa: 76 kgoe/t / 0.7 = 108.5714 kgce/t
        ("water", 100, "m3", 100 * 0.2571),  # 100 m3 = 100 t x 0.2571 = 25.71 kgce
        ("water", 100, "t", 100 * 0.2571),
    ],
)
def test_dangliang_conversions(carrier: str, q: float, unit: str, kgce: float) -> None:
    assert tce(carrier, q, unit) == pytest.approx(kgce / 1000, rel=1e-12)


def test_carbon_worked_examples() -> None:
    # diesel 1 t: 42.652 GJ = 0.042652 TJ x 20.2 x 0.98 x 44/12 = 3.0958... t
    assert firm_energy(RS, [CarrierAmount("diesel", 1, "t")], 2025).tco2 == pytest.approx(
        0.042652 * 20.2 * 0.98 * 44 / 12
    )


def test_electricity_only_firm_dangliang_and_dengjia() -> None:
    # 2025 has no 等价值 figure of its own: the default 0.300 kgce/kWh (unverified) applies.
    # 当量值: 250 000 kWh x 0.1229 = 30 725 kgce = 30.725 tce
    # 等价值: 250 000 kWh x 0.300  = 75 000 kgce = 75.0 tce
    r = firm_energy(RS, [CarrierAmount("electricity", 250_000, "kWh")], 2025)
    assert r.tce == pytest.approx(30.725, rel=1e-12) and r.tce_dengjia == pytest.approx(75.0, rel=1e-12)
    dj = r.per_carrier[0]["coefficients"]["dengjia"]  # type: ignore[index]
    assert dj["year"] == 2025 and dj["figure_year"] == "default" and dj["verified"] is False
    assert dj["value"] == pytest.approx(0.30, abs=0.005)  # about 0.30 kgce/kWh, not the old 0.404
    assert any("no 2025 figure configured; the default 0.3 kgce/kWh, unverified" in n for n in r.notes), (
        r.notes
    )
    # 2020 has its own figure: 250 000 x 0.3055 = 76 375 kgce; 当量值 unchanged
    r20 = firm_energy(RS, [CarrierAmount("electricity", 250_000, "kWh")], 2020)
    assert r20.tce_dengjia == pytest.approx(76.375, rel=1e-12) and r20.tce == pytest.approx(30.725, rel=1e-12)
    assert r20.per_carrier[0]["coefficients"]["dengjia"]["figure_year"] == 2020  # type: ignore[index]


def test_dangliang_electricity_derivation() -> None:
    # 860 kcal/kWh / 7 000 kcal/kgce = 0.122857 → 0.1229; 3.6 MJ / 29.3076 MJ = 0.122835 → 0.1228
    el = RS.coal.carriers["electricity"].dangliang
    assert el is not None and round(860 / 7000, 4) == el.value == 0.1229
    assert round(3.6 / 29.3076, 4) == 0.1228 and "860 kcal" in (el.note or "")


@pytest.mark.parametrize(
    ("pressure", "kgoe"),
    [
        (12.0, 92),
        (7.0, 92),
        (6.99, 90),  # >= 7.0 MPa: 92 kgoe/t
        (4.5, 90),
        (4.49, 88),  # >= 4.5: 90
        (3.0, 88),
        (2.99, 85),  # >= 3.0: 88
        (2.0, 85),
        (1.99, 80),  # >= 2.0: 85
        (1.2, 80),
        (1.19, 76),  # >= 1.2: 80
        (1.0, 76),
        (0.8, 76),
        (0.79, 72),  # >= 0.8: 76
        (0.6, 72),
        (0.59, 66),  # >= 0.6: 72
        (0.3, 66),
        (0.29, 55),
        (0.0, 55),  # >= 0.3: 66; below 0.3: 55
    ],
)
def test_steam_band_edges(pressure: float, kgoe: float) -> None:
    # kgce/t = kgoe/t / 0.7, e.g. 92 / 0.7 = 131.4286; 55 / 0.7 = 78.5714
    table = RS.coal.steam_by_pressure
    assert table is not None
    kgce, got_kgoe, _ = steam_kgce_per_t(table, pressure)
    assert got_kgoe == kgoe and kgce == pytest.approx(kgoe / 0.7, rel=1e-12)


def test_steam_pressure_of_the_rule_set_drives_the_firm_total() -> None:
    # a park network at 0.6 MPa: 10 t x 72 / 0.7 = 1 028.5714 kgce (at the shipped 1.0 MPa: 10 x 76 / 0.7)
    coal = RS.coal.model_copy(deep=True)
    steam = coal.carriers["steam"].model_copy(
        update={"pressure_mpa": Figure(value=0.6, unit="MPa", source="test")}
    )
    coal.carriers["steam"] = steam
    rs = RS.model_copy(update={"coal": coal})
    r = firm_energy(rs, [CarrierAmount("steam", 10, "t")], 2025)
    assert r.tce == pytest.approx(10 * 72 / 0.7 / 1000, rel=1e-12)
    assert "0.6 MPa is in the band >= 0.6 MPa" in str(r.per_carrier[0]["coefficients"])
    assert RS.coal.steam_by_pressure is not None
    with pytest.raises(UnitError, match="pressure_mpa"):
        steam_kgce_per_t(RS.coal.steam_by_pressure, -0.1)


def test_grid_factor_by_year_and_fallback() -> None:
    # Central China 2023: 1 MWh x 0.5271 tCO2/MWh = 0.5271 t; 2022: 0.5395 t
    assert firm_energy(RS, [CarrierAmount("electricity", 1, "MWh")], 2023).tco2 == pytest.approx(0.5271)
    assert firm_energy(RS, [CarrierAmount("electricity", 1, "MWh")], 2022).tco2 == pytest.approx(0.5395)
    # 2025 has no factor: the latest earlier value of the 华中 series (2023) is used, and said so
    r = firm_energy(RS, [CarrierAmount("electricity", 1, "MWh")], 2025)
    assert r.tco2 == pytest.approx(0.5271)
    ef = r.per_carrier[0]["emission_factor"]
    assert ef["factor_year"] == 2023 and ef["factor_region"] == "central_china" and ef["year"] == 2025  # type: ignore[index]
    assert "latest earlier value of the central_china series (2023)" in ef["fallback"]  # type: ignore[index]
    assert any("central_china grid factor of 2023" in n for n in r.notes), r.notes
    assert r.tco2 != pytest.approx(0.5703)  # never the 2022 emissions-trading factor


def test_grid_fallback_to_the_national_series_and_before_the_series() -> None:
    # a region whose series starts in 2023 falls back to the national series for 2022 (0.5366)
    em = RS.emissions.model_copy(deep=True)
    cc = em.grids["central_china"]
    em.grids["central_china"] = cc.model_copy(update={"by_year": {2023: cc.by_year[2023]}})
    rs = RS.model_copy(update={"emissions": em})
    r = firm_energy(rs, [CarrierAmount("electricity", 1, "MWh")], 2022)
    assert r.tco2 == pytest.approx(0.5366)
    ef = r.per_carrier[0]["emission_factor"]
    assert ef["factor_region"] == "national" and ef["factor_year"] == 2022  # type: ignore[index]
    # 2019: no factor for it or any earlier year → no CO2 for electricity, carbon marked incomplete
    old = firm_energy(RS, [CarrierAmount("electricity", 1, "MWh")], 2019)
    assert old.tco2 == 0 and old.carbon_complete is False
    assert any("no grid factor for 2019 or an earlier year" in n for n in old.notes), old.notes


def test_natural_gas_energy_and_co2_on_one_heating_value() -> None:
    # gas-field basis: 8 500 kcal/m3 x 4.1868 = 35 587.8 kJ/m3; 1.2143 kgce/m3 x 29 307 kJ = 35 587.5 kJ
    # 10 000 m3: energy 12 143 kgce = 12.143 tce
    #            CO2 0.35588 TJ x 15.3 = 5.444964 tC x 0.99 = 5.390514 x 44/12 = 19.7652 t (1.9765 kgCO2/m3)
    r = firm_energy(RS, [CarrierAmount("natural_gas", 10_000, "m3")], 2025)
    assert r.tce == pytest.approx(12.143, rel=1e-12)
    assert r.tco2 == pytest.approx(0.35588 * 15.3 * 0.99 * 44 / 12, rel=1e-12)
    assert r.tco2 == pytest.approx(19.7652, abs=1e-4)
    ncv_kj = RS.emissions.fuels["natural_gas"].ncv.value * 1e-4 * 1e6
    assert ncv_kj == pytest.approx(1.2143 * 29307, rel=1e-4)
    assert ncv_kj == pytest.approx(8500 * 4.1868, rel=1e-4)
    # the oil-field gas keeps its own basis: 38 931 kJ/m3 ↔ 1.3300 kgce/m3; 10 000 m3 → 21.622 tCO2
    oil = firm_energy(RS, [CarrierAmount("natural_gas_oilfield", 10_000, "m3")], 2025)
    assert oil.tco2 == pytest.approx(0.38931 * 15.3 * 0.99 * 44 / 12, rel=1e-12)
    assert oil.tce == pytest.approx(13.3, rel=1e-12)


def test_a_fuel_on_two_heating_values_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    carbon = data / "carbon" / "emission-factors.yaml"
    doc = yaml.safe_load(carbon.read_text(encoding="utf-8"))
    doc["fuels"]["natural_gas"]["ncv"]["value"] = 389.31  # the oil-field value with the gas-field kgce
    carbon.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RuleSetError) as exc:
        load_rule_set("henan-2025", data_dir=data)
    (p,) = [
        p for p in exc.value.problems if p.path == "carbon/emission-factors.yaml.fuels.natural_gas.ncv.value"
    ]
    assert p.value == 389.31 and "one heating value" in str(exc.value)


def test_water_coefficient_stays_visible_as_unsettled() -> None:
    water = RS.coal.carriers["water"].dangliang
    assert water is not None and water.value == 0.2571 and water.verified is False
    assert "0.0857" in (water.note or "")


def test_total_sums_carriers_and_excludes_compressed_air() -> None:
    # 122.9 (1 MWh) + 12 143 (10^4 m3 gas) = 12 265.9 kgce; compressed air is listed but not counted
    r = firm_energy(
        RS,
        [
            CarrierAmount("electricity", 1, "MWh"),
            CarrierAmount("natural_gas", 10000, "m3"),
            CarrierAmount("compressed_air", 5000, "m3"),
        ],
        2025,
    )
    assert r.tce == pytest.approx(12.2659)
    assert any("compressed_air" in n for n in r.notes)


@pytest.mark.parametrize(
    ("carrier", "unit", "why"),
    [
        ("unobtainium", "kg", "unknown carrier"),
        ("electricity", "furlongs", "unknown unit"),
        ("natural_gas", "kWh", "cannot measure natural_gas"),
    ],
)
def test_unknown_carriers_and_units_are_errors(carrier: str, unit: str, why: str) -> None:
    with pytest.raises(UnitError, match=why):
        to_base(RS, carrier, 1.0, unit)


SAME = {
    "electricity": [
        ("kWh", 1.0),
        ("MWh", 1e-3),
        ("10^4 kWh", 1e-4),
        ("MJ", 3.6),
        ("GJ", 3.6e-3),
        ("度", 1.0),
    ],
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
