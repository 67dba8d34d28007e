"""The Modbus TCP simulator through the real pymodbus TCP stack, decoded by the test's own decoder."""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse

from simulators.errors import SimulatorError
from simulators.modbus import MODELS, ModbusSimulator
from simulators.register_map import RegisterSpec, load_register_map

_CODES = {
    "u16": ">H",
    "i16": ">h",
    "u32": ">I",
    "i32": ">i",
    "f32": ">f",
    "u64": ">Q",
    "i64": ">q",
    "f64": ">d",
}


def own_decode(spec: RegisterSpec, regs: list[int]) -> float:
    """The test's decoder, written apart from the simulator's codec."""
    words = list(regs)
    if spec.byte_order == "little":
        words = [((w << 8) & 0xFF00) | (w >> 8) for w in words]
    if spec.word_order == "little":
        words = words[::-1]
    raw = struct.unpack(_CODES[spec.type], b"".join(w.to_bytes(2, "big") for w in words))[0]
    return float(raw) * spec.scale + spec.offset


def read(client: ModbusTcpClient, spec: RegisterSpec, device_id: int) -> list[int]:
    fn = client.read_input_registers if spec.table == "input" else client.read_holding_registers
    rr = fn(spec.address, count=spec.count, device_id=device_id)
    assert not rr.isError(), (spec.name, rr)
    return list(rr.registers)


@pytest.fixture
def sim() -> Iterator[ModbusSimulator]:
    s = ModbusSimulator(host="127.0.0.1", port=0)
    for i, model in enumerate(MODELS, start=1):
        s.add_device(i, model, seed=i)
    with s:
        yield s


@pytest.fixture
def client(sim: ModbusSimulator) -> Iterator[ModbusTcpClient]:
    c = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.5, retries=0)
    assert c.connect()
    yield c
    c.close()


def test_every_model_reads_what_truth_says(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    for device_id, dev in sim.devices.items():
        dev.freeze()
        truth = dev.truth(include_extra=True)
        rm = load_register_map(dev.model)
        assert set(dev.truth()) == set(rm.metrics())
        for spec in rm.registers:
            value = own_decode(spec, read(client, spec, device_id))
            key = spec.metric or spec.name
            assert value == truth[key], (dev.model, key)
            assert math.isfinite(value)


def test_golden_values_including_word_order(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    gen = sim.device(6)
    assert gen.model == "generic-meter"
    gen.freeze(
        {"elec_import_kwh": 123456.78, "voltage_l1_v": 230.1, "power_factor": -0.95, "active_power_kw": 55.5}
    )
    # u32 ×0.01 kWh, low word first: 12345678 = 0x00BC614E -> [0x614E, 0x00BC]
    assert client.read_holding_registers(120, count=2, device_id=6).registers == [0x614E, 0x00BC]
    assert client.read_holding_registers(100, count=1, device_id=6).registers == [2301]
    assert client.read_holding_registers(104, count=1, device_id=6).registers == [(-950) & 0xFFFF]
    # f32 55.5 = 0x425E0000, low word first
    assert client.read_holding_registers(112, count=2, device_id=6).registers == [0x0000, 0x425E]
    truth = gen.truth()
    assert truth["elec_import_kwh"] == pytest.approx(123456.78, abs=1e-9)
    assert truth["power_factor"] == pytest.approx(-0.95)

    sdm = sim.device(1)
    sdm.freeze({"elec_import_kwh": 1000.5, "active_power_kw": 12.25})
    assert client.read_input_registers(0x48, count=2, device_id=1).registers == [
        0x447A,
        0x2000,
    ]  # 1000.5 f32 ABCD
    assert client.read_input_registers(0x34, count=2, device_id=1).registers == [0x463F, 0x6800]  # 12250 W
    assert sdm.truth()["active_power_kw"] == pytest.approx(12.25)

    iem = sim.device(4)
    iem.freeze({"elec_import_kwh": 4294967.296})  # 2^32 Wh: needs the upper words of the INT64
    assert client.read_holding_registers(3203, count=4, device_id=4).registers == [0, 1, 0, 0]


def test_values_are_plausible_and_consistent(sim: ModbusSimulator) -> None:
    dev = sim.device(1)
    t = dev.truth(include_extra=True)
    for phase in (1, 2, 3):
        v, i, pf = t[f"voltage_l{phase}_v"], t[f"current_l{phase}_a"], t[f"power_factor_l{phase}"]
        assert 200 < v < 240 and 0.5 < pf <= 1
        assert v * i * pf / 1000 == pytest.approx(t[f"active_power_l{phase}_kw"], rel=1e-5)
    assert t["active_power_kw"] == pytest.approx(
        t["active_power_l1_kw"] + t["active_power_l2_kw"] + t["active_power_l3_kw"], rel=1e-5
    )
    pf_total = t["active_power_kw"] / math.hypot(t["active_power_kw"], t["reactive_power_kvar"])
    assert t["power_factor"] == pytest.approx(pf_total, rel=1e-4)
    assert 49.9 < t["frequency_hz"] < 50.1


def test_counters_only_rise_while_gauges_move() -> None:
    sim = ModbusSimulator()
    dev = sim.add_device(1, "chint-dtsu666", seed=7, tick_s=0.05, rated_power_kw=3600)  # 1 kWh/s at full load
    with sim:
        c = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.5, retries=0)
        c.connect()
        energy, power = [], []
        for _ in range(25):
            regs = c.read_holding_registers(0x401E, count=2, device_id=1).registers
            energy.append(struct.unpack(">f", struct.pack(">HH", *regs))[0])
            regs = c.read_holding_registers(0x2012, count=2, device_id=1).registers
            power.append(struct.unpack(">f", struct.pack(">HH", *regs))[0])
            time.sleep(0.04)
        c.close()
    assert all(b >= a for a, b in itertools.pairwise(energy))
    assert energy[-1] > energy[0]
    assert len(set(power)) > 5  # noise: the gauge moves from step to step
    assert dev.stats.reads == 50


def test_timeout_fault_silences_only_that_device(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    sim.device(1).inject("timeout")
    t0 = time.monotonic()
    with pytest.raises(ModbusIOException):
        client.read_input_registers(0, count=2, device_id=1)
    assert time.monotonic() - t0 >= 0.4  # the client waited for its timeout
    other = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.5, retries=0)
    other.connect()
    try:
        assert not other.read_holding_registers(0x2006, count=2, device_id=3).isError()
        sim.device(1).inject(None)
        assert not other.read_input_registers(0, count=2, device_id=1).isError()
    finally:
        other.close()
    assert sim.device(1).stats.timeouts == 1


def test_exception_fault_answers_an_exception(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    sim.device(3).inject("exception")
    rr = client.read_holding_registers(0x2006, count=2, device_id=3)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 0x04
    sim.device(3).inject("exception", code=0x02)
    rr = client.read_holding_registers(0x2006, count=2, device_id=3)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 0x02
    assert not client.read_input_registers(0, count=2, device_id=1).isError()  # neighbours unaffected
    sim.device(3).inject(None)
    assert not client.read_holding_registers(0x2006, count=2, device_id=3).isError()


def test_counter_reset_and_meter_replacement(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    dev = sim.device(4)  # iEM3255, INT64 Wh
    spec = load_register_map("schneider-iem3255").by_name()["elec_import_kwh"]
    before = own_decode(spec, read(client, spec, 4))
    assert before > 1000
    dev.inject("counter_reset")
    after = own_decode(spec, read(client, spec, 4))
    assert 0 <= after < 1.0
    dev.inject("meter_replaced", base=777.0)
    replaced = own_decode(spec, read(client, spec, 4))
    assert replaced == pytest.approx(777.0, abs=0.5)
    dev.inject("meter_replaced")  # an arbitrary new base
    assert own_decode(spec, read(client, spec, 4)) != pytest.approx(777.0, abs=0.5)


def test_clock_drift_moves_the_clock_register() -> None:
    now = [1_800_000_000.0]
    sim = ModbusSimulator(clock=lambda: now[0])
    dev = sim.add_device(9, "cems-analyser", seed=1)
    with sim:
        c = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.5, retries=0)
        c.connect()
        regs = c.read_holding_registers(14, count=2, device_id=9).registers
        assert (regs[0] << 16 | regs[1]) == 1_800_000_000
        dev.inject("clock_drift", rate=0.1)
        now[0] += 600
        regs = c.read_holding_registers(14, count=2, device_id=9).registers
        assert (regs[0] << 16 | regs[1]) == 1_800_000_660  # 10 min at +10 %
        dev.inject(None)
        regs = c.read_holding_registers(14, count=2, device_id=9).registers
        assert (regs[0] << 16 | regs[1]) == 1_800_000_600
        c.close()


def test_unknown_ids_gaps_and_writes(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    rr = client.read_input_registers(0, count=2, device_id=99)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 0x0B  # gateway target did not respond
    # a coalesced read over reserved registers inside a block reads zeros
    rr = client.read_input_registers(0, count=0x50, device_id=1)
    assert not rr.isError() and rr.registers[0x12:0x1E] == [0] * 12
    # beyond the map: illegal data address
    rr = client.read_input_registers(0x0100, count=2, device_id=1)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 0x02
    # wrong table (SDM630 measurements are input registers only)
    rr = client.read_holding_registers(0x48, count=2, device_id=1)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == 0x02
    rr = client.write_register(0x2006, 1, device_id=3)
    assert isinstance(rr, ExceptionResponse)


def test_flaky_device_drops_a_share_of_requests() -> None:
    sim = ModbusSimulator()
    dev = sim.add_device(5, "eastron-sdm630", seed=3, timeout_ratio=0.5)
    with sim:
        c = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.2, retries=0)
        c.connect()
        ok = 0
        for _ in range(16):
            try:
                ok += not c.read_input_registers(0, count=2, device_id=5).isError()
            except ModbusIOException:
                c.close()
                c.connect()
        c.close()
    assert 0 < ok < 16
    assert dev.stats.timeouts == 16 - ok


def test_device_added_after_start_and_bad_arguments(sim: ModbusSimulator, client: ModbusTcpClient) -> None:
    dev = sim.add_device(42, "generic-meter", seed=42)
    dev.freeze({"voltage_l2_v": 231.4})
    assert client.read_holding_registers(101, count=1, device_id=42).registers == [2314]
    with pytest.raises(SimulatorError, match="already"):
        sim.add_device(42, "generic-meter")
    with pytest.raises(SimulatorError, match="unknown model"):
        sim.add_device(43, "no-such-meter")
    with pytest.raises(SimulatorError, match=r"1\.\.247"):
        sim.add_device(0, "generic-meter")
    with pytest.raises(SimulatorError, match="unknown fault"):
        dev.inject("melted")
    with pytest.raises(SimulatorError, match="not served"):
        dev.freeze({"nox_mg_m3": 1.0})
    with pytest.raises(SimulatorError, match="rated_power_kw"):
        sim.add_device(44, "acrel-adl400", rated_power_kw=500)
    with pytest.raises(
        SimulatorError, match=r"sim\.nox_limit_mg_m3: unknown simulation parameter for a meter"
    ):
        sim.add_device(45, "eastron-sdm630", nox_limit_mg_m3=100)
    with pytest.raises(SimulatorError, match=r"sim\.shifts: must be a list"):
        sim.add_device(46, "eastron-sdm630", shifts=[[0, 8]])


def test_unfreeze_continues_without_a_jump() -> None:
    now = [1_800_000_000.0]
    sim = ModbusSimulator(clock=lambda: now[0])
    dev = sim.add_device(1, "eastron-sdm630", seed=1, rated_power_kw=360)
    e0 = dev.truth()["elec_import_kwh"]
    dev.freeze()
    now[0] += 3600
    assert dev.truth()["elec_import_kwh"] == e0
    dev.unfreeze()
    now[0] += 10
    e1 = dev.truth()["elec_import_kwh"]
    assert e0 < e1 < e0 + 360 * 10 / 3600 * 1.5


def test_counter_rollover_wraps_the_u32_register() -> None:
    now = [1_800_000_000.0]
    sim = ModbusSimulator(clock=lambda: now[0])
    dev = sim.add_device(1, "generic-meter", seed=1, rated_power_kw=630)
    dev.inject("counter_rollover", margin=0.5)
    near = dev.truth()["elec_import_kwh"]
    assert near == pytest.approx(42_949_672.96 - 0.5, abs=0.011)
    now[0] += 60  # ≥ 1 kWh at this load: past the span
    wrapped = dev.truth()["elec_import_kwh"]
    assert 0 <= wrapped < 20
    with pytest.raises(SimulatorError, match="no wrapping"):
        sim.add_device(2, "eastron-sdm630").inject("counter_rollover")
    assert [e[1] for e in dev.stats.events] == ["counter_rollover"]


def test_port_in_use_is_a_clear_error_and_a_simulator_restarts(sim: ModbusSimulator) -> None:
    other = ModbusSimulator(port=sim.port)
    other.add_device(1, "eastron-sdm630")
    with pytest.raises(SimulatorError, match=rf"127\.0\.0\.1:{sim.port}.*in use"):
        other.start()
    again = ModbusSimulator()
    again.add_device(1, "eastron-sdm630")
    for _ in range(2):
        with again:
            c = ModbusTcpClient("127.0.0.1", port=again.port, timeout=0.5, retries=0)
            c.connect()
            assert not c.read_input_registers(0, count=2, device_id=1).isError()
            c.close()
