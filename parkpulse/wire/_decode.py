"""Fast decoding of data batches for the hot path of ingest.

Checks exactly what the pydantic models check, without building objects per reading:
each bad reading is reported with the field it fails on and the rest of the batch is kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from parkpulse.errors import WireError

__all__ = ["DecodedBatch", "RejectedReading", "decode_batch"]

_MAX_QUALITY = 4
_EVENTS = frozenset({"reset", "rollover", "replaced", "jump"})


@dataclass(slots=True)
class RejectedReading:
    index: int
    field: str
    reason: str
    raw: Any


@dataclass(slots=True)
class DecodedBatch:
    gateway: str
    seq: int
    sent_at_ms: int
    # (device, metric, ts_ms, value or None, quality, event dict or None)
    readings: list[tuple[str, str, int, float | None, int, dict[str, Any] | None]]
    rejected: list[RejectedReading] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)


def _check_event(ev: object) -> str | None:
    if not isinstance(ev, dict):
        return "event must be an object"
    if ev.get("event") not in _EVENTS:
        return f"event.event must be one of {sorted(_EVENTS)}"
    for k in ("prev", "correction"):
        x = ev.get(k)
        if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
            return f"event.{k} must be a finite number"
    return None


def decode_batch(payload: bytes | str, *, max_future_ms: int | None = None, now_ms: int | None = None) -> DecodedBatch:
    """Decode one batch. Raises WireError when the envelope is unusable; bad readings are collected."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # Gateways written with Python's json emit bare NaN/Infinity, which strict JSON refuses.
        # Parse such a payload leniently so only the offending readings are rejected, not the batch.
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise WireError("payload", payload[:80], f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise WireError("payload", type(doc).__name__, "must be a JSON object")
    if doc.get("v") != 1:
        raise WireError("v", doc.get("v"), "unsupported wire version (expected 1)")
    gw = doc.get("gateway")
    if not isinstance(gw, str) or not gw:
        raise WireError("gateway", gw, "must be a non-empty string")
    seq = doc.get("seq")
    if type(seq) is not int or seq < 0:
        raise WireError("seq", seq, "must be an integer ≥ 0")
    sent = doc.get("sent_at")
    if type(sent) is not int:
        raise WireError("sent_at", sent, "must be epoch milliseconds")
    rows = doc.get("readings")
    if not isinstance(rows, list):
        raise WireError("readings", type(rows).__name__, "must be a list")
    gaps = doc.get("gaps") or []
    if not isinstance(gaps, list):
        raise WireError("gaps", type(gaps).__name__, "must be a list")
    limit: int | None = None
    if max_future_ms is not None:
        limit = (now_ms if now_ms is not None else int(_now_ms())) + max_future_ms

    good: list[tuple[str, str, int, float | None, int, dict[str, Any] | None]] = []
    bad: list[RejectedReading] = []
    append = good.append
    for i, r in enumerate(rows):
        if type(r) is not list or not 5 <= len(r) <= 6:
            bad.append(RejectedReading(i, f"readings[{i}]", "must be [device, metric, ts_ms, value, quality(, event)]", r))
            continue
        d, m, t, v, q = r[0], r[1], r[2], r[3], r[4]
        if type(d) is not str or not d:
            bad.append(RejectedReading(i, f"readings[{i}].device", "must be a non-empty string", r))
            continue
        if type(m) is not str or not m:
            bad.append(RejectedReading(i, f"readings[{i}].metric", "must be a non-empty string", r))
            continue
        if type(t) is not int or t < 0:
            bad.append(RejectedReading(i, f"readings[{i}].ts", "must be epoch milliseconds ≥ 0", r))
            continue
        if limit is not None and t > limit:
            bad.append(RejectedReading(i, f"readings[{i}].ts", f"is in the future (limit {limit} ms)", r))
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
            v = float(v)
        elif v is None:
            if q != _MAX_QUALITY:
                bad.append(RejectedReading(i, f"readings[{i}].value", "null is allowed only with quality bad (4)", r))
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
    return DecodedBatch(gw, seq, sent, good, bad, gaps)


def _now_ms() -> float:
    import time

    return time.time() * 1000.0
