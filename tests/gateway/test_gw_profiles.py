"""Every shipped profile read from its simulator through the real Modbus TCP stack, with golden values."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient
from test_gw_helpers import sim_factory  # noqa: F401  (fixture)

from gateway.config import parse_config
from gateway.sources.modbus import (
    MAX_REGISTERS,
    decode_value,
    list_profiles,
    load_profile,
    parse_profile,
    plan_requests,
    read_device_once,
)
from parkpulse.errors import ValidationReport

SHIPPED = [
    "eastron-sdm630",
    "acrel-adl400",
    "chint-dtsu666",
    "schneider-iem3255",
    "cems-analyser",
    "generic-meter",
]


def test_every_required_profile_is_shipped_with_its_source() -> None:
    profiles = list_profiles()
    for name in SHIPPED:
        p = profiles[name]
        assert p.source.document and p.source.edition, name
    from simulators.modbus import MODELS

    assert set(MODELS) <= set(profiles), "profile names equal the simulator model names"


def _cfg(port: int, devices: list[dict[str, Any]], tmp: Path) -> Any:
    return parse_config(
        {
            "gateway": {"park": "p", "firm": "f", "id": "g"},
            "uplink": {"url": "mqtt://127.0.0.1:1"},
            "spool": {"path": str(tmp / "s.db")},
            "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": port}],
            "devices": devices,
        }
    )


@pytest.mark.parametrize("model", SHIPPED)
def test_profile_decodes_simulator_golden_values(model: str, sim_factory: Any, tmp_path: Path) -> None:  # noqa: F811
    sim = sim_factory()
    dev = sim.add_device(device_id=7, model=model, seed=11)
    sim.start()
    dev.freeze()
    truth = dev.truth()
    cfg = _cfg(sim.port, [{"id": "d", "bus": "lan", "device_id": 7, "profile": model}], tmp_path)
    plan, res = asyncio.run(read_device_once(cfg, cfg.devices[0]))
    assert res.error is None
    got = {r[1]: r[3] for r in res.rows}
    assert set(got) == set(truth), "the profile reads exactly the metrics the device serves"
    for metric, want in truth.items():
        assert got[metric] == pytest.approx(want, rel=1e-5, abs=1e-6), metric
    # the same registers read raw with pymodbus: a word-order mistake would not give the golden value
    assert len(plan.requests) <= len(truth)


def test_generic_meter_word_order_matters(sim_factory: Any) -> None:  # noqa: F811
    """generic-meter puts the low word first (CDAB): reading it big-endian gives a wrong number."""
    sim = sim_factory()
    dev = sim.add_device(device_id=1, model="generic-meter", seed=3)
    sim.start()
    dev.freeze({"elec_import_kwh": 123456.78, "active_power_kw": 42.5})
    client = ModbusTcpClient("127.0.0.1", port=sim.port)
    client.connect()
    try:
        energy = client.read_holding_registers(120, count=2, device_id=1).registers
        power = client.read_holding_registers(112, count=2, device_id=1).registers
    finally:
        client.close()
    assert decode_value(energy, "u32", "little") * 0.01 == pytest.approx(123456.78)
    assert decode_value(energy, "u32", "big") * 0.01 != pytest.approx(123456.78)
    assert decode_value(power, "f32", "little") == pytest.approx(42.5)
    assert ModbusTcpClient.convert_from_registers(
        power, ModbusTcpClient.DATATYPE.FLOAT32, word_order="little"
    ) == pytest.approx(42.5)


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.sampled_from(["big", "little"]))
def test_decoder_agrees_with_pymodbus_for_float32(v: float, word_order: str) -> None:
    raw = struct.pack(">f", v)
    words = [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]
    if word_order == "little":
        words.reverse()
    ref = ModbusTcpClient.convert_from_registers(
        words, ModbusTcpClient.DATATYPE.FLOAT32, word_order=word_order
    )  # type: ignore[arg-type]
    assert decode_value(words, "f32", word_order) == ref


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from(["big", "little"]))
def test_decoder_agrees_with_pymodbus_for_int64(v: int, word_order: str) -> None:
    raw = struct.pack(">q", v)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 8, 2)]
    if word_order == "little":
        words.reverse()
    ref = ModbusTcpClient.convert_from_registers(words, ModbusTcpClient.DATATYPE.INT64, word_order=word_order)  # type: ignore[arg-type]
    assert decode_value(words, "i64", word_order) == float(ref)


def test_byte_swapped_registers() -> None:
    # 1.0f = 0x3F800000; BADC order: bytes swapped inside each word
    assert decode_value([0x803F, 0x0000], "f32", "big", "little") == 1.0
    assert decode_value([0x0000, 0x803F], "f32", "little", "little") == 1.0
    assert decode_value([0xFFFF], "i16") == -1.0
    assert decode_value([0xFFFF], "u16") == 65535.0


def test_requests_are_coalesced_within_limits() -> None:
    p = load_profile("schneider-iem3255")
    reqs = plan_requests(p.resolved(), max_gap=p.max_gap)
    assert all(r.count <= MAX_REGISTERS for r in reqs)
    assert len(reqs) < len(p.registers)
    # with no gap allowed nothing non-contiguous is merged
    strict = plan_requests(p.resolved(), max_gap=0)
    assert len(strict) > len(reqs)
    # a profile with 200 contiguous registers is split at 125
    prof = parse_profile(
        {
            "name": "big",
            "manufacturer": "x",
            "model": "y",
            "source": {"document": "test map", "edition": "1"},
            "address_base": 0,
            "registers": [
                {"metric": m, "address": i * 40, "unit": u}
                for i, (m, u) in enumerate(
                    [
                        ("voltage_l1_v", "V"),
                        ("voltage_l2_v", "V"),
                        ("voltage_l3_v", "V"),
                        ("current_l1_a", "A"),
                        ("current_l2_a", "A"),
                    ]
                )
            ],
        },
        "test",
    )
    reqs = plan_requests(prof.resolved(), max_gap=40)
    assert [(r.address, r.count) for r in reqs] == [(0, 122), (160, 2)]


def test_profile_errors_are_reported_with_paths() -> None:
    with pytest.raises(ValidationReport) as ei:
        parse_profile(
            {
                "name": "bad",
                "manufacturer": "x",
                "model": "y",
                "source": {"document": "test map", "edition": "1"},
                "address_base": 1,
                "registers": [
                    {"metric": "voltage_l1_v", "address": 10, "unit": "V"},
                    {"metric": "voltage_l2_v", "address": 11, "unit": "V"},
                    {"metric": "no_such_metric", "address": 20, "unit": "V"},
                    {"metric": "current_l1_a", "address": 30, "unit": "mA"},
                    {"metric": "current_l2_a", "address": 0, "unit": "A"},
                ],
            },
            "bad.yaml",
        )
    paths = {p.path for p in ei.value.problems}
    assert {
        "registers[1].address",
        "registers[2].metric",
        "registers[3].unit",
        "registers[4].address",
    } <= paths


def test_relative_profiles_dir_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # loaded by a relative path from another folder, the profiles are still found at run time
    import yaml

    from gateway.config import load_config
    from gateway.sources.modbus import PROFILES_DIR, plan_device

    conf = tmp_path / "conf"
    (conf / "prof").mkdir(parents=True)
    mine = yaml.safe_load((PROFILES_DIR / "generic-meter.yaml").read_text(encoding="utf-8")) | {
        "name": "mine"
    }
    (conf / "prof" / "mine.yaml").write_text(yaml.safe_dump(mine), encoding="utf-8")
    (conf / "gw.yaml").write_text(
        yaml.safe_dump(
            {
                "gateway": {"park": "p", "firm": "f", "id": "g"},
                "uplink": {"url": "mqtt://127.0.0.1:1"},
                "spool": {"path": "s.db"},
                "profiles_dir": "prof",
                "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1"}],
                "devices": [{"id": "d", "bus": "lan", "device_id": 1, "profile": "mine"}],
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config("conf/gw.yaml")
    assert cfg.profiles_dir == Path("conf/prof")
    assert plan_device(cfg, cfg.devices[0]).requests
