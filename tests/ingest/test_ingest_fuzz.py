"""Property test: malformed payloads thrown at a RUNNING ingest process never stop it, never block
its acknowledgements, and good data sent between them is still stored exactly."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_testkit import Park, q1, readings_of, send, wait_for

from ingest._load import wait_stored
from ingest._prepare import _original_index
from ingest._store import _runs
from parkpulse.services import MosquittoBroker

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64), st.floats(allow_nan=True),
                        st.text(max_size=12))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                          max_leaves=12)


def _reading(dev: str) -> st.SearchStrategy[list[object]]:
    good = st.tuples(st.sampled_from([dev, "ghost"]), st.sampled_from(["active_power_kw", "elec_import_kwh", "nope"]),
                     st.integers(0, 2**45), st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none(), json_scalar),
                     st.integers(-1, 6))
    return st.one_of(good.map(list), json_value.map(lambda v: v if isinstance(v, list) else [v]))


@st.composite
def bad_payloads(draw: st.DrawFn, gw: str, dev: str) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(json_value)).encode()
    doc: dict[str, object] = {"v": draw(st.sampled_from([1, 1, 1, 2, "1"])),
                              "gateway": draw(st.sampled_from([gw, gw, "other-gw", 5])),
                              "seq": draw(st.one_of(st.integers(10_000, 10**12), st.integers(-5, -1), st.text(max_size=3))),
                              "sent_at": draw(st.one_of(st.integers(0, 2**42), st.floats())),
                              "readings": draw(st.lists(_reading(dev), max_size=6))}
    if draw(st.booleans()):
        doc["gaps"] = draw(st.lists(json_value, max_size=2))
    if kind == 3 and draw(st.booleans()):
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return json.dumps(doc).encode()  # Python's json: bare NaN/Infinity included


def test_malformed_payloads_never_stop_a_running_service(
    db: str, broker: MosquittoBroker, park: Park, start_ingest
) -> None:
    ing = start_ingest(broker.url, "fuzz")
    g = park.gateways[0]
    t0 = int(time.time() * 1000) - 86_400_000
    sent: list[int] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(bad_payloads(g.gateway, g.devices[0]), min_size=1, max_size=5))
    def throw(payloads: list[bytes]) -> None:
        good = g.batch(t0 + len(sent) * 60_000, 60)
        sent.append(g.seq - 1)
        send(broker.url, [(g.topic, p) for p in payloads] + [(g.topic, good)])
        wait_stored(db, {g.gateway: g.seq - 1}, timeout=20, poll=0.02)
        assert ing.proc is not None and ing.proc.poll() is None

    throw()
    assert ing.proc is not None and ing.proc.poll() is None
    # the good batches between the bad ones are all there, once (a fuzzed reading may be valid and
    # stored too: count the good instants only)
    good_ts = [datetime.fromtimestamp((t0 + k * 60_000) / 1000, UTC) for k in range(len(sent))]
    n, distinct = (q1(db, f"SELECT count{x} FROM readings WHERE ts = ANY(%s)", good_ts)
                   for x in ("(*)", "(DISTINCT (device_pk, metric_id, ts))"))
    assert n == distinct == 60 * len(sent)
    rows, keys = readings_of(db, park)
    assert rows == keys >= 60 * len(sent)
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
