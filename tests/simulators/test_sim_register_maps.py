"""Register maps as data: every shipped map loads, names its source, and the codec is exact."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.errors import RegisterMapError
from simulators.modbus import MODELS
from simulators.register_map import (
    RegisterSpec,
    decode,
    encode,
    load_register_map,
    load_register_map_file,
    model_names,
)

CATALOGUE_NAMES = {
    "elec_import_kwh",
    "elec_export_kwh",
    "elec_reactive_kvarh",
    "active_power_kw",
    "reactive_power_kvar",
    "power_factor",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "frequency_hz",
    "nox_mg_m3",
    "so2_mg_m3",
    "particulate_mg_m3",
    "o2_pct",
    "flue_flow_m3_h",
    "flue_temp_c",
    "cems_flag",
}


def test_every_model_has_a_map_with_its_source() -> None:
    assert sorted(MODELS) == model_names()
    for model in MODELS:
        rm = load_register_map(model)
        assert rm.source["document"].strip() and rm.source["edition"].strip()
        assert rm.metrics(), model
        assert set(rm.metrics()) <= CATALOGUE_NAMES, model


def test_metrics_use_the_catalogue_and_match_the_parkpulse_catalogue() -> None:
    # the simulators may not import parkpulse, tests may: the plain strings must be real metrics
    from parkpulse.catalogue import load_catalogue

    known = {m.name for m in load_catalogue().metrics}
    for model in MODELS:
        assert set(load_register_map(model).metrics()) <= known, model


def test_documented_addresses_of_the_manufacturers_maps() -> None:
    sdm = load_register_map("eastron-sdm630").by_name()
    assert (sdm["elec_import_kwh"].address, sdm["elec_import_kwh"].table, sdm["elec_import_kwh"].manual) == (
        0x48,
        "input",
        30073,
    )
    assert sdm["voltage_l1_v"].address == 0 and sdm["elec_export_kwh"].address == 0x4A
    iem = load_register_map("schneider-iem3255").by_name()
    # 1-based registers in the manual: 3204 is wire address 3203
    assert iem["elec_import_kwh"].address == 3203 and iem["elec_import_kwh"].manual == 3204
    assert iem["elec_import_kwh"].type == "i64" and iem["elec_import_kwh"].scale == 0.001
    dtsu = load_register_map("chint-dtsu666").by_name()
    assert dtsu["elec_import_kwh"].address == 0x401E and dtsu["voltage_l1_v"].scale == 0.1
    gen = load_register_map("generic-meter").by_name()
    assert gen["elec_import_kwh"].word_order == "little" and gen["elec_import_kwh"].type == "u32"


def _own_decode(type_: str, word_order: str, regs: list[int]) -> float:
    """An independent decoder: reorder words, then struct."""
    words = regs[::-1] if word_order == "little" else regs
    raw = b"".join(struct.pack(">H", w) for w in words)
    code = {
        "u16": ">H",
        "i16": ">h",
        "u32": ">I",
        "i32": ">i",
        "f32": ">f",
        "u64": ">Q",
        "i64": ">q",
        "f64": ">d",
    }[type_]
    return float(struct.unpack(code, raw)[0])


def test_golden_word_orders() -> None:
    big = RegisterSpec(name="x", address=0, type="f32")
    little = RegisterSpec(name="x", address=0, type="f32", word_order="little")
    assert encode(big, 230.5) == [0x4366, 0x8000]
    assert encode(little, 230.5) == [0x8000, 0x4366]
    counter = RegisterSpec(name="e", address=0, type="u32", word_order="little", scale=0.01)
    assert encode(counter, 123456.78) == [0x614E, 0x00BC]  # 12345678 = 0x00BC614E
    assert decode(counter, [0x614E, 0x00BC]) == pytest.approx(123456.78)
    wh = RegisterSpec(name="e", address=0, type="i64", scale=0.001)
    assert encode(wh, 1234.567) == [0, 0, 0x0012, 0xD687]  # 1 234 567 Wh
    swapped_bytes = RegisterSpec(name="v", address=0, type="u16", byte_order="little")
    assert encode(swapped_bytes, 0x1234) == [0x3412]


@given(
    st.sampled_from(["u16", "i16", "u32", "i32", "u64", "i64"]),
    st.sampled_from(["big", "little"]),
    st.integers(min_value=-(2**15), max_value=2**15 - 1),
)
def test_integer_round_trip(type_: str, word_order: str, value: int) -> None:
    if type_.startswith("u"):
        value = abs(value)
    spec = RegisterSpec(name="x", address=0, type=type_, word_order=word_order)  # type: ignore[arg-type]
    regs = encode(spec, value)
    assert len(regs) == spec.count
    assert decode(spec, regs) == value == _own_decode(type_, word_order, regs)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.sampled_from(["big", "little"]))
def test_float_round_trip_is_float32_precision(value: float, word_order: str) -> None:
    spec = RegisterSpec(name="x", address=0, type="f32", word_order=word_order)  # type: ignore[arg-type]
    regs = encode(spec, value)
    expected = struct.unpack(">f", struct.pack(">f", value))[0]
    assert decode(spec, regs) == expected == _own_decode("f32", word_order, regs)


def test_bad_map_is_reported_with_field_and_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad-meter.yaml"
    bad.write_text(
        "model: bad-meter\ntitle: t\nkind: meter\nsource: {document: d, edition: e}\n"
        "registers:\n  - {metric: voltage_l1_v, address: 0, type: f32}\n  - {metric: voltage_l2_v, address: 1, type: f33}\n",
        encoding="utf-8",
    )
    with pytest.raises(RegisterMapError) as exc:
        load_register_map_file(bad)
    assert exc.value.field == "registers[1].type" and exc.value.value == "f33"
    bad.write_text(
        "model: bad-meter\ntitle: t\nkind: meter\nsource: {document: d, edition: e}\n"
        "registers:\n  - {metric: voltage_l1_v, address: 0, type: f32}\n  - {metric: voltage_l2_v, address: 1, type: f32}\n",
        encoding="utf-8",
    )
    with pytest.raises(RegisterMapError, match="overlaps voltage_l1_v"):
        load_register_map_file(bad)
    bad.write_text("model: other\n", encoding="utf-8")
    with pytest.raises(RegisterMapError, match="must equal the file name"):
        load_register_map_file(bad)
