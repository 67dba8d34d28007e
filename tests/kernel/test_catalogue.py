from parkpulse.catalogue import load_catalogue

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
