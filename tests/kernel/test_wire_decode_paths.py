"""The decoder's two paths agree: `decode_batch` takes a fast path for a plain reading (five fields,
a finite float value) and sends every other reading to `_decode_reading`, the full field-by-field
check. Whatever path a reading takes, the batch must come out as if each reading had been checked
by `_decode_reading` alone."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from parkpulse.wire._decode import RejectedReading, _decode_reading, decode_batch
from parkpulse.wire._limits import MAX_TS_MS, MIN_TS_MS

NOW = 1_795_593_600_000
FUTURE_MS = 60_000

_text = st.sampled_from(["m1", "elec_import_kwh", "", "x\x00y"]) | st.none() | st.integers(0, 3)
_ts_edges = st.sampled_from(
    [MIN_TS_MS - 1, MIN_TS_MS, NOW, NOW + FUTURE_MS, NOW + FUTURE_MS + 1, MAX_TS_MS + 1]
)
_ts: st.SearchStrategy[object] = st.one_of(
    _ts_edges, st.integers(MIN_TS_MS - 10, NOW + 2 * FUTURE_MS), st.floats(1e12, 2e12), st.none()
)
_value = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**400), 10**400)
    | st.sampled_from([None, True, "1", -0.0, 1e308, math.nan, math.inf, -math.inf])
)
_quality = st.integers(-1, 5) | st.sampled_from([4.0, True, None])
_event = st.sampled_from(
    [
        None,
        {"event": "reset", "prev": 1.5, "correction": 2},
        {"event": "jump", "prev": math.nan, "correction": 0},
        {"event": "nope", "prev": 1, "correction": 1},
        "reset",
    ]
)
_reading = st.one_of(
    st.tuples(_text, _text, _ts, _value, _quality).map(list),
    st.tuples(_text, _text, _ts, _value, _quality, _event).map(list),
    # mostly-valid readings, so the fast path is taken often
    st.tuples(st.just("m1"), st.just("p_kw"), _ts, _value, _quality).map(list),
    st.sampled_from([[], ["m1"], "x", None, ["m1", "p", NOW, 1.0, 0, None, 1]]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_reading, max_size=12))
def test_fast_path_agrees_with_the_full_check(rows: list[object]) -> None:
    # json (not orjson) so NaN and ±Infinity and 400-digit integers reach the decoder as such
    payload = json.dumps({"v": 1, "gateway": "g", "seq": 1, "sent_at": NOW, "readings": rows})
    got = decode_batch(payload, max_future_ms=FUTURE_MS, now_ms=NOW)
    expect_good: list[object] = []
    expect_bad: list[object] = []
    for i, r in enumerate(json.loads(payload)["readings"]):
        res = _decode_reading(r, i, MIN_TS_MS, NOW + FUTURE_MS)
        (expect_bad if isinstance(res, RejectedReading) else expect_good).append(res)
    assert repr(got.readings) == repr(expect_good)  # repr: NaN in raw rows compares unequal to itself
    assert repr(got.rejected) == repr(expect_bad)


def test_both_paths_are_taken_and_name_the_field() -> None:
    rows = [
        ["m1", "p_kw", NOW, 1.5, 0],  # fast path
        ["m1", "p_kw", NOW, 2, 0],  # int value: full check, stored as a float
        ["m1", "p_kw", NOW, None, 4],  # null with quality bad: full check
        ["m1", "p_kw", NOW, 1.5, 0, {"event": "reset", "prev": 1, "correction": 0.5}],
        ["m1", "p_kw", NOW + FUTURE_MS + 1, 1.5, 0],  # too far ahead
        ["m1", "", NOW, 1.5, 0],
        ["m1", "p_kw", NOW, math.nan, 0],
        ["m1", "p_kw", NOW, -math.inf, 0],
        ["m1", "p_kw", NOW, 1.5, -1],
    ]
    d = decode_batch(
        json.dumps({"v": 1, "gateway": "g", "seq": 1, "sent_at": NOW, "readings": rows}),
        max_future_ms=FUTURE_MS,
        now_ms=NOW,
    )
    assert d.readings == [
        ("m1", "p_kw", NOW, 1.5, 0, None),
        ("m1", "p_kw", NOW, 2.0, 0, None),
        ("m1", "p_kw", NOW, None, 4, None),
        ("m1", "p_kw", NOW, 1.5, 0, {"event": "reset", "prev": 1, "correction": 0.5}),
    ]
    assert type(d.readings[1][3]) is float
    assert [(r.index, r.field) for r in d.rejected] == [
        (4, "readings[4].ts"),
        (5, "readings[5].metric"),
        (6, "readings[6].value"),
        (7, "readings[7].value"),
        (8, "readings[8].quality"),
    ]
    assert d.rejected[0].reason == f"is in the future (limit {NOW + FUTURE_MS} ms)"
