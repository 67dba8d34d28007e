"""DL/T 645 frames and values against bytes worked out by hand from the standard's rules
(address least significant byte first, +33H, checksum = sum from the first 68 mod 256, BCD
least significant byte first, sign in the top bit), not with the encoder under test; the
plugin's testcases.yaml (reply frames → values); profiles and the standard's data file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from gateway.sources.dlt645 import (
    STANDARD_FILE,
    AbnormalReply,
    DecodeError,
    FrameError,
    Read,
    address_bytes,
    decode_read,
    encode_frame,
    find_frame,
    from_bcd,
    list_profiles,
    parse_format,
    parse_profile,
    plan_meter,
    standard,
    to_bcd,
)
from gateway.sources.dlt645._frame import check_reply
from parkpulse.errors import ValidationReport

CASES = Path(__file__).resolve().parents[2] / "gateway" / "sources" / "dlt645" / "testcases.yaml"
BASE: dict[str, Any] = {
    "gateway": {"park": "p", "firm": "f", "id": "g"},
    "uplink": {"url": "mqtt://127.0.0.1:1883"},
    "spool": {"path": "x.db"},
}


def _cs(frame: list[int]) -> int:
    return sum(frame) % 256


def test_2007_read_request_golden_bytes() -> None:
    # meter 000012345678, read 00010000 (forward active total), 4 FE wake-up bytes
    head = [0x68, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x68, 0x11, 0x04]
    data = [0x00 + 0x33, 0x00 + 0x33, 0x01 + 0x33, 0x00 + 0x33]  # DI0..DI3, each +33H
    body = head + data
    want = bytes([0xFE] * 4 + body + [_cs(body), 0x16])
    # 0x68*2 + (0x78+0x56+0x34+0x12) + 0x11 + 0x04 + 0x33*4 + 0x01 = 0x2C6
    assert _cs(body) == 0xC6
    assert want == bytes.fromhex("FEFEFEFE 68 785634120000 68 11 04 33333433 C6 16".replace(" ", ""))
    got = encode_frame("000012345678", 0x11, bytes([0x00, 0x00, 0x01, 0x00]), preamble=4)
    assert got == want
    # a vendor's worked frame: meter 000000000161, same DI
    vendor = "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16"
    assert encode_frame("000000000161", 0x11, bytes([0, 0, 1, 0]), preamble=4) == bytes.fromhex(
        vendor.replace(" ", "")
    )


def test_1997_read_request_matches_a_vendors_worked_frame() -> None:
    # read B611 at meter 000000000003: 68 03 00 00 00 00 00 68 01 02 44 E9 03 16
    want = bytes.fromhex("68030000000000680102 44E9 0316".replace(" ", ""))
    assert encode_frame("000000000003", 0x01, bytes([0x11, 0xB6])) == want


def test_2007_worked_reply_decodes_with_sign_and_bcd() -> None:
    # reply 0x91 for 02030000 = −1.2345 kW: value bytes MSB first 81 23 45 → wire 45 23 81 → +33H 78 56 B4
    body = [
        0x68,
        0x78,
        0x56,
        0x34,
        0x12,
        0x00,
        0x00,
        0x68,
        0x91,
        0x07,
        0x33,
        0x33,
        0x36,
        0x35,
        0x78,
        0x56,
        0xB4,
    ]
    raw = bytes([0xFE, 0xFE, *body, _cs(body), 0x16])
    frame, used = find_frame(raw)
    assert frame is not None and used == len(raw)
    assert frame.address == "000012345678" and frame.control == 0x91 and frame.is_reply
    assert frame.data == bytes([0x00, 0x00, 0x03, 0x02, 0x45, 0x23, 0x81])
    assert from_bcd(frame.data[4:], parse_format("XX.XXXX", signed=True)) == pytest.approx(-1.2345)
    assert from_bcd(frame.data[4:], parse_format("XX.XXXX", signed=False)) == pytest.approx(81.2345)


def test_bad_checksum_and_end_byte_are_frame_errors() -> None:
    body = [0x68, 0x61, 0x01, 0, 0, 0, 0, 0x68, 0x91, 0x00]
    good = bytes([*body, _cs(body), 0x16])
    assert find_frame(good)[0] is not None
    with pytest.raises(FrameError, match="bad checksum"):
        find_frame(bytes([*body, (_cs(body) + 1) % 256, 0x16]))
    with pytest.raises(FrameError, match="bad end byte"):
        find_frame(bytes([*body, _cs(body), 0x17]))


def test_partial_frame_waits_and_noise_is_skipped() -> None:
    body = [0x68, 0x61, 0x01, 0, 0, 0, 0, 0x68, 0x91, 0x00]
    good = bytes([*body, _cs(body), 0x16])
    assert find_frame(good[:-1]) == (None, 0)
    frame, used = find_frame(b"\x00\x68\x11" + good)  # a stray 68 that heads no frame
    assert frame is not None and used == len(good) + 3


def test_abnormal_reply_names_the_error_bits() -> None:
    body = [0x68, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x68, 0xD1, 0x01, 0x06 + 0x33]  # ERR = bits 1 and 2
    frame, _ = find_frame(bytes([*body, _cs(body), 0x16]))
    assert frame is not None and frame.abnormal
    with pytest.raises(AbnormalReply) as ei:
        check_reply(frame, "000012345678", 0x11, standard().rules("2007"))
    assert ei.value.word == 0x06
    assert ei.value.names == [
        "无请求数据 (no requested data)",
        "密码错/未授权 (wrong password / not authorised)",
    ]
    assert "0xD1" in str(ei.value)


def test_reply_from_another_address_or_function_is_refused() -> None:
    frame, _ = find_frame(encode_frame("000012345678", 0x91, b"\x00\x00\x01\x00"))
    assert frame is not None
    rules = standard().rules("2007")
    with pytest.raises(FrameError, match="asked 000012345679"):
        check_reply(frame, "000012345679", 0x11, rules)
    with pytest.raises(FrameError, match="function"):
        check_reply(frame, "000012345678", 0x12, rules)
    check_reply(frame, "AAAA12345678", 0x11, rules)  # a wildcard address matches the real one


def test_address_order_and_wildcards() -> None:
    assert address_bytes("000012345678") == bytes([0x78, 0x56, 0x34, 0x12, 0x00, 0x00])
    assert address_bytes("AAAA12345678") == bytes([0x78, 0x56, 0x34, 0x12, 0xAA, 0xAA])
    assert address_bytes("AAAAAAAAAAAA") == bytes([0xAA] * 6)
    for bad in ("12345678", "00001234567A", "00AA12345678"):
        with pytest.raises(ValueError):
            address_bytes(bad)


@pytest.mark.parametrize(
    ("fmt", "signed", "value", "wire"),
    [
        ("XXXXXX.XX", False, 123456.78, [0x78, 0x56, 0x34, 0x12]),
        ("XXX.X", False, 230.1, [0x01, 0x23]),
        ("XXX.XXX", True, -5.5, [0x00, 0x55, 0x80]),
        ("X.XXX", True, -0.8, [0x00, 0x88]),
        ("XXX", False, 230, [0x30, 0x02]),
        ("XX.XX", False, 49.98, [0x98, 0x49]),
    ],
)
def test_bcd_formats(fmt: str, signed: bool, value: float, wire: list[int]) -> None:
    f = parse_format(fmt, signed)
    assert from_bcd(bytes(wire), f) == pytest.approx(value)
    assert to_bcd(value, f) == bytes(wire)


def test_not_bcd_and_wrong_length_are_decode_errors() -> None:
    f = parse_format("XXX.X")
    with pytest.raises(DecodeError, match="not BCD"):
        from_bcd(bytes([0x0A, 0x23]), f)
    with pytest.raises(DecodeError, match="takes 2 byte"):
        from_bcd(bytes([0x01]), f)


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"]
    return cases


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_plugin_case(case: dict[str, Any]) -> None:
    assert case.get("expect"), "a case must expect at least one value"
    cfg = parse_config(
        {
            **BASE,
            "dlt645_buses": [{"name": "b", "type": "serial", "port": "/dev/null"}],
            "dlt645_meters": [
                {"id": "m", "bus": "b", "address": case["address"], "profile": case["profile"]}
            ],
        }
    )
    plan = plan_meter(cfg, cfg.dlt645_meters[0])
    read = next(r for r in plan.reads + list(plan.singles.values()) if r.di == case["di"].upper())
    frame, _ = find_frame(bytes.fromhex(case["reply"].replace(" ", "")))
    assert frame is not None
    check_reply(frame, case["address"], plan.rules.read, plan.rules)
    n_di = plan.rules.di_bytes
    assert frame.data[:n_di] == bytes(reversed(bytes.fromhex(case["di"])))
    got = dict(decode_read(read, frame.data[n_di:], plan.multipliers))
    for metric, want in case["expect"].items():
        assert got[metric] == pytest.approx(want), metric


def test_block_reply_of_the_wrong_length_is_a_decode_error() -> None:
    prof = list_profiles()["dlt645-2007-generic"]
    read = Read("0201FF00", tuple(prof.item(m) for m in ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v")))
    with pytest.raises(DecodeError, match="expects 6"):
        decode_read(read, bytes(4))


def test_ct_ratio_multiplies_marked_items_and_magnitude_drops_the_sign() -> None:
    cfg = parse_config(
        {
            **BASE,
            "dlt645_buses": [{"name": "b", "type": "serial", "port": "/dev/null"}],
            "dlt645_meters": [
                {
                    "id": "m",
                    "bus": "b",
                    "address": 1,
                    "profile": "chint-dtsu666-dlt645",
                    "scale": {"ct_ratio": 40},
                }
            ],
        }
    )
    plan = plan_meter(cfg, cfg.dlt645_meters[0])
    assert cfg.dlt645_meters[0].address == "000000000001"
    cur = plan.singles["current_l1_a"]  # −001.500 A: MSB first 80 15 00, on the wire 00 15 80
    [(name, value)] = decode_read(cur, bytes([0x00, 0x15, 0x80]), plan.multipliers)
    assert name == "current_l1_a" and value == pytest.approx(1.5 * 40)
    volt = plan.singles["voltage_l1_v"]
    [(name, value)] = decode_read(volt, bytes([0x00, 0x23]), plan.multipliers)
    assert name == "voltage_l1_v" and value == pytest.approx(230.0)


def test_profiles_have_sources_verified_marks_and_required_maps() -> None:
    profiles = list_profiles()
    assert {"dlt645-2007-generic", "chint-dtsu666-dlt645", "dlt645-1997-generic"} <= set(profiles)
    gen = profiles["dlt645-2007-generic"]
    metrics = {i.metric for i in gen.items}
    for m in (
        "elec_combined_kwh",
        "elec_import_kwh",
        "elec_export_kwh",
        "elec_import_kwh_sharp",
        "elec_import_kwh_valley",
        "elec_export_kwh_peak",
        "elec_reactive_kvarh",
        "voltage_l3_v",
        "current_l2_a",
        "active_power_kw",
        "reactive_power_kvar",
        "apparent_power_kva",
        "power_factor",
        "frequency_hz",
        "demand_kw",
        "max_demand_kw",
    ):
        assert m in metrics, m
    assert gen.item("elec_import_kwh").di == "00010000" and gen.item("voltage_l1_v").di == "02010100"
    assert any(b.di == "0201FF00" for b in gen.blocks)
    assert profiles["dlt645-1997-generic"].item("voltage_l1_v").di == "B611"
    for p in profiles.values():
        assert p.source.document and isinstance(p.source.verified, bool)


def test_profile_errors_are_collected_with_paths() -> None:
    raw = yaml.safe_load(
        """
name: bad
manufacturer: x
model: y
edition: "1997"
source: {document: doc, edition: "1", verified: false}
items:
  - {di: "00010000", metric: elec_import_kwh, format: XXXXXX.XX, unit: kWh}
  - {di: "9010", metric: no_such, format: XX.XX, unit: kWh}
  - {di: "9011", metric: voltage_l1_v, format: XXX.Y, unit: kV}
blocks:
  - {di: "901F", metrics: [elec_import_kwh, frequency_hz]}
"""
    )
    with pytest.raises(ValidationReport) as ei:
        parse_profile(raw, "bad.yaml")
    paths = {p.path for p in ei.value.problems}
    assert paths == {
        "items[0].di",
        "items[1].metric",
        "items[2].unit",
        "items[2].format",
        "blocks[0].metrics[1]",
    }, [str(p) for p in ei.value.problems]


def test_standard_file_marks_every_section() -> None:
    doc = yaml.safe_load(STANDARD_FILE.read_text(encoding="utf-8"))
    assert doc["sources"]["dlt645_2007"]["document"].startswith("DL/T 645-2007")
    for section in (doc["framing"], doc["control"], *doc["editions"].values()):
        assert isinstance(section["verified"], bool)
    st = standard()
    assert (st.start, st.end, st.data_offset, st.preamble_byte, st.bits_per_byte) == (
        0x68,
        0x16,
        0x33,
        0xFE,
        11,
    )
    r07, r97 = st.rules("2007"), st.rules("1997")
    assert (r07.read, r07.read_follow, r07.read_address, r07.di_bytes) == (0x11, 0x12, 0x13, 4)
    assert (r97.read, r97.di_bytes, r97.read_address) == (0x01, 2, None)
    assert r07.error_names(0x41) == ["其他错误 (other error)", "费率数超 (too many tariffs)"]
