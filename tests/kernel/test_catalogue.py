import psycopg
import pytest

from parkpulse.catalogue import Metric, load_catalogue

REQUIRED = {
    "elec_import_kwh",
    "elec_export_kwh",
    "active_power_kw",
    "reactive_power_kvar",
    "power_factor",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "gas_volume_m3",
    "steam_mass_t",
    "water_volume_m3",
    "heat_gj",
    "compressed_air_m3",
    "good_count",
    "reject_count",
    "machine_state",
    "nox_mg_m3",
    "so2_mg_m3",
    "particulate_mg_m3",
    "o2_pct",
    "flue_flow_m3_h",
    "flue_temp_c",
}


def test_catalogue_covers_the_required_metrics() -> None:
    cat = load_catalogue()
    assert set(cat.by_name()) >= REQUIRED


def test_energy_counters_carry_a_carrier() -> None:
    cat = load_catalogue()
    for name in ("elec_import_kwh", "gas_volume_m3", "steam_mass_t", "water_volume_m3", "heat_gj"):
        m = cat.get(name)
        assert m.kind == "counter" and m.carrier, name
    assert cat.get("active_power_kw").carrier is None
    assert {"electricity", "natural_gas", "steam", "water", "heat"} <= cat.carriers()


def test_per_tariff_registers_stay_out_of_the_energy_totals() -> None:
    """尖/峰/平/谷 counters carry their period and no carrier: only the total register counts as energy."""
    cat = load_catalogue()
    by_tariff = {(m.direction, m.tariff) for m in cat.metrics if m.tariff}
    assert by_tariff == {(d, t) for d in ("import", "export") for t in ("sharp", "peak", "flat", "valley")}
    for m in cat.metrics:
        if m.tariff:
            assert m.kind == "counter" and m.carrier is None, m.name


def test_a_tariff_on_a_carrier_counter_is_refused() -> None:
    with pytest.raises(ValueError, match="per-tariff register"):
        Metric(
            id=999,
            name="x_kwh",
            unit="kWh",
            kind="counter",
            carrier="electricity",
            tariff="peak",
            zh="x",
            en="x",
        )


def test_migrate_stores_each_metric_tariff(db: str) -> None:
    with psycopg.connect(db) as conn:
        rows = dict(conn.execute("SELECT name, tariff FROM metrics WHERE tariff IS NOT NULL").fetchall())
    assert rows["elec_import_kwh_valley"] == "valley" and len(rows) == 8
