"""Data formats of DL/T 645 values: packed BCD, least significant byte first, an optional sign bit
(the highest bit of the most significant byte), written as in the standard's tables (`XXXXXX.XX`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.sources.dlt645._errors import DecodeError

__all__ = ["ValueFormat", "from_bcd", "parse_format", "to_bcd"]

_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


@dataclass(frozen=True, slots=True)
class ValueFormat:
    text: str
    digits: int
    decimals: int
    signed: bool

    @property
    def nbytes(self) -> int:
        return (self.digits + 1) // 2  # an odd count leaves the top nibble 0 (1997's XXX in 2 bytes)

    @property
    def max_value(self) -> float:
        top = 10**self.digits - 1
        if self.signed:  # the sign takes the top bit, so the first digit is 0..7
            top = 8 * 10 ** (self.digits - 1) - 1
        return float(top / 10**self.decimals)


def parse_format(text: str, signed: bool = False) -> ValueFormat:
    """`XXX.X` → 2 bytes, 1 decimal; `XXX` → 2 bytes, the top nibble unused."""
    m = _FORMAT.match(text)
    if m is None:
        raise ValueError("data format must look like XXXXXX.XX")
    digits = len(m.group(1)) + len(m.group(2) or "")
    if digits > 16:
        raise ValueError(f"{digits} digits: at most 16")
    return ValueFormat(text, digits, len(m.group(2) or ""), signed)


def from_bcd(data: bytes, fmt: ValueFormat) -> float:
    """Decode `fmt.nbytes` bytes (already -33H, least significant byte first)."""
    if len(data) != fmt.nbytes:
        raise DecodeError(f"format {fmt.text} takes {fmt.nbytes} byte(s), got {len(data)}: {data.hex(' ')}")
    raw = bytearray(reversed(data))  # most significant byte first
    negative = False
    if fmt.signed and raw[0] & 0x80:
        negative = True
        raw[0] &= 0x7F
    text = raw.hex()
    if not text.isdigit():
        raise DecodeError(f"not BCD: {data.hex(' ')} (format {fmt.text})")
    value = float(int(text) / 10**fmt.decimals)
    return -value if negative else value


def to_bcd(value: float, fmt: ValueFormat) -> bytes:
    """Encode a value in `fmt` (least significant byte first); rounds to the format's decimals."""
    negative = value < 0
    if negative and not fmt.signed:
        raise ValueError(f"format {fmt.text} has no sign bit (got {value!r})")
    n = round(abs(value) * 10**fmt.decimals)
    if n / 10**fmt.decimals > fmt.max_value:
        raise ValueError(f"{value!r} does not fit in format {fmt.text}")
    raw = bytearray(bytes.fromhex(f"{n:0{2 * fmt.nbytes}d}"))
    if negative:
        raw[0] |= 0x80
    return bytes(reversed(raw))
