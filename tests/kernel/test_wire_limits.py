"""Issue 9: every number of the wire is checked against the column that stores it, in the decoder.

Each case here once reached the database and was refused there (a seq of 2⁶³ even stopped all
ingestion); now the decoder names the field and keeps the rest of the batch.
"""

from __future__ import annotations

import json

import orjson
import pytest
from pydantic import ValidationError

from parkpulse.errors import WireError
from parkpulse.wire import INT64_MAX, Batch, Gap, Status, decode_batch

T = 1_795_593_600_000  # 2026-11-25


def _doc(readings: list[object], **kw: object) -> dict[str, object]:
    return {"v": 1, "gateway": "gw-1", "seq": 7, "sent_at": T, "readings": readings} | kw


def _lenient(doc: dict[str, object]) -> bytes:
    """As a gateway written with Python's json sends it: big integers and bare NaN included."""
    return json.dumps(doc).encode()


def test_seq_beyond_bigint_is_an_envelope_error_naming_seq() -> None:
    with pytest.raises(WireError) as exc:
        decode_batch(_lenient(_doc([["m", "x", T, 1.0, 0]], seq=2**63)))
    assert exc.value.path == "seq" and exc.value.value == 2**63
    assert decode_batch(_lenient(_doc([], seq=INT64_MAX))).seq == INT64_MAX


@pytest.mark.parametrize("sent_at", [-1, 2**70, 1.5])
def test_sent_at_out_of_range(sent_at: object) -> None:
    with pytest.raises(WireError) as exc:
        decode_batch(_lenient(_doc([], sent_at=sent_at)))
    assert exc.value.path == "sent_at"


def test_a_400_digit_value_rejects_only_that_reading() -> None:
    huge = int("9" * 400)
    d = decode_batch(
        _lenient(_doc([["m", "x", T, huge, 0], ["m", "x", T + 1, 2.5, 0], ["m", "x", T + 2, -huge, 0]]))
    )
    assert [r[3] for r in d.readings] == [2.5]
    assert [r.field for r in d.rejected] == ["readings[0].value", "readings[2].value"]
    assert "double range" in d.rejected[0].reason


def test_an_integer_value_within_range_is_kept_as_float() -> None:
    d = decode_batch(_lenient(_doc([["m", "x", T, 2**64, 0]])))
    assert d.readings[0][3] == float(2**64)


@pytest.mark.parametrize("key", ["prev", "correction"])
def test_event_numbers_beyond_double_range(key: str) -> None:
    ev = {"event": "reset", "prev": 5.0, "correction": 5.0} | {key: int("1" * 400)}
    d = decode_batch(_lenient(_doc([["m", "x", T, 1.0, 0, ev], ["m", "x", T + 1, 2.0, 0]])))
    assert [r[3] for r in d.readings] == [2.0]
    assert d.rejected[0].field == f"readings[0].event.{key}"


def test_huge_exponent_is_refused_as_not_finite() -> None:
    payload = (
        b'{"v":1,"gateway":"gw-1","seq":1,"sent_at":%d,"readings":[["m","x",%d,1e400,0],["m","x",%d,1,0]]}'
        % (T, T, T + 1)
    )
    d = decode_batch(payload)
    assert [r.field for r in d.rejected] == ["readings[0].value"]
    assert len(d.readings) == 1


def test_deep_nesting_is_a_named_payload_error() -> None:
    with pytest.raises(WireError) as exc:
        decode_batch(b"[" * 100_000 + b"]" * 100_000)
    assert exc.value.path == "payload"
    deep = b"[" * 5000 + b"1" + b"]" * 5000  # beyond orjson's limit, so the lenient parser meets it too
    with pytest.raises(WireError) as exc2:
        decode_batch(b'{"v":1,"gateway":"g","seq":1,"sent_at":%d,"readings":[%s]}' % (T, deep))
    assert exc2.value.path == "payload" and "nested" in exc2.value.reason


def test_readings_from_1970_are_refused_one_by_one() -> None:
    d = decode_batch(
        _lenient(_doc([["m", "x", 0, 1.0, 0], ["m", "x", 86_400_000 * 365, 1.0, 0], ["m", "x", T, 1.0, 0]]))
    )
    assert [r.field for r in d.rejected] == ["readings[0].ts", "readings[1].ts"]
    assert "too old" in d.rejected[0].reason
    assert [r[2] for r in d.readings] == [T]


def test_timestamps_beyond_year_9999_without_a_future_limit() -> None:
    d = decode_batch(_lenient(_doc([["m", "x", 2**63, 1.0, 0], ["m", "x", T, 1.0, 0]])))
    assert [r.field for r in d.rejected] == ["readings[0].ts"]


def test_gaps_are_validated_in_the_decoder() -> None:
    gaps = [
        {"start": T, "end": T + 1, "count": 2**31, "reason": "spool full"},
        {"start": T, "end": T + 1, "count": 3, "reason": "spool full"},
        {"start": "2026-11-25T00:00:00Z", "end": "2026-11-25T01:00:00+08:00", "count": 1, "reason": "x"},
        {"start": T, "end": T - 1, "count": 1, "reason": "x"},
        {"start": "2026-11-25T00:00:00", "end": T, "count": 1, "reason": "x"},
        {"start": T, "end": T, "count": 1, "reason": "a\x00b"},
        "nope",
    ]
    d = decode_batch(orjson.dumps(_doc([["m", "x", T, 1.0, 0]], gaps=gaps)))
    assert len(d.readings) == 1
    assert [g[4] for g in d.gaps] == [3]
    assert [r.field for r in d.rejected_gaps] == [
        "gaps[0].count",
        "gaps[2].end",
        "gaps[3].end",
        "gaps[4].start",
        "gaps[5].reason",
        "gaps[6]",
    ]
    assert d.rejected == []


def test_models_carry_the_same_bounds() -> None:
    with pytest.raises(ValidationError):
        Batch.model_validate(
            {"gateway": "gw-1", "seq": 2**63, "sent_at": "2026-01-01T00:00:00Z", "readings": []}
        )
    with pytest.raises(ValidationError):
        Gap.model_validate(
            {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "count": 2**31, "reason": "x"}
        )
    with pytest.raises(ValidationError) as exc:
        Status.model_validate({"gateway": "gw-1", "state": "online", "last_seq": 2**63})
    assert exc.value.errors()[0]["loc"] == ("last_seq",)
    with pytest.raises(ValidationError):
        Status.model_validate({"gateway": "gw-1", "state": "online", "version": "1\x00"})
    with pytest.raises(ValidationError):
        Status.model_validate_json(
            b'{"gateway":"gw-1","state":"online","device_health":{"m":{"poll_lag_ms_p99":1e400}}}'
        )
