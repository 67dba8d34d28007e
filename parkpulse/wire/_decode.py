"""Fast decoding of data batches for the hot path of ingest.

Checks what the pydantic models check, without building objects per reading: each bad reading
or gap is reported with the field it fails on and the rest of the batch is kept. Every number is
checked against the range of the column that stores it (`_limits`), so a batch that passes the
decoder cannot be refused by the database for a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from parkpulse.errors import WireError
from parkpulse.wire._limits import FLOAT_MAX, INT32_MAX, INT64_MAX, MAX_TS_MS, MIN_TS_MS, TEXT_MAX

__all__ = ["DecodedBatch", "DecodedGap", "RejectedReading", "decode_batch"]

_MAX_QUALITY = 4
_EVENTS = frozenset({"reset", "rollover", "replaced", "jump"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class RejectedReading:
    """A reading or a gap the decoder refused: `field` names it (`readings[3].value`, `gaps[0].count`)."""

    index: int
    field: str
    reason: str
    raw: Any


# (device or None, metric or None, start, end, count, reason)
DecodedGap = tuple[str | None, str | None, datetime, datetime, int, str]


@dataclass(slots=True)
class DecodedBatch:
    gateway: str
    seq: int
    sent_at_ms: int
    # (device, metric, ts_ms, value or None, quality, event dict or None)
    readings: list[tuple[str, str, int, float | None, int, dict[str, Any] | None]]
    rejected: list[RejectedReading] = field(default_factory=list)
    gaps: list[DecodedGap] = field(default_factory=list)
    rejected_gaps: list[RejectedReading] = field(default_factory=list)


def _number(x: object) -> float | None:
    """x as a float when it is a finite JSON number a double can hold, else None."""
    if type(x) is float:
        return x if math.isfinite(x) else None
    if type(x) is int:
        return float(x) if -FLOAT_MAX <= x <= FLOAT_MAX else None  # a 400-digit integer is refused
    return None


def _check_event(ev: object) -> str | None:
    if not isinstance(ev, dict):
        return "event must be an object"
    if ev.get("event") not in _EVENTS:
        return f"event.event must be one of {sorted(_EVENTS)}"
    for k in ("prev", "correction"):
        if _number(ev.get(k)) is None:
            return f"event.{k} must be a finite number within the double range"
    return None


def _ts_of(x: object) -> datetime | None:
    """A gap bound: epoch ms or an ISO time with a zone, within the wire's time range."""
    if type(x) is int:
        return _EPOCH + timedelta(milliseconds=x) if MIN_TS_MS <= x <= MAX_TS_MS else None
    if isinstance(x, str) and len(x) <= 40:
        try:
            dt = datetime.fromisoformat(x.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
        try:
            dt = dt.astimezone(UTC)
        except OverflowError:
            return None
        ms = (dt - _EPOCH) // timedelta(milliseconds=1)
        return dt if MIN_TS_MS <= ms <= MAX_TS_MS else None
    return None


def _text_ok(x: object) -> bool:
    return isinstance(x, str) and "\x00" not in x


def _decode_gap(g: object, i: int) -> DecodedGap | RejectedReading:
    f = f"gaps[{i}]"
    if not isinstance(g, dict):
        return RejectedReading(i, f, "must be an object", g)
    start, end = _ts_of(g.get("start")), _ts_of(g.get("end"))
    if start is None:
        return RejectedReading(i, f"{f}.start", "must be an ISO time with zone or epoch ms, 2000…9999", g)
    if end is None:
        return RejectedReading(i, f"{f}.end", "must be an ISO time with zone or epoch ms, 2000…9999", g)
    if end < start:
        return RejectedReading(i, f"{f}.end", "is before start", g)
    count = g.get("count", 0)
    if type(count) is not int or not 0 <= count <= INT32_MAX:
        return RejectedReading(i, f"{f}.count", f"must be an integer 0…{INT32_MAX}", g)
    reason = g.get("reason")
    if not _text_ok(reason) or not reason:
        return RejectedReading(i, f"{f}.reason", "must be a non-empty string without NUL", g)
    dev, met = g.get("device"), g.get("metric")
    if dev is not None and not _text_ok(dev):
        return RejectedReading(i, f"{f}.device", "must be a string (no NUL) or null", g)
    if met is not None and not _text_ok(met):
        return RejectedReading(i, f"{f}.metric", "must be a string (no NUL) or null", g)
    assert isinstance(reason, str)
    return (dev, met, start, end, count, reason[:TEXT_MAX])


def _parse(payload: bytes | str) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # Gateways written with Python's json emit bare NaN/Infinity (and integers beyond 64 bits),
        # which orjson refuses. Parse such a payload leniently so only the offending readings are
        # rejected, not the batch.
        try:
            return json.loads(payload)
        except RecursionError:
            raise WireError(
                "payload",
                bytes(payload[:40]) if isinstance(payload, bytes) else payload[:40],
                "JSON nested too deeply",
            ) from None
        except (ValueError, UnicodeDecodeError):
            raise WireError("payload", payload[:80], f"not JSON: {exc}") from None


_Row = tuple[str, str, int, float | None, int, dict[str, Any] | None]
_SHAPE = "must be [device, metric, ts_ms, value, quality(, event)]"


def _envelope(doc: object) -> tuple[str, int, int, list[Any], list[Any]]:
    """The batch's gateway, seq, sent_at, readings and gaps; WireError names the first bad field."""
    if not isinstance(doc, dict):
        raise WireError("payload", type(doc).__name__, "must be a JSON object")
    if doc.get("v") != 1:
        raise WireError("v", doc.get("v"), "unsupported wire version (expected 1)")
    gw = doc.get("gateway")
    if not isinstance(gw, str) or not gw:
        raise WireError("gateway", gw, "must be a non-empty string")
    seq = doc.get("seq")
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise WireError("seq", seq, f"must be an integer 0…{INT64_MAX} (2⁶³−1)")
    sent = doc.get("sent_at")
    if type(sent) is not int or not 0 <= sent <= MAX_TS_MS:
        raise WireError("sent_at", sent, "must be epoch milliseconds (0…year 9999)")
    rows = doc.get("readings")
    if not isinstance(rows, list):
        raise WireError("readings", type(rows).__name__, "must be a list")
    gaps = doc.get("gaps") or []
    if not isinstance(gaps, list):
        raise WireError("gaps", type(gaps).__name__, "must be a list")
    return gw, seq, sent, rows, gaps


def _latest_ts(max_future_ms: int | None, now_ms: int | None) -> int:
    """The newest reading time accepted: year 9999, or `max_future_ms` after now when that is given."""
    if max_future_ms is None:
        return MAX_TS_MS
    return min(MAX_TS_MS, (now_ms if now_ms is not None else int(_now_ms())) + max_future_ms)


def _key_fault(d: object, m: object, t: object, q: object, floor: int, limit: int) -> tuple[str, str] | None:
    """(field, reason) for the first bad one of device, metric, ts and quality, in that order."""
    if type(d) is not str or not d:
        return "device", "must be a non-empty string"
    if type(m) is not str or not m:
        return "metric", "must be a non-empty string"
    if type(t) is not int:
        return "ts", "must be epoch milliseconds (an integer)"
    if t < floor:
        return "ts", f"is too old (earliest accepted {floor} ms)"
    if t > limit:
        what = "in the future" if limit < MAX_TS_MS else "beyond year 9999"
        return "ts", f"is {what} (limit {limit} ms)"
    if type(q) is not int or not 0 <= q <= _MAX_QUALITY:
        return "quality", "must be an integer 0..4"
    return None


def _value_fault(v: object, q: int) -> str | None:
    """Why a reading's value is refused (with quality `q` already checked), or None."""
    tv = type(v)
    if tv is float:
        return "must be finite (NaN/Inf refused)" if v != v or v in (math.inf, -math.inf) else None
    if tv is int:
        return "is beyond the double range" if _number(v) is None else None
    if v is None:
        return None if q == _MAX_QUALITY else "null is allowed only with quality bad (4)"
    return "must be a number"


def _decode_reading(r: object, i: int, floor: int, limit: int) -> _Row | RejectedReading:
    """One reading as a row, or its rejection naming the first field that fails."""
    if type(r) is not list or not 5 <= len(r) <= 6:
        return RejectedReading(i, f"readings[{i}]", _SHAPE, r)
    d, m, t, v, q = r[0], r[1], r[2], r[3], r[4]
    fault = _key_fault(d, m, t, q, floor, limit)
    if fault is not None:
        return RejectedReading(i, f"readings[{i}].{fault[0]}", fault[1], r)
    problem = _value_fault(v, q)
    if problem is not None:
        return RejectedReading(i, f"readings[{i}].value", problem, r)
    ev = r[5] if len(r) == 6 else None
    if ev is not None:
        problem = _check_event(ev)
        if problem:
            return RejectedReading(i, f"readings[{i}].{problem.split(' ')[0]}", problem, r)
    return (d, m, t, None if v is None else float(v), q, ev)


def decode_batch(
    payload: bytes | str,
    *,
    max_future_ms: int | None = None,
    now_ms: int | None = None,
    min_ts_ms: int = MIN_TS_MS,
) -> DecodedBatch:
    """Decode one batch. Raises WireError when the envelope is unusable; bad readings and gaps are collected.

    Readings stamped before `min_ts_ms` (default 2000-01-01) or more than `max_future_ms` ahead of
    `now_ms` are refused one by one.
    """
    gw, seq, sent, rows, gaps = _envelope(_parse(payload))
    limit = _latest_ts(max_future_ms, now_ms)
    floor = max(min_ts_ms, 0)
    out = DecodedBatch(gw, seq, sent, [])
    good, bad = out.readings.append, out.rejected.append
    for i, r in enumerate(rows):
        # Fast path for the common reading (five fields, a finite float value): it accepts only what
        # `_decode_reading` accepts, and produces the same row; anything else goes there.
        if type(r) is list and len(r) == 5:
            d, m, t, v, q = r
            if (
                type(v) is float
                and v - v == 0.0  # finite: NaN and ±Inf give NaN
                and type(t) is int
                and floor <= t <= limit
                and type(q) is int
                and 0 <= q <= _MAX_QUALITY
                and type(d) is str
                and d
                and type(m) is str
                and m
            ):
                good((d, m, t, v, q, None))
                continue
        res = _decode_reading(r, i, floor, limit)
        if isinstance(res, RejectedReading):
            bad(res)
        else:
            good(res)
    for gi, g in enumerate(gaps):
        res_gap = _decode_gap(g, gi)
        if isinstance(res_gap, RejectedReading):
            out.rejected_gaps.append(res_gap)
        else:
            out.gaps.append(res_gap)
    return out


def _now_ms() -> float:
    import time

    return time.time() * 1000.0
