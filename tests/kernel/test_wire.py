from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parkpulse.errors import WireError
from parkpulse.wire import Batch, Quality, Reading, decode_batch, parse_topic, shared_data_subscription

T = 1_795_593_600_000  # 2026-11-25: readings must be stamped after 2000-01-01


def _batch(readings: list[list[object]], **kw: object) -> bytes:
    doc = {"v": 1, "gateway": "gw-1", "seq": 7, "sent_at": 1_700_000_000_000, "readings": readings} | kw
    return orjson.dumps(doc)


def test_model_round_trips_through_fast_decoder() -> None:
    ts = datetime(2026, 11, 25, 8, 0, 0, 123000, tzinfo=UTC)
    b = Batch(
        gateway="gw-1",
        seq=3,
        sent_at=ts,
        readings=[
            Reading(device="m1", metric="elec_import_kwh", ts=ts, value=12.5),
            Reading(device="m1", metric="active_power_kw", ts=ts, value=None, quality=Quality.BAD),
        ],
    )
    d = decode_batch(orjson.dumps(b.to_wire()))
    assert (d.gateway, d.seq) == ("gw-1", 3)
    assert d.readings == [
        ("m1", "elec_import_kwh", 1795593600123, 12.5, 0, None),
        ("m1", "active_power_kw", 1795593600123, None, 4, None),
    ]
    assert d.rejected == []


def test_bad_readings_are_named_and_the_rest_kept() -> None:
    payload = _batch(
        [
            ["m1", "elec_import_kwh", T + 1000, 1.0, 0],
            ["m1", "elec_import_kwh", "yesterday", 1.0, 0],
            ["m1", "elec_import_kwh", T + 2000, "12", 0],
            ["m1", "elec_import_kwh", T + 3000, None, 0],
            ["m1", "elec_import_kwh", T + 4000, 1.0, 9],
            ["m1", "elec_import_kwh", T + 5000, 2.0, 0],
        ]
    )
    d = decode_batch(payload)
    assert [r[2] - T for r in d.readings] == [1000, 5000]
    assert [r.field for r in d.rejected] == [
        "readings[1].ts",
        "readings[2].value",
        "readings[3].value",
        "readings[4].quality",
    ]


def test_nan_from_a_lenient_encoder_rejects_only_that_reading() -> None:
    payload = b'{"v":1,"gateway":"gw-1","seq":1,"sent_at":1,"readings":[["m","x",1795593600000,NaN,0],["m","x",1795593600001,3.5,0]]}'
    d = decode_batch(payload)
    assert [r[3] for r in d.readings] == [3.5]
    assert d.rejected[0].field == "readings[0].value"


def test_future_timestamps_are_refused() -> None:
    d = decode_batch(
        _batch([["m", "x", T + 10_000, 1.0, 0], ["m", "x", T + 5_000, 1.0, 0]]),
        max_future_ms=1000,
        now_ms=T + 5000,
    )
    assert [r[2] - T for r in d.readings] == [5000]
    assert d.rejected[0].field == "readings[0].ts"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"not json", "payload"),
        (b"[1,2]", "payload"),
        (b'{"v":2}', "v"),
        (b'{"v":1,"gateway":"","seq":1,"sent_at":1,"readings":[]}', "gateway"),
        (b'{"v":1,"gateway":"g","seq":-1,"sent_at":1,"readings":[]}', "seq"),
        (b'{"v":1,"gateway":"g","seq":1,"sent_at":"x","readings":[]}', "sent_at"),
        (b'{"v":1,"gateway":"g","seq":1,"sent_at":1,"readings":{}}', "readings"),
    ],
)
def test_unusable_envelopes_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(WireError) as exc:
        decode_batch(payload)
    assert exc.value.path == field


@given(
    st.lists(
        st.one_of(
            st.integers(),
            st.floats(allow_nan=True),
            st.text(),
            st.none(),
            st.lists(st.integers(), max_size=7),
        ),
        max_size=8,
    )
)
def test_decoder_never_raises_on_any_reading_shape(row: list[object]) -> None:
    try:
        payload = orjson.dumps(
            {"v": 1, "gateway": "g", "seq": 1, "sent_at": 1, "readings": [row, ["m", "x", T, 1.0, 0]]}
        )
    except TypeError:
        return
    d = decode_batch(payload)
    assert len(d.readings) + len(d.rejected) == 2
    for r in d.readings:
        assert r[3] is None or math.isfinite(r[3])


def test_topics() -> None:
    assert parse_topic("pp/v1/park-a/firm-1/gw-1/data") == ("park-a", "firm-1", "gw-1", "data")
    assert parse_topic("pp/v1/Park/firm/gw/data") is None
    assert parse_topic("pp/v1/a/b/c/other") is None
    assert shared_data_subscription("ingest") == "$share/ingest/pp/v1/+/+/+/data"
