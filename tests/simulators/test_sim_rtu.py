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
            assert struct.unpack(">f", struct.pack(">HH", *rr.registers))[0] * 0.1 == pytest.approx(
                231.0, rel=1e-6
            )
            rr = client.read_holding_registers(0x401E, count=2, device_id=3)
            assert (
                struct.unpack(">f", struct.pack(">HH", *rr.registers))[0]
                == meter.truth()["elec_import_kwh"]
                == 5000.25
            )
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


def _crc16(frame: bytes) -> bytes:
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def _read_request(unit: int, address: int, count: int) -> bytes:
    pdu = bytes([unit, 3]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return pdu + _crc16(pdu)


def test_talking_over_a_reply_collides_on_the_half_duplex_bus() -> None:
    import serial

    bus = RtuSimulator(baudrate=1200)  # slow line: wide windows, robust on a busy machine
    bus.add_device(1, "generic-meter", seed=1)
    bus.add_device(2, "generic-meter", seed=2)
    with bus:
        port = serial.Serial(bus.port_path, baudrate=1200, timeout=0.05)
        try:
            # polite master: request, wait for the reply, next request
            port.write(_read_request(1, 100, 2))
            time.sleep(0.3)
            reply = port.read(64)
            assert len(reply) == 9 and reply[-2:] == _crc16(reply[:-2]) and bus.collisions == 0
            # impatient master: the second request goes out while device 1 still answers
            port.write(_read_request(1, 100, 2))
            time.sleep(0.1)  # request on the line 0-67 ms, reply 67-142 ms
            port.write(_read_request(2, 100, 2))
            time.sleep(0.4)
            garbage = port.read(256)
            # the bus recovers: the next polite request is answered
            for _ in range(3):
                port.write(_read_request(2, 100, 2))
                time.sleep(0.3)
                reply = port.read(64)
                if len(reply) == 9:
                    break
            assert len(reply) == 9 and reply[-2:] == _crc16(reply[:-2])
        finally:
            port.close()
    assert bus.collisions == 1
    assert garbage and garbage[-2:] != _crc16(garbage[:-2])  # nothing a master could accept
