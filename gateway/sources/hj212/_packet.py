"""HJ 212 packets: the CRC of Annex A, a bounded stream framer, the data segment parser, replies.

A packet is `##` + 4 decimal digits (length of the data segment) + the data segment + 4 hex
digits (CRC-16 of the data segment) + CR LF. The data segment is `;`-separated `key=value`
header fields (QN, ST, CN, PW, MN, Flag, PNUM, PNO) and `CP=&&…&&`, whose content is groups
separated by `;` of items separated by `,`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from parkpulse.errors import FieldError, ParkPulseError

__all__ = [
    "Frame",
    "Framer",
    "Hj212Error",
    "Junk",
    "Packet",
    "PacketError",
    "build_packet",
    "crc16",
    "mask_password",
    "parse_segment",
    "sniff_mn",
]


class Hj212Error(ParkPulseError):
    """Base of the HJ 212 receiver's errors."""


class PacketError(FieldError, Hj212Error):
    """A packet breaks the protocol: `path` names the part (e.g. `CRC`, `CP.DataTime`)."""


def _crc_table() -> list[int]:
    # one step of Annex A per input value: the register, shifted right 8 times, XOR 0xA001 on a carried-out 1
    out = []
    for v in range(256):
        r = v
        for _ in range(8):
            r = (r >> 1) ^ 0xA001 if r & 1 else r >> 1
        out.append(r)
    return out


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC of HJ 212-2017 Annex A: register 0xFFFF; per byte, register = (register >> 8) XOR byte,
    then 8 right shifts with XOR 0xA001 when a 1 is shifted out. Since (register >> 8) XOR byte
    fits in 8 bits, each byte is one table lookup."""
    r = 0xFFFF
    table = _TABLE
    for b in data:
        r = table[(r >> 8) ^ b]
    return r


def build_packet(segment: str) -> bytes:
    raw = segment.encode("ascii")
    return b"##%04d%s%04X\r\n" % (len(raw), raw, crc16(raw))


_PW = re.compile(rb"(PW=)[^;&]*")
_MN = re.compile(rb"MN=([A-Za-z0-9_.:-]{1,64})")


def mask_password(raw: bytes) -> bytes:
    """The packet with its PW value replaced by ***: what dead letters and logs may show."""
    return _PW.sub(rb"\1***", raw)


def sniff_mn(raw: bytes) -> str | None:
    """The MN of a packet that could not be trusted (bad CRC), for attribution only."""
    m = _MN.search(raw)
    return m.group(1).decode("ascii") if m else None


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete packet: its bytes, the data segment and whether its CRC matched."""

    raw: bytes
    segment: bytes
    crc_sent: str
    crc_ok: bool


@dataclass(frozen=True, slots=True)
class Junk:
    """Bytes that are not a packet, skipped to the next `##`, with the reason."""

    reason: str
    raw: bytes


class Framer:
    """Splits a TCP byte stream into packets. Holds at most one packet (6 + max_segment + 6 bytes):
    anything that cannot start a packet is given back as Junk at once."""

    def __init__(self, max_segment: int = 4096) -> None:
        self.max_segment = max_segment
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Frame | Junk]:
        buf = self.buf
        buf += data
        out: list[Frame | Junk] = []
        while buf:
            start = buf.find(b"##")
            if start < 0:
                keep = 1 if buf.endswith(b"#") else 0
                if len(buf) > keep:
                    out.append(Junk("no packet header ## in these bytes", bytes(buf[: len(buf) - keep])))
                    del buf[: len(buf) - keep]
                break
            if start > 0:
                out.append(Junk("bytes before the packet header ##", bytes(buf[:start])))
                del buf[:start]
            if len(buf) < 6:
                break
            digits = bytes(buf[2:6])
            if not digits.isdigit():
                out.append(Junk(f"length after ## is not 4 decimal digits (got {digits!r})", bytes(buf[:6])))
                del buf[:2]
                continue
            n = int(digits)
            if n > self.max_segment:
                out.append(Junk(f"data segment length {n} over the limit {self.max_segment}", bytes(buf[:6])))
                del buf[:2]
                continue
            total = n + 12
            if len(buf) < total:
                break
            pkt = bytes(buf[:total])
            if pkt[-2:] != b"\r\n":
                out.append(Junk(f"no CR LF where the length {n} puts the packet's end", pkt))
                del buf[:2]
                continue
            del buf[:total]
            segment = pkt[6 : 6 + n]
            sent = pkt[6 + n : 10 + n].decode("ascii", "replace")
            ok = False
            try:
                ok = int(sent, 16) == crc16(segment)
            except ValueError:
                ok = False
            out.append(Frame(pkt, segment, sent, ok))
        return out


@dataclass(slots=True)
class Packet:
    """A parsed data segment."""

    header: dict[str, str]
    cp: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def qn(self) -> str | None:
        return self.header.get("QN")

    @property
    def st(self) -> str:
        return self.header["ST"]

    @property
    def cn(self) -> int:
        return int(self.header["CN"])

    @property
    def pw(self) -> str:
        return self.header.get("PW", "")

    @property
    def mn(self) -> str:
        return self.header["MN"]

    @property
    def flag(self) -> int | None:
        f = self.header.get("Flag")
        return int(f) if f is not None else None

    @property
    def reply_wanted(self) -> bool:
        """Flag bit A (bit 0): the sender wants an answer."""
        f = self.flag
        return f is not None and bool(f & 1)

    @property
    def split(self) -> bool:
        """Flag bit D (bit 1): one part of a split packet (PNUM, PNO)."""
        f = self.flag
        return f is not None and bool(f & 2)

    @property
    def version_bits(self) -> int | None:
        """Flag bits V5..V0 (bits 2..7): 1 for HJ 212-2017, 2 for 2025; 0 or no Flag: an older logger."""
        f = self.flag
        return None if f is None else (f >> 2) & 0x3F

    def cp_value(self, key: str) -> str | None:
        for group in self.cp:
            for k, v in group:
                if k == key:
                    return v
        return None


_REQUIRED = ("ST", "CN", "MN")


def _parse_header(head: str) -> dict[str, str]:
    header: dict[str, str] = {}
    for part in head.split(";"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise PacketError(f"header.{k[:20]}", part[:40], "header field without '='")
        header[k] = v
    for k in _REQUIRED:
        if not header.get(k):
            raise PacketError(f"header.{k}", None, f"{k} missing")
    for k in ("CN", "Flag", "PNUM", "PNO"):
        got = header.get(k)
        if got is not None and not (got.isdigit() and len(got) <= 4):
            raise PacketError(f"header.{k}", got, "not a number of at most 4 digits")
    return header


def parse_segment(segment: bytes) -> Packet:
    """The packet's header fields and CP groups; PacketError naming the part and the value."""
    try:
        text = segment.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PacketError(
            "segment", segment[max(0, exc.start - 10) : exc.start + 10], f"byte {exc.start} is not ASCII"
        ) from None
    at = text.find("CP=&&")
    if at < 0:
        raise PacketError("CP", text[-40:], "no CP=&& in the data segment")
    if not text.endswith("&&") or len(text) < at + 7:
        raise PacketError("CP", text[at : at + 60], "CP does not end with &&")
    header = _parse_header(text[:at])
    body = text[at + 5 : -2]
    groups: list[list[tuple[str, str]]] = []
    for g in body.split(";"):
        if not g:
            continue
        items: list[tuple[str, str]] = []
        for item in g.split(","):
            if not item:
                continue
            k, eq, v = item.partition("=")
            if not eq or not k:
                raise PacketError(f"CP.{k[:30] or '?'}", item[:60], "CP item is not key=value")
            items.append((k, v))
        groups.append(items)
    return Packet(header, groups)
