"""The DL/T 645 simulator on its own: tariff counters that sum to the total, faults, split
replies, the broadcast read-address, the line timing — spoken to with hand-made bytes."""

from __future__ import annotations

import socket
import time

import pytest

from simulators.dlt645 import TARIFF_SCHEDULE, Dlt645Bus, Dlt645Meter, bcd_encode, frame
from simulators.errors import SimulatorError


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_tariff_counters_rise_and_sum_to_the_total() -> None:
    clock = Clock()
    m = Dlt645Meter("000000000001", seed=3, rated_power_kw=100, import_kwh=500, clock=clock)
    first = m.truth()
    seen = set()
    for _ in range(48):  # a day in half hours
        seen.add(m.tariff())
        clock.t += 1800
        v = m.truth()
        parts = sum(v[f"elec_import_kwh_{t}"] for t in ("sharp", "peak", "flat", "valley"))
        assert parts == pytest.approx(v["elec_import_kwh"], abs=1e-9)
    assert seen == {name for _, _, name in TARIFF_SCHEDULE}
    rise = v["elec_import_kwh"] - first["elec_import_kwh"]
    assert 100 * 24 * 0.35 < rise < 100 * 24 * 1.0  # a day at 40-90 % load


def test_bcd_encoding_by_hand() -> None:
    assert bcd_encode(123456.78, 6, 2, False) == bytes([0x78, 0x56, 0x34, 0x12])
    assert bcd_encode(-1.2345, 2, 4, True) == bytes([0x45, 0x23, 0x81])
    assert bcd_encode(230, 4, 0, False) == bytes([0x30, 0x02])  # 1997 XXX in two bytes


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    buf = b""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        buf += sock.recv(4096)
        i = buf.find(b"\x68")
        if i >= 0 and len(buf) >= i + 10 and len(buf) >= i + 12 + buf[i + 9]:
            return buf[i : i + 12 + buf[i + 9]]
    raise AssertionError(f"no whole reply: {buf.hex(' ')}")


def _data(reply: bytes) -> bytes:
    return bytes((b - 0x33) & 0xFF for b in reply[10:-2])


def test_tcp_reads_split_replies_faults_and_broadcast() -> None:
    bus = Dlt645Bus(transport="tcp", baudrate=9600, reply_delay_ms=0)
    m = bus.add_meter("000012345678", seed=1, max_data_len=12)
    with bus, socket.create_connection(("127.0.0.1", bus.port), timeout=3) as s:
        m.freeze({"elec_import_kwh_sharp": 1.0})
        # read 0001FF00 (20 bytes): 8 in the first frame (B1), then 7 + 5 with sequence numbers (B2, 92)
        di = bytes([0x00, 0xFF, 0x01, 0x00])
        r1 = _exchange(s, frame("000012345678", 0x11, di, preamble=4))
        assert r1[8] == 0xB1 and _data(r1)[:4] == di and len(_data(r1)) == 12
        r2 = _exchange(s, frame("000012345678", 0x12, di + b"\x01"))
        assert r2[8] == 0xB2 and _data(r2)[-1] == 1
        r3 = _exchange(s, frame("000012345678", 0x12, di + b"\x02"))
        assert r3[8] == 0x92 and _data(r3)[-1] == 2
        payload = _data(r1)[4:] + _data(r2)[4:-1] + _data(r3)[4:-1]
        assert len(payload) == 20 and payload[4:8] == bytes([0x00, 0x01, 0x00, 0x00])  # sharp = 000001.00
        # an unknown identifier: abnormal reply D1 with ERR bit 1 (no requested data)
        bad = _exchange(s, frame("000012345678", 0x11, bytes([0x99, 0x99, 0x99, 0x09])))
        assert bad[8] == 0xD1 and _data(bad) == b"\x02"
        # broadcast read address: 93 with the address in the data
        addr = _exchange(s, frame("AAAAAAAAAAAA", 0x13, b""))
        assert addr[8] == 0x93 and _data(addr) == bytes([0x78, 0x56, 0x34, 0x12, 0x00, 0x00])
        m.inject("bad_checksum")
        r = _exchange(s, frame("000012345678", 0x11, bytes([0, 0, 1, 0])))
        assert sum(r[:-2]) % 256 != r[-2]
        m.inject("abnormal", error_word=0x04)
        r = _exchange(s, frame("AAAA12345678", 0x11, bytes([0, 0, 1, 0])))  # wildcard high bytes
        assert r[8] == 0xD1 and _data(r) == b"\x04" and r[1:7] == bytes([0x78, 0x56, 0x34, 0x12, 0, 0])
        m.inject("silence")
        s.sendall(frame("000012345678", 0x11, bytes([0, 0, 1, 0])))
        s.settimeout(0.4)
        with pytest.raises(TimeoutError):
            s.recv(100)


def test_line_timing_at_2400_baud_8e1() -> None:
    bus = Dlt645Bus(transport="tcp", baudrate=2400, parity="E", reply_delay_ms=20)
    bus.add_meter("000000000001")
    with bus, socket.create_connection(("127.0.0.1", bus.port), timeout=3) as s:
        req = frame("000000000001", 0x11, bytes([0, 0, 1, 0]), preamble=4)
        t0 = time.perf_counter()
        reply = _exchange(s, req)
        took = time.perf_counter() - t0
    wire = (len(req) + len(reply)) * 11 / 2400 + 0.020
    assert wire <= took < wire + 0.15, (took, wire)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(SimulatorError, match="address must be 12 decimal digits"):
        Dlt645Meter("12")
    with pytest.raises(SimulatorError, match="edition must be 2007 or 1997"):
        Dlt645Meter("000000000001", edition="2020")
    with pytest.raises(SimulatorError, match="fault must be one of"):
        Dlt645Meter("000000000001").inject("fire")
    with pytest.raises(SimulatorError, match="transport must be pty or tcp"):
        Dlt645Bus(transport="can")
    bus = Dlt645Bus()
    bus.add_meter("000000000001")
    with pytest.raises(SimulatorError, match="already on this bus"):
        bus.add_meter("000000000001")
