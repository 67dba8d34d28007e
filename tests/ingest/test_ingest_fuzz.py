"""Property test: malformed payloads thrown at a RUNNING ingest process never stop it, never block
its acknowledgements, and good data sent between them is still stored exactly.

The strategies reach past every column's range (issue 9): integers beyond 64 bits and beyond the
double range, huge exponents, deep nesting, control characters; after each round a good batch of
another gateway must be stored within seconds."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_testkit import Park, q1, readings_of, send, wait_for

from ingest._prepare import _original_index
from ingest._store import _runs
from ingest.harness import wait_stored
from parkpulse.services import MosquittoBroker

big_ints = st.one_of(
    st.integers(-(2**63), 2**64), st.integers(2**63 - 2, 2**70), st.integers(-(10**400), 10**400)
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["\x00", "a\x00b", "\x1b[31m", "\u202e"]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _reading(dev: str) -> st.SearchStrategy[list[object]]:
    good = st.tuples(
        st.sampled_from([dev, "ghost"]),
        st.sampled_from(["active_power_kw", "elec_import_kwh", "nope"]),
        st.integers(0, 2**45),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none(), json_scalar),
        st.integers(-1, 6),
    )
    return st.one_of(good.map(list), json_value.map(lambda v: v if isinstance(v, list) else [v]))


@st.composite
def bad_payloads(draw: st.DrawFn, gw: str, dev: str) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(json_value)).encode()
    if kind == 4:  # deep nesting, inside the envelope or as the whole payload
        depth = draw(st.sampled_from([600, 1100, 5000, 50_000]))
        nest = b"[" * depth + b"1" + b"]" * depth
        if draw(st.booleans()):
            return nest
        return b'{"v":1,"gateway":"%s","seq":%d,"sent_at":1,"readings":[%s]}' % (
            gw.encode(),
            draw(st.integers(10_000, 10**6)),
            nest,
        )
    if kind == 5:  # huge exponents and numbers no double holds, as raw text
        num = draw(st.sampled_from([b"1e400", b"-1e999", b"1" + b"0" * 400, b"1e-400", b"9" * 5000]))
        at = draw(st.sampled_from(["seq", "sent_at", "ts", "value", "prev", "count"]))
        t = b"%d" % draw(st.integers(946_684_800_000, 2**45))
        parts = {"seq": b"12345", "sent_at": t, "ts": t, "value": b"1.5", "prev": b"1", "count": b"3"} | {
            at: num
        }
        return (
            b'{"v":1,"gateway":"%s","seq":%s,"sent_at":%s,"readings":[["%s","elec_import_kwh",%s,%s,0,'
            b'{"event":"reset","prev":%s,"correction":1}]],"gaps":[{"start":%s,"end":%s,"count":%s,"reason":"r"}]}'
            % (
                gw.encode(),
                parts["seq"],
                parts["sent_at"],
                dev.encode(),
                parts["ts"],
                parts["value"],
                parts["prev"],
                t,
                t,
                parts["count"],
            )
        )
    doc: dict[str, object] = {
        "v": draw(st.sampled_from([1, 1, 1, 2, "1"])),
        "gateway": draw(st.sampled_from([gw, gw, "other-gw", 5])),
        "seq": draw(
            st.one_of(
                st.integers(10_000, 10**12),
                st.integers(-5, -1),
                st.text(max_size=3),
                st.integers(2**63, 2**70),
                st.just(2**63),
            )
        ),
        "sent_at": draw(st.one_of(st.integers(0, 2**42), st.floats())),
        "readings": draw(st.lists(_reading(dev), max_size=6)),
    }
    if draw(st.booleans()):
        doc["gaps"] = draw(st.lists(json_value, max_size=2))
    if kind == 3 and draw(st.booleans()):
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return json.dumps(doc).encode()  # Python's json: bare NaN/Infinity included


def test_malformed_payloads_never_stop_a_running_service(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    ing = start_ingest(broker.url, "fuzz")
    g, other = park.gateways[0], park.gateways[1]
    t0 = int(time.time() * 1000) - 86_400_000
    sent: list[int] = []
    slowest = 0.0

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(bad_payloads(g.gateway, g.devices[0]), min_size=1, max_size=5))
    def throw(payloads: list[bytes]) -> None:
        nonlocal slowest
        good = g.batch(t0 + len(sent) * 60_000, 60)
        sent.append(g.seq - 1)
        send(broker.url, [(g.topic, p) for p in payloads] + [(g.topic, good)])
        # another gateway's good batch, sent after the bad ones, is stored within seconds
        t_sent = time.monotonic()
        send(broker.url, [(other.topic, other.batch(t0 + len(sent) * 60_000, 30))])
        wait_stored(db, {other.gateway: other.seq - 1}, timeout=10, poll=0.02)
        slowest = max(slowest, time.monotonic() - t_sent)
        wait_stored(db, {g.gateway: g.seq - 1}, timeout=20, poll=0.02)
        assert ing.proc is not None and ing.proc.poll() is None

    throw()
    assert ing.proc is not None and ing.proc.poll() is None
    # the good batches between the bad ones are all there, once (a fuzzed reading may be valid and
    # stored too: count the good instants only)
    good_ts = [datetime.fromtimestamp((t0 + k * 60_000) / 1000, UTC) for k in range(len(sent))]
    n, distinct = (
        q1(
            db,
            f"SELECT count{x} FROM readings r JOIN devices d USING (device_pk) "
            "WHERE ts = ANY(%s) AND d.gateway_id = %s",
            good_ts,
            g.gateway,
        )
        for x in ("(*)", "(DISTINCT (device_pk, metric_id, ts))")
    )
    assert n == distinct == 60 * len(sent)
    assert slowest < 10
    rows, keys = readings_of(db, park)
    assert rows == keys >= 90 * len(sent)
    assert q1(db, "SELECT count(*) FROM dead_letters WHERE reason LIKE 'internal error%%'") == 0
    wait_for(lambda: ing.health()["unacked"] == 0, what="every message acknowledged")
    assert q1(db, "SELECT count(*) FROM dead_letters") > 0
    assert q1(db, "SELECT count(*) FROM dead_letters WHERE reason = ''") == 0
    assert ing.health()["status"] == "ok"


def test_gap_runs_and_original_indexes() -> None:
    assert _runs(2, 9, [3, 4, 7]) == [(2, 2, False), (3, 4, True), (5, 6, False), (7, 7, True), (8, 9, False)]
    assert _runs(4, 5, [4, 5]) == [(4, 5, True)]
    assert _original_index(0, [0, 1]) == 2
    assert _original_index(3, [1, 5]) == 4
    assert _original_index(5, [1, 5]) == 7


def test_bad_setting_is_named(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from ingest.cli import app

    monkeypatch.setenv("PARKPULSE_INGEST_RECEIVE_MAXIMUM", "3")
    r = CliRunner().invoke(app, ["run"])
    assert r.exit_code == 2
    assert "receive_maximum" in r.output and "3" in r.output
