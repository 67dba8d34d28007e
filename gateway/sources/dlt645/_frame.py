"""DL/T 645 frames: 68 A0..A5 68 C L DATA CS 16, after 0..4 FE wake-up bytes.

The address is 12 BCD digits sent least significant byte first; every data byte is sent +33H;
CS is the sum of every byte from the first 68 up to the data, mod 256. Figures in standard.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.sources.dlt645._errors import AbnormalReply, FrameError
from gateway.sources.dlt645._standard import EditionRules, standard

__all__ = [
    "ADDRESS_PATTERN",
    "Frame",
    "address_bytes",
    "address_matches",
    "address_text",
    "check_reply",
    "di_bytes",
    "encode_frame",
    "find_frame",
    "wire_bytes",
]

# 12 digits; high byte pairs may be AA (wildcard) — checked further by `address_bytes`
ADDRESS_PATTERN = r"^(?:[0-9]{2}|[Aa]{2}){6}$"
_ADDRESS = re.compile(ADDRESS_PATTERN)


def address_bytes(address: str) -> bytes:
    """'000012345678' → the 6 wire bytes, least significant first. High byte pairs may be AA
    (short addressing: the low bytes given, the rest wildcards); a wildcard below a digit pair is refused."""
    if not _ADDRESS.match(address):
        raise ValueError(f"address must be 12 BCD digits, high byte pairs may be AA (got {address!r})")
    pairs = [address[i : i + 2].upper() for i in range(0, 12, 2)]  # most significant first
    seen_digit = False
    for p in pairs:
        if p == "AA" and seen_digit:
            raise ValueError(f"wildcard AA only in the high bytes, before every digit pair (got {address!r})")
        seen_digit = seen_digit or p != "AA"
    return bytes(reversed(bytes.fromhex("".join(pairs))))


def address_text(raw: bytes) -> str:
    """The 6 wire bytes → '000012345678'."""
    return bytes(reversed(raw)).hex().upper()


def address_matches(asked: str, answered: str) -> bool:
    """A reply's address fits the request's (a wildcard pair matches any pair; broadcast reads get any)."""
    if asked.upper() == "AA" * 6:
        return True
    return all(a == b or a == "AA" for a, b in zip(_pairs(asked), _pairs(answered), strict=True))


def _pairs(address: str) -> list[str]:
    return [address[i : i + 2].upper() for i in range(0, 12, 2)]


def di_bytes(di: str, rules: EditionRules) -> bytes:
    """A data identifier as written ('00010000', 'B611') → its bytes on the wire order (DI0 first), before +33H."""
    raw = bytes.fromhex(di)
    if len(raw) != rules.di_bytes:
        raise ValueError(
            f"a DL/T 645-{rules.edition} data identifier has {rules.di_bytes} bytes (got {di!r})"
        )
    return bytes(reversed(raw))


@dataclass(frozen=True, slots=True)
class Frame:
    address: str
    control: int
    data: bytes  # -33H applied

    @property
    def is_reply(self) -> bool:
        return bool(self.control & standard().direction_bit)

    @property
    def abnormal(self) -> bool:
        return bool(self.control & standard().abnormal_bit)

    @property
    def more_follows(self) -> bool:
        return bool(self.control & standard().follow_bit)

    @property
    def function(self) -> int:
        return self.control & standard().function_mask


def encode_frame(address: str, control: int, data: bytes = b"", preamble: int = 0) -> bytes:
    """One frame on the wire: `preamble` FE bytes, then 68 A 68 C L DATA+33H CS 16."""
    st = standard()
    if len(data) > 255:
        raise ValueError(f"data field too long: {len(data)} bytes (at most 255)")
    body = bytearray([st.start, *address_bytes(address), st.start, control & 0xFF, len(data)])
    body += bytes((b + st.data_offset) & 0xFF for b in data)
    body.append(sum(body) & 0xFF)
    body.append(st.end)
    return bytes([st.preamble_byte] * preamble) + bytes(body)


def find_frame(buf: bytes | bytearray) -> tuple[Frame | None, int]:
    """The first complete frame in `buf` and how many bytes it used (FE and noise before it included).

    (None, n): no complete frame yet; the first n bytes are noise to drop. Raises FrameError for a
    complete frame with a bad checksum or end byte."""
    st = standard()
    start = buf.find(bytes([st.start]))
    if start < 0:
        return None, len(buf)
    if len(buf) - start < 10:
        return None, start
    if buf[start + 7] != st.start:  # not a frame head: skip this 68 and look again
        frame, used = find_frame(buf[start + 1 :])
        return frame, start + 1 + used
    length = buf[start + 9]
    end = start + 12 + length
    if len(buf) < end:
        return None, start
    frame_bytes = bytes(buf[start:end])
    if sum(frame_bytes[:-2]) & 0xFF != frame_bytes[-2]:
        raise FrameError(
            f"bad checksum: 0x{frame_bytes[-2]:02X}, computed 0x{sum(frame_bytes[:-2]) & 0xFF:02X} "
            f"({frame_bytes.hex(' ')})"
        )
    if frame_bytes[-1] != st.end:
        raise FrameError(f"bad end byte 0x{frame_bytes[-1]:02X} ({frame_bytes.hex(' ')})")
    data = bytes((b - st.data_offset) & 0xFF for b in frame_bytes[10:-2])
    return Frame(address_text(frame_bytes[1:7]), frame_bytes[8], data), end


def check_reply(frame: Frame, asked: str, function: int, rules: EditionRules) -> None:
    """A reply must come from the meter asked, answer the function asked; abnormal replies raise AbnormalReply."""
    if not frame.is_reply:
        raise FrameError(f"a request frame (control 0x{frame.control:02X}) where a reply was due")
    if not address_matches(asked, frame.address):
        raise FrameError(f"reply from address {frame.address}, asked {asked}")
    if frame.function != function:
        raise FrameError(f"reply to function 0x{frame.function:02X}, asked 0x{function:02X}")
    if frame.abnormal:
        word = frame.data[0] if frame.data else 0
        raise AbnormalReply(frame.control, word, rules.error_names(word))


def wire_bytes(n_data: int, preamble: int = 0) -> int:
    """Bytes of a frame with `n_data` data bytes on the wire."""
    return preamble + 12 + n_data
