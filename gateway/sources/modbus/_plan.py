"""Request planning of the `modbus` source: coalesced read requests and fast decoding.

A device's registers are grouped by function code and merged into as few requests as
possible: neighbours are joined while the request stays within `MAX_REGISTERS` (the Modbus
limit of 125 registers per read) and the unused registers between them stay within the
profile's `max_gap`. Decoding honours the word order (which 16-bit register comes first)
and the byte order inside each register, per field.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.sources.modbus._profiles import WORDS, ResolvedRegister

__all__ = [
    "MAX_REGISTERS",
    "Field",
    "ReadRequest",
    "decode_request",
    "decode_value",
    "plan_requests",
    "register_span",
]

MAX_REGISTERS = 125

_FMT = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "f32": "f", "u64": "Q", "i64": "q", "f64": "d"}


@dataclass(slots=True)
class Field:
    """One value inside a request: where it sits and how to turn its words into an engineering value."""

    metric: str
    offset: int  # words from the request start
    words: int
    unpack: Callable[[Sequence[int]], float]
    scale: float
    add: float
    span: float | None  # counter rollover span in engineering units (unsigned integer types only)


@dataclass(slots=True)
class ReadRequest:
    function: str  # holding | input
    address: int  # PDU address
    count: int
    fields: list[Field] = field(default_factory=list)


def _unpacker(dtype: str, word_order: str, byte_order: str) -> Callable[[Sequence[int]], float]:
    fmt = struct.Struct(">" + _FMT[dtype])
    words = WORDS[dtype]
    swap_bytes = byte_order == "little"
    reverse_words = word_order == "little"
    packer = struct.Struct(f">{words}H")

    def unpack(regs: Sequence[int]) -> float:
        ws = list(regs)
        if reverse_words:
            ws.reverse()
        if swap_bytes:
            ws = [((w & 0xFF) << 8) | (w >> 8) for w in ws]
        return float(fmt.unpack(packer.pack(*ws))[0])

    if not swap_bytes and not reverse_words:
        if words == 1:
            if dtype == "u16":
                return lambda regs: float(regs[0])
            return lambda regs: float(regs[0] - 0x10000 if regs[0] & 0x8000 else regs[0])

        def unpack_fast(regs: Sequence[int]) -> float:
            return float(fmt.unpack(packer.pack(*regs))[0])

        return unpack_fast
    return unpack


def decode_value(regs: Sequence[int], dtype: str, word_order: str = "big", byte_order: str = "big") -> float:
    """Decode one value from its registers (as read, in address order)."""
    return _unpacker(dtype, word_order, byte_order)(regs)


def register_span(dtype: str, scale: float) -> float | None:
    """The counter span of an unsigned integer register in engineering units (None for floats/signed)."""
    if dtype in ("u16", "u32", "u64"):
        return float(2 ** (16 * WORDS[dtype])) * abs(scale)
    return None


def plan_requests(
    registers: Sequence[ResolvedRegister],
    *,
    max_gap: int = 16,
    max_registers: int = MAX_REGISTERS,
    multipliers: dict[str, float] | None = None,
) -> list[ReadRequest]:
    """Coalesce registers into requests. `multipliers` maps a metric to an extra factor (CT/PT ratios)."""
    mult = multipliers or {}
    out: list[ReadRequest] = []
    for function in ("holding", "input"):
        regs = sorted((r for r in registers if r.function == function), key=lambda r: r.pdu)
        cur: ReadRequest | None = None
        for r in regs:
            end = r.pdu + r.words
            if (
                cur is not None
                and r.pdu - (cur.address + cur.count) <= max_gap
                and end - cur.address <= max_registers
            ):
                cur.count = max(cur.count, end - cur.address)
            else:
                cur = ReadRequest(function, r.pdu, r.words)
                out.append(cur)
            k = mult.get(r.metric, 1.0)
            cur.fields.append(
                Field(
                    metric=r.metric,
                    offset=r.pdu - cur.address,
                    words=r.words,
                    unpack=_unpacker(r.type, r.word_order, r.byte_order),
                    scale=r.scale * k,
                    add=r.offset * k,
                    span=register_span(r.type, r.scale * k),
                )
            )
    return out


def decode_request(req: ReadRequest, regs: Sequence[int]) -> list[tuple[str, float | None]]:
    """(metric, value) for every field of a request; a NaN/Inf float decodes to None."""
    out: list[tuple[str, float | None]] = []
    for f in req.fields:
        raw = f.unpack(regs[f.offset : f.offset + f.words])
        v = raw * f.scale + f.add
        out.append((f.metric, v if math.isfinite(v) else None))
    return out
