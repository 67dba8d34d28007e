"""Gap fill on the gateway: acked batches kept in the spool (retention, eviction first when full,
tombstones) and resend requests answered over a real broker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_gw_helpers import RunningGateway, collector, make_config, sim_factory  # noqa: F401

from gateway.spool import EVICTED_REASON, PendingBatch, Spool, Tombstone
from parkpulse.wire import parse_resend_request


def _rows(t0: int, n: int, devices: int = 3) -> list[list[Any]]:
    return [
        [f"m{d}", m, t0 + i * 1000, 1.0 + i, 0]
        for i in range(n)
        for d in range(devices)
        for m in ("elec_import_kwh", "active_power_kw")
    ]


def test_acked_batches_are_kept_not_resent_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_bytes=10_000_000) as s:
        seqs = [s.append(_rows(1_700_000_000_000 + k * 10_000, 5)) for k in range(4)]
        before = s.bytes
        assert s.ack(seqs[:3]) == 3
        assert s.ack(seqs[:3]) == 0, "a second PUBACK changes nothing"
        assert (s.depth, s.acked) == (1, 3)
        assert s.bytes == before, "acked batches still take their room"
        assert [b.seq for b in s.pending(-1, 10)] == [3], (
            "acked batches are not sent again by the normal path"
        )
        kept = s.retained(0, 10)
        assert [b.seq for b in kept] == [0, 1, 2] and all(isinstance(b, PendingBatch) for b in kept)
        assert orjson.loads(kept[1].rows) == _rows(1_700_000_010_000, 5), "kept unchanged"
    with Spool(path, max_bytes=10_000_000) as s:
        assert (s.depth, s.acked, s.last_seq) == (1, 3, 3)
        assert [b.seq for b in s.retained(1, 2)] == [1, 2]


def test_acked_batches_expire_into_tombstones(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=10_000_000, keep_acked_s=3600) as s:
        t0 = 1_700_000_000_000
        seqs = [s.append(_rows(t0 + k * 10_000, 5)) for k in range(3)]
        s.ack(seqs)
        assert s.expire_acked() == 0, "younger than keep_acked_s"
        assert s.expire_acked(now_ms=int(time.time() * 1000) + 3_601_000) == 3
        assert (s.acked, s.acked_bytes, s.bytes, s.evicted) == (0, 0, 0, 3)
        stones = s.retained(0, 2)
        assert all(isinstance(x, Tombstone) for x in stones)
        st = stones[1]
        assert isinstance(st, Tombstone)
        assert (st.seq, st.first_ts, st.last_ts, st.n) == (1, t0 + 10_000, t0 + 14_000, 5 * 3 * 2)
        gaps = orjson.loads(st.gaps_json())
        assert gaps == [
            {
                "start": "2023-11-14T22:13:30.000Z",
                "end": "2023-11-14T22:13:34.000Z",
                "count": 30,
                "reason": EVICTED_REASON,
            }
        ]


def test_keep_acked_zero_evicts_at_once(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=10_000_000, keep_acked_s=0) as s:
        s.ack([s.append(_rows(0, 2))])
        assert (s.acked, s.bytes, s.evicted) == (0, 0, 1)
        assert [x.seq for x in s.tombstones()] == [0]


def test_acked_share_bounds_kept_batches(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=100_000, keep_acked_share=0.2) as s:
        for k in range(40):
            s.ack([s.append(_rows(k * 10_000, 5))])
        assert 0 < s.acked_bytes <= 20_000
        kept = [b.seq for b in s.retained(0, 100)]
        assert kept[-1] == 39 and isinstance(s.retained(0, 0)[0], Tombstone), "oldest evicted first"
        assert s.dropped_readings == 0


def test_full_spool_evicts_acked_before_thinning_unsent(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=60_000, keep_acked_share=0.9) as s:
        t0 = 1_700_000_000_000
        for k in range(10):  # delivered batches
            s.ack([s.append(_rows(t0 + k * 10_000, 5))])
        acked_before = s.acked
        assert acked_before == 10
        k = 10
        while s.acked and k < 200:  # unsent batches fill the spool
            s.append(_rows(t0 + k * 10_000, 5))
            k += 1
            if s.acked:
                assert s.dropped_readings == 0, "nothing unsent is thinned while acked batches are left"
        assert s.acked == 0 and s.evicted == 10
        assert [x.seq for x in s.tombstones()] == list(range(10))
        while s.dropped_readings == 0 and k < 400:  # now the existing thinning order applies
            s.append(_rows(t0 + k * 10_000, 5))
            k += 1
        assert s.dropped_readings > 0 and s.bytes <= 60_000
        energy = [r for b in s.pending(-1, 1000) for r in orjson.loads(b.rows) if r[1] == "elec_import_kwh"]
        assert len(energy) == (k - 10) * 5 * 3, "the first thinning level drops gauges only"
        gaps = [g for b in s.pending(-1, 1000) if b.gaps for g in orjson.loads(b.gaps)]
        assert gaps and all(g["reason"] == "spool_full_gauges_thinned" for g in gaps)


def test_resend_request_validation() -> None:
    ok = parse_resend_request(b'{"v":1,"gateway":"gw1","from_seq":3,"to_seq":9,"requested_at":1}', "gw1")
    assert (ok.from_seq, ok.to_seq, ok.requested_at) == (3, 9, 1)
    for payload, field in [
        (b"nope", "payload"),
        (b"[1]", "payload"),
        (b'{"v":2,"gateway":"gw1","from_seq":1,"to_seq":2}', "v"),
        (b'{"v":1,"gateway":"gw2","from_seq":1,"to_seq":2}', "gateway"),
        (b'{"v":1,"gateway":"gw1","from_seq":"1","to_seq":2}', "from_seq"),
        (b'{"v":1,"gateway":"gw1","from_seq":true,"to_seq":2}', "from_seq"),
        (b'{"v":1,"gateway":"gw1","from_seq":5,"to_seq":2}', "from_seq/to_seq"),
        (b'{"v":1,"gateway":"gw1","from_seq":-1,"to_seq":2}', "from_seq"),
        (b'{"v":1,"gateway":"gw1","from_seq":1,"to_seq":9223372036854775808}', "to_seq"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}"):
            parse_resend_request(payload, "gw1")


def _request(port: int, topic: str, doc: dict[str, Any]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, orjson.dumps(doc), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_gateway_answers_resend_requests(
    sim_factory: Any,  # noqa: F811
    broker: Any,
    unique_id: str,
    tmp_path: Path,
) -> None:
    """Over a real broker: kept batches re-sent unchanged, evicted ones as an empty batch with the
    gap of what was lost, never-assigned seqs and bad requests ignored and counted."""
    sim = sim_factory()
    sim.add_device(device_id=1, model="eastron-sdm630", seed=1)
    sim.start()
    cfg = make_config(
        park=unique_id,
        broker_url=broker.url,
        spool=tmp_path / "spool.db",
        buses=[{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
        devices=[{"id": "m1", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630", "interval_s": 0.5}],
    )
    topic = f"pp/v1/{unique_id}/f1/gw1/resend"
    with collector(broker.port, unique_id) as col, RunningGateway(cfg) as rg:
        gw = rg.gw
        assert gw is not None
        assert col.wait(lambda c: len(c.unique_batches()) >= 6 and gw.spool.acked >= 6, 30)
        first = {b["seq"]: b for b in col.batches}
        # evict seq 0 and 1 by hand (as retention would): tombstones remain
        rg.loop.call_soon_threadsafe(gw.spool.evict_acked_through, 1)
        assert col.wait(lambda c: gw.spool.evicted == 2, 5)
        n_before = len(col.batches)
        _request(
            broker.port, topic, {"v": 1, "gateway": "gw1", "from_seq": 0, "to_seq": 3, "requested_at": 1}
        )

        def again_() -> list[dict[str, Any]]:  # the collector also sees the request itself (no "seq")
            return [b for b in col.batches[n_before:] if "seq" in b and b["seq"] <= 3]

        assert col.wait(lambda c: len(again_()) >= 4, 10), gw.resend_requests
        again = again_()
        by_seq = {b["seq"]: b for b in again}
        assert sorted(by_seq) == [0, 1, 2, 3]
        for s in (2, 3):
            assert by_seq[s]["readings"] == first[s]["readings"], "re-sent unchanged, original timestamps"
        for s in (0, 1):
            assert by_seq[s]["readings"] == []
            (gap,) = by_seq[s]["gaps"]
            assert gap["reason"] == EVICTED_REASON and gap["count"] == len(first[s]["readings"])
            tss = [r[2] for r in first[s]["readings"]]
            assert gap["start"] <= gap["end"] and (min(tss), max(tss)) == (
                int(time.mktime(time.strptime(gap["start"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone) * 1000
                + int(gap["start"][20:23]),
                int(time.mktime(time.strptime(gap["end"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone) * 1000
                + int(gap["end"][20:23]),
            )
        assert gw.resend_batches == {"batch": 2, "evicted": 2}
        _request(broker.port, topic, {"v": 1, "gateway": "gw1", "from_seq": 10_000, "to_seq": 10_005})
        _request(broker.port, topic, {"v": 1, "gateway": "gw1", "from_seq": "x", "to_seq": 1})
        assert col.wait(
            lambda c: gw.resend_requests["never_assigned"] == 1 and gw.resend_requests["invalid"] == 1, 5
        )
        assert gw.resend_requests["accepted"] == 1 and gw.resend_batches == {"batch": 2, "evicted": 2}
        assert col.wait(lambda c: not gw._resend_inflight, 5), "re-sent batches were acknowledged"
