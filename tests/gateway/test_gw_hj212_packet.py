"""HJ 212 packets without a network: CRC against worked examples, the framer, the parser, the
protocol tables, and the cases shipped in gateway/sources/hj212/testcases.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from gateway.counters import CounterTracker
from gateway.sources.hj212 import (
    Frame,
    Framer,
    Junk,
    MetricInfo,
    PacketError,
    build_packet,
    crc16,
    load_tables,
    map_data,
    parse_segment,
)
from gateway.sources.hj212._packet import mask_password
from parkpulse.catalogue import load_catalogue

CASES = Path(__file__).resolve().parents[2] / "gateway" / "sources" / "hj212" / "testcases.yaml"

# Worked examples: the first is HJ 212-2017 Annex C's CN 1062 packet (length 0101, CRC 1C80);
# the second a CN 2061 packet from a public HJ 212 test suite (length 0285, CRC C181).
ANNEX_C = (
    b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&1C80\r\n"
)
HOURLY = (
    b"##0285QN=20190925181031464;ST=22;CN=2061;PW=BF470F88957588DE902D1A52;MN=Z13401000010301;Flag=5;"
    b"CP=&&DataTime=20190924220000;a34006-Avg=2.69700,a34006-Flag=N;a34007-Avg=7.96600,a34007-Flag=N;"
    b"a34048-Avg=3.30600,a34048-Flag=N;a34047-Avg=7.35700,a34047-Flag=N;a34049-Avg=10.66300,a34049-Flag=N"
    b"&&C181\r\n"
)


def _crc_by_hand(data: bytes) -> int:
    """Annex A step by step, bit by bit (a second implementation, independent of the table one)."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            out = reg & 1
            reg >>= 1
            if out:
                reg ^= 0xA001
    return reg


@pytest.mark.parametrize("pkt", [ANNEX_C, HOURLY], ids=["annex-c-1062", "hourly-2061"])
def test_crc_matches_the_worked_examples(pkt: bytes) -> None:
    n = int(pkt[2:6])
    segment = pkt[6 : 6 + n]
    assert len(segment) == n
    assert f"{crc16(segment):04X}" == pkt[6 + n : 10 + n].decode()
    assert crc16(segment) == _crc_by_hand(segment)
    assert build_packet(segment.decode()) == pkt


def test_crc_table_equals_the_bitwise_algorithm_on_every_byte_value() -> None:
    data = bytes(range(256)) * 3
    for i in range(0, len(data), 37):
        assert crc16(data[: i + 1]) == _crc_by_hand(data[: i + 1])


def test_parse_header_flag_bits_and_cp() -> None:
    p = parse_segment(ANNEX_C[6:107])
    assert (p.qn, p.st, p.cn, p.pw, p.mn, p.flag) == (
        "20160801085857223",
        "32",
        1062,
        "100000",
        "010000A8900016F000169DC0",
        5,
    )
    assert p.reply_wanted and not p.split and p.version_bits == 1
    assert p.cp == [[("RtdInterval", "30")]]
    q = parse_segment(b"ST=31;CN=2051;PW=1;MN=M;Flag=11;PNUM=2;PNO=1;CP=&&a=1,b=2;c=3&&")
    assert q.reply_wanted and q.split and q.version_bits == 2
    assert q.cp == [[("a", "1"), ("b", "2")], [("c", "3")]]
    assert parse_segment(b"ST=31;CN=2051;PW=1;MN=M;CP=&&&&").version_bits is None


@pytest.mark.parametrize(
    ("segment", "path", "value"),
    [
        (b"ST=31;CN=2051;PW=1;MN=M;Flag=5", "CP", "Flag=5"),
        (b"ST=31;CN=2051;PW=1;Flag=5;CP=&&&&", "header.MN", None),
        (b"ST=31;CN=20x1;PW=1;MN=M;CP=&&&&", "header.CN", "20x1"),
        (b"ST=31;CN=2051;PW=1;MN=M;CP=&&DataTime=1;a21002-Avg&&", "CP.a21002-Avg", "a21002-Avg"),
        (b"ST=31;CN=2051;PW=1;MN=M;CP=&&a=1", "CP", "CP=&&a=1"),
        ("ST=31;CN=2051;PW=1;MN=\u6d4b;CP=&&&&".encode(), "segment", None),
    ],
    ids=["no-cp", "no-mn", "cn-not-number", "cp-item-without-value", "cp-not-closed", "not-ascii"],
)
def test_malformed_segments_name_the_part(segment: bytes, path: str, value: Any) -> None:
    with pytest.raises(PacketError) as ei:
        parse_segment(segment)
    assert ei.value.path == path
    if value is not None:
        assert value in str(ei.value.value)


def test_framer_packets_split_anywhere_and_several_per_read() -> None:
    stream = ANNEX_C + HOURLY + ANNEX_C
    for cut in (1, 2, 5, 6, 7, 50, 106, 107, 108, 120):
        f = Framer()
        got = f.feed(stream[:cut]) + f.feed(stream[cut:])
        assert [type(x) for x in got] == [Frame, Frame, Frame], cut
        assert all(isinstance(x, Frame) and x.crc_ok for x in got)
        assert [x.raw for x in got] == [ANNEX_C, HOURLY, ANNEX_C]
    f = Framer()
    got = []
    for b in stream:  # one byte per read
        got += f.feed(bytes([b]))
    assert [x.raw for x in got] == [ANNEX_C, HOURLY, ANNEX_C]


def test_framer_bad_crc_is_a_frame_that_says_so() -> None:
    bad = ANNEX_C.replace(b"1C80", b"1C81")
    (fr,) = Framer().feed(bad)
    assert isinstance(fr, Frame) and not fr.crc_ok and fr.crc_sent == "1C81"


def test_framer_resyncs_after_garbage_and_stays_bounded() -> None:
    f = Framer(max_segment=1024)
    got = f.feed(b"\x00\xffnoise" + ANNEX_C + b"##12x4junk" + ANNEX_C)
    kinds = [type(x).__name__ for x in got]
    assert kinds == ["Junk", "Frame", "Junk", "Junk", "Frame"], kinds
    assert "length after ## is not 4 decimal digits" in got[2].reason  # type: ignore[union-attr]
    # a megabyte of bytes that never form a packet: everything is given back, nothing piles up
    for _ in range(100):
        f.feed(b"x" * 10_000)
        assert len(f.buf) <= 1
    # a length over the limit is refused at once, not waited for
    got = f.feed(b"##9999" + ANNEX_C)
    assert isinstance(got[0], Junk) and "over the limit" in got[0].reason
    assert isinstance(got[-1], Frame) and got[-1].raw == ANNEX_C
    # a length that does not end at CR LF
    wrong = b"##0100" + ANNEX_C[6:]
    got = f.feed(wrong)
    assert isinstance(got[0], Junk) and "no CR LF" in got[0].reason
    assert len(f.buf) <= 6 + 1024 + 6


def test_password_is_masked() -> None:
    assert b"PW=***;" in mask_password(ANNEX_C) and b"100000" not in mask_password(ANNEX_C)


def test_tables_cover_both_editions_and_map_to_catalogue_metrics() -> None:
    tables = load_tables()
    names = {m.name for m in load_catalogue().metrics}
    assert set(tables) == {"2017", "2025"}
    for t in tables.values():
        assert t.commands.minute == 2051 and t.commands.data_ack == 9014
        assert {e.measured for e in t.metrics.values()} <= names
        assert {f.cems_flag for f in t.flags.values()} == set(range(8))
    assert tables["2017"].version_bits == 1 and tables["2025"].version_bits == 2
    assert not tables["2025"].verified


def _cases() -> list[dict[str, Any]]:
    doc: dict[str, Any] = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    return list(doc["cases"])


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_case(case: dict[str, Any]) -> None:
    assert case.get("expect"), "a case must expect at least one reading"
    cat = load_catalogue()
    info = MetricInfo(
        frozenset(m.name for m in cat.metrics if m.cumulative), {m.name: (m.min, m.max) for m in cat.metrics}
    )
    m = map_data(
        parse_segment(case["segment"].encode()),
        load_tables()[case["edition"]],
        device="d",
        kind=case["kind"],
        tz=ZoneInfo("Asia/Shanghai"),
        info=info,
        counters=CounterTracker(),
    )
    assert m.rows == case["expect"]


def test_data_without_a_usable_time_is_refused() -> None:
    t = load_tables()["2017"]
    info = MetricInfo(frozenset(), {})
    for cp, why in (("a21002-Avg=1", "DataTime missing"), ("DataTime=2026130110", "not YYYYMMDDhhmmss")):
        p = parse_segment(f"ST=31;CN=2051;PW=1;MN=M;CP=&&{cp}&&".encode())
        with pytest.raises(PacketError, match=why) as ei:
            map_data(p, t, device="d", kind="minute", tz=ZoneInfo("Asia/Shanghai"), info=info, counters=None)
        assert ei.value.path == "CP.DataTime"
