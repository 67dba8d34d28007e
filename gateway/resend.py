"""Resend requests from the platform (`pp/v1/{park}/{firm}/{gateway}/resend`, see docs/wire-format.md).

Ingest asks for a range of sequence numbers it never received (the broker acknowledged them to
the gateway and lost them, e.g. across a broker restart). The gateway answers from its spool:
acked batches are re-sent unchanged; batches already evicted are answered with an empty batch
of that seq whose `gaps` say exactly what was lost (from the tombstone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ResendRequest", "parse_resend_request"]


@dataclass(frozen=True, slots=True)
class ResendRequest:
    from_seq: int
    to_seq: int
    requested_at: int | None


def _int(doc: dict[str, Any], key: str) -> int:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key}: must be an integer (got {v!r})")
    return v


def parse_resend_request(payload: bytes, gateway: str) -> ResendRequest:
    """Validate a request; ValueError names the field and the value."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ValueError(f"payload: not JSON (got {payload[:80]!r})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"payload: must be a JSON object (got {type(doc).__name__})")
    if doc.get("v") != 1:
        raise ValueError(f"v: unsupported version (got {doc.get('v')!r})")
    if doc.get("gateway") != gateway:
        raise ValueError(f"gateway: request is for {doc.get('gateway')!r}, this is {gateway!r}")
    a, b = _int(doc, "from_seq"), _int(doc, "to_seq")
    if a < 0 or b < a:
        raise ValueError(f"from_seq/to_seq: need 0 <= from_seq <= to_seq (got {a}..{b})")
    at = doc.get("requested_at")
    return ResendRequest(a, b, at if isinstance(at, int) and not isinstance(at, bool) else None)
