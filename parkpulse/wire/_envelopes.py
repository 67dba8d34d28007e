"""Building and reading the wire's envelopes: every producer and consumer goes through these, so
the version and the field names are written in one place (see docs/wire-format.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from parkpulse.wire._limits import INT64_MAX
from parkpulse.wire._models import WIRE_VERSION

__all__ = [
    "ResendRequest",
    "batch_envelope",
    "batch_payload",
    "parse_resend_request",
    "resend_request_payload",
    "status_payload",
]

_HEAD = b'{"v":%d,"gateway":"%s","seq":%d,"sent_at":%d,"readings":'


def batch_envelope(
    gateway: str, seq: int, sent_at_ms: int, readings_json: bytes, gaps_json: bytes | None = None
) -> bytes:
    """A batch from readings (and gaps) already encoded as JSON arrays: the gateway's spool keeps
    them encoded, so a send or a re-send only wraps them."""
    head = _HEAD % (WIRE_VERSION, gateway.encode(), seq, sent_at_ms)
    if gaps_json:
        return head + readings_json + b',"gaps":' + gaps_json + b"}"
    return head + readings_json + b"}"


def batch_payload(
    gateway: str,
    seq: int,
    readings: list[list[Any]],
    *,
    sent_at_ms: int | None = None,
    gaps: list[dict[str, Any]] | None = None,
) -> bytes:
    """A batch from readings as lists `[device, metric, ts_ms, value, quality(, event)]`."""
    doc: dict[str, Any] = {
        "v": WIRE_VERSION,
        "gateway": gateway,
        "seq": seq,
        "sent_at": int(time.time() * 1000) if sent_at_ms is None else sent_at_ms,
        "readings": readings,
    }
    if gaps:
        doc["gaps"] = gaps
    return orjson.dumps(doc)


def status_payload(gateway: str, state: str, **fields: Any) -> bytes:
    """The retained status (birth, last will, periodic health): `v`, `gateway`, `state` and the rest."""
    return orjson.dumps({"v": WIRE_VERSION, "gateway": gateway, "state": state, **fields})


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """`pp/v1/{park}/{firm}/{gateway}/resend`: the platform asks for a range of sequence numbers."""

    from_seq: int
    to_seq: int
    requested_at: int | None


def resend_request_payload(gateway: str, from_seq: int, to_seq: int, now_ms: int | None = None) -> bytes:
    return orjson.dumps(
        {
            "v": WIRE_VERSION,
            "gateway": gateway,
            "from_seq": from_seq,
            "to_seq": to_seq,
            "requested_at": int(time.time() * 1000) if now_ms is None else now_ms,
        }
    )


def _int(doc: dict[str, Any], key: str) -> int:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= INT64_MAX:
        raise ValueError(f"{key}: must be an integer 0…2⁶³−1 (got {v!r})")
    return v


def parse_resend_request(payload: bytes, gateway: str) -> ResendRequest:
    """Validate a request meant for `gateway`; ValueError names the field and the value."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ValueError(f"payload: not JSON (got {payload[:80]!r})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"payload: must be a JSON object (got {type(doc).__name__})")
    if doc.get("v") != WIRE_VERSION:
        raise ValueError(f"v: unsupported version (got {doc.get('v')!r})")
    if doc.get("gateway") != gateway:
        raise ValueError(f"gateway: request is for {doc.get('gateway')!r}, this is {gateway!r}")
    a, b = _int(doc, "from_seq"), _int(doc, "to_seq")
    if b < a:
        raise ValueError(f"from_seq/to_seq: need 0 <= from_seq <= to_seq (got {a}..{b})")
    at = doc.get("requested_at")
    return ResendRequest(a, b, at if isinstance(at, int) and not isinstance(at, bool) else None)
