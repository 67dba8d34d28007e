"""The RTU simulator on a pseudo-terminal, read by a pymodbus serial client (pyserial underneath)."""

from __future__ import annotations

import os
import struct
import time

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse

from simulators.errors import SimulatorError
from simulators.rtu import RtuSimulator


def test_rtu_bus_answers_a_serial_client() -> None:
    bus = RtuSimulator(baudrate=19200, parity="E", stopbits=1)
    meter = bus.add_device(3, "chint-dtsu666", seed=3)
    gen = bus.add_device(4, "generic-meter", seed=4)
    with bus:
        assert os.path.exists(bus.port_path) and bus.port_path.startswith("/dev/")
        # a pty refuses PARENB: the client opens it with parity N (see the module docstring)
        client = ModbusSerialClient(bus.port_path, baudrate=19200, parity="N", timeout=0.5, retries=0)
        assert client.connect()
        try:
            meter.freeze({"voltage_l1_v": 231.0, "elec_import_kwh": 5000.25})
            rr = client.read_holding_registers(0x2006, count=2, device_id=3)
            assert struct.unpack(">f", struct.pack(">HH", *rr.registers))[0] * 0.1 == pytest.approx(231.0, rel=1e-6)
            rr = client.read_holding_registers(0x401E, count=2, device_id=3)
            assert struct.unpack(">f", struct.pack(">HH", *rr.registers))[0] == meter.truth()["elec_import_kwh"] == 5000.25
            gen.freeze({"elec_import_kwh": 1.5})
            assert client.read_holding_registers(120, count=2, device_id=4).registers == [150, 0]
            # nobody answers for an id that is not on the bus (as on RS-485)
            with pytest.raises(ModbusIOException):
                client.read_holding_registers(120, count=2, device_id=9)
            gen.inject("exception", code=2)
            rr = client.read_holding_registers(120, count=2, device_id=4)
            assert isinstance(rr, ExceptionResponse) and rr.exception_code == 2
            gen.inject("timeout")
            with pytest.raises(ModbusIOException):
                client.read_holding_registers(120, count=2, device_id=4)
            gen.inject(None)
            assert not client.read_holding_registers(0x2044, count=2, device_id=3).isError()
        finally:
            client.close()
    assert not os.path.exists(bus.port_path)  # the pty is gone once the bus stops


def test_line_timing_is_emulated() -> None:
    bus = RtuSimulator(baudrate=9600)
    bus.add_device(1, "chint-dtsu666", seed=1)
    with bus:
        client = ModbusSerialClient(bus.port_path, baudrate=9600, timeout=1.0, retries=0)
        assert client.connect()
        try:
            client.read_holding_registers(0x2000, count=2, device_id=1)  # warm-up
            t0 = time.monotonic()
            rr = client.read_holding_registers(0x2000, count=70, device_id=1)
            elapsed = time.monotonic() - t0
        finally:
            client.close()
    assert not rr.isError() and len(rr.registers) == 70
    # 8-byte request + 145-byte reply at 10 bits/char, 9600 Bd: >= 0.159 s on the "line"
    assert elapsed >= (8 + 5 + 140) * bus.char_time_s * 0.95


def test_bad_line_settings_are_refused() -> None:
    with pytest.raises(SimulatorError, match="parity"):
        RtuSimulator(parity="X")
    with pytest.raises(SimulatorError, match="baudrate"):
        RtuSimulator(baudrate=0)
