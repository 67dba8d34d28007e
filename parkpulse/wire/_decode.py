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
    doc = _parse(payload)
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
    limit = MAX_TS_MS
    if max_future_ms is not None:
        limit = min(limit, (now_ms if now_ms is not None else int(_now_ms())) + max_future_ms)
    floor = max(min_ts_ms, 0)

    good: list[tuple[str, str, int, float | None, int, dict[str, Any] | None]] = []
    bad: list[RejectedReading] = []
    append = good.append
    for i, r in enumerate(rows):
        if type(r) is not list or not 5 <= len(r) <= 6:
            bad.append(
                RejectedReading(
                    i, f"readings[{i}]", "must be [device, metric, ts_ms, value, quality(, event)]", r
                )
            )
            continue
        d, m, t, v, q = r[0], r[1], r[2], r[3], r[4]
        if type(d) is not str or not d:
            bad.append(RejectedReading(i, f"readings[{i}].device", "must be a non-empty string", r))
            continue
        if type(m) is not str or not m:
            bad.append(RejectedReading(i, f"readings[{i}].metric", "must be a non-empty string", r))
            continue
        if type(t) is not int:
            bad.append(RejectedReading(i, f"readings[{i}].ts", "must be epoch milliseconds (an integer)", r))
            continue
        if t < floor:
            bad.append(
                RejectedReading(i, f"readings[{i}].ts", f"is too old (earliest accepted {floor} ms)", r)
            )
            continue
        if t > limit:
            what = "in the future" if limit < MAX_TS_MS else "beyond year 9999"
            bad.append(RejectedReading(i, f"readings[{i}].ts", f"is {what} (limit {limit} ms)", r))
            continue
        if type(q) is not int or not 0 <= q <= _MAX_QUALITY:
            bad.append(RejectedReading(i, f"readings[{i}].quality", "must be an integer 0..4", r))
            continue
        tv = type(v)
        if tv is float:
            if v != v or v in (math.inf, -math.inf):
                bad.append(RejectedReading(i, f"readings[{i}].value", "must be finite (NaN/Inf refused)", r))
                continue
        elif tv is int:
            fv = _number(v)
            if fv is None:
                bad.append(RejectedReading(i, f"readings[{i}].value", "is beyond the double range", r))
                continue
            v = fv
        elif v is None:
            if q != _MAX_QUALITY:
                bad.append(
                    RejectedReading(i, f"readings[{i}].value", "null is allowed only with quality bad (4)", r)
                )
                continue
        else:
            bad.append(RejectedReading(i, f"readings[{i}].value", "must be a number", r))
            continue
        ev = None
        if len(r) == 6 and r[5] is not None:
            problem = _check_event(r[5])
            if problem:
                bad.append(RejectedReading(i, f"readings[{i}].{problem.split(' ')[0]}", problem, r))
                continue
            ev = r[5]
        append((d, m, t, v, q, ev))
    out = DecodedBatch(gw, seq, sent, good, bad)
    for gi, g in enumerate(gaps):
        res = _decode_gap(g, gi)
        if isinstance(res, RejectedReading):
            out.rejected_gaps.append(res)
        else:
            out.gaps.append(res)
    return out


def _now_ms() -> float:
    import time

    return time.time() * 1000.0
