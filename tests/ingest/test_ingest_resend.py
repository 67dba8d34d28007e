"""Gap fill on the ingest side: the resend scheduler (unit) and resend requests of a running
ingest process over a real broker, closed by re-sent and empty (evicted) batches."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from ingest_testkit import Park, q1, send, wait_for
from paho.mqtt.enums import CallbackAPIVersion

from ingest._resend import OpenGap, ResendScheduler
from parkpulse.services import MosquittoBroker
from parkpulse.wire import resend_request_payload as resend_payload


def _sched(**kw: Any) -> ResendScheduler:
    opts = {"delay_s": 5.0, "retry_min_s": 10.0, "retry_max_s": 40.0, "max_attempts": 4, "max_batches": 100}
    return ResendScheduler(**{**opts, **kw})


def test_scheduler_waits_for_the_delay_then_backs_off_and_gives_up() -> None:
    s = _sched()
    young = [OpenGap("gw", 5, 9, age_s=2.0)]
    assert s.due(young, now=0.0) == [], "a gap younger than the delay may be out-of-order commits"
    old = [OpenGap("gw", 5, 9, age_s=6.0)]
    (r,) = s.due(old, now=0.0)
    assert (r.gateway, r.from_seq, r.to_seq, r.attempt) == ("gw", 5, 9, 1)
    assert s.due(old, now=9.9) == []
    assert [x.attempt for x in s.due(old, now=10.0)] == [2]
    assert s.due(old, now=29.9) == [], "doubled: 20 s"
    assert [x.attempt for x in s.due(old, now=30.0)] == [3]
    assert [x.attempt for x in s.due(old, now=70.0)] == [4]  # 40 s
    assert s.due(old, now=200.0) == [] and s.gave_up == 1, "bounded attempts"
    assert s.due(old, now=1000.0) == [] and s.gave_up == 1, "given up once"
    assert s.requests == 4


def test_scheduler_chunks_large_gaps_forgets_filled_ones_and_keeps_backoff_on_split() -> None:
    s = _sched(max_batches=100)
    (r,) = s.due([OpenGap("gw", 0, 999, 60.0), OpenGap("other", 3, 3, 1.0)], now=0.0)
    assert (r.from_seq, r.to_seq) == (0, 99), "one request asks for at most max_batches seqs"
    # the first part arrived: the rest keeps the gap's backoff instead of asking again at once
    assert s.due([OpenGap("gw", 100, 999, 61.0)], now=1.0) == []
    (r,) = s.due([OpenGap("gw", 100, 999, 71.0)], now=10.0)
    assert (r.from_seq, r.to_seq, r.attempt) == (100, 199, 2)
    # filled: forgotten; a new gap of the same gateway starts afresh
    assert s.due([], now=11.0) == []
    (r,) = s.due([OpenGap("gw", 2000, 2001, 30.0)], now=12.0)
    assert (r.from_seq, r.to_seq, r.attempt) == (2000, 2001, 1)


def test_resend_payload_is_the_documented_request() -> None:
    assert orjson.loads(resend_payload("gw-1", 4, 7, now_ms=123)) == {
        "v": 1,
        "gateway": "gw-1",
        "from_seq": 4,
        "to_seq": 7,
        "requested_at": 123,
    }


class _Requests:
    """Subscribes to the park's resend topics (as the gateways do) and keeps the requests."""

    def __init__(self, port: int, park: str) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        c = self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(f"pp/v1/{park}/+/+/resend", qos=1)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._msg
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self.ready.wait(5)

    def _msg(self, c: Any, u: Any, m: Any) -> None:
        with self._lock:
            self.got.append((m.topic, orjson.loads(m.payload)))

    def of(self, gw: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for _, d in self.got if d["gateway"] == gw]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_open_gap_is_requested_and_closed_by_resent_and_evicted_batches(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    ing = start_ingest(
        broker.url,
        resend_delay_s=1.0,
        resend_retry_min_s=1.0,
        resend_retry_max_s=2.0,
        resend_max_attempts=3,
        resend_interval_s=0.2,
    )
    req = _Requests(broker.port, park.pf.park.id)
    try:
        g = park.gateways[0]
        t0 = int(time.time() * 1000) - 3_600_000
        payloads = [g.batch(t0 + i * 10_000, 30) for i in range(6)]
        t_sent = time.monotonic()
        send(broker.url, [(g.topic, payloads[i]) for i in (0, 1, 4)])
        wait_for(
            lambda: q1(db, "SELECT max_seq FROM gateway_seq WHERE gateway_id = %s", g.gateway) == 4,
            what="seq 4",
        )
        first = wait_for(lambda: req.of(g.gateway), what="a resend request")
        assert time.monotonic() - t_sent >= 0.9, "not before resend_delay_s"
        topic = next(t for t, d in req.got if d["gateway"] == g.gateway)
        assert topic == g.topic.rsplit("/", 1)[0] + "/resend"
        assert (first[0]["v"], first[0]["from_seq"], first[0]["to_seq"]) == (1, 2, 3)
        assert isinstance(first[0]["requested_at"], int)
        # the gateway answers: seq 2 re-sent as it was, seq 3 evicted → empty batch with the gap
        evicted_gap = {
            "start": "2026-11-25T07:00:00.000Z",
            "end": "2026-11-25T07:00:10.000Z",
            "count": 30,
            "reason": "batch evicted from the gateway spool before it reached the platform",
        }
        empty = orjson.dumps(
            {
                "v": 1,
                "gateway": g.gateway,
                "seq": 3,
                "sent_at": int(time.time() * 1000),
                "readings": [],
                "gaps": [evicted_gap],
            }
        )
        send(broker.url, [(g.topic, payloads[2]), (g.topic, empty)])
        wait_for(
            lambda: q1(db, "SELECT contiguous_seq FROM gateway_seq WHERE gateway_id = %s", g.gateway) == 4,
            what="gap closed",
        )
        assert q1(db, "SELECT count(*) FROM seq_gaps WHERE filled_at IS NULL") == 0
        assert q1(db, "SELECT count || ' ' || reason FROM data_gaps WHERE gateway_id = %s", g.gateway) == (
            "30 batch evicted from the gateway spool before it reached the platform"
        )
        n_answered = len(req.of(g.gateway))
        # an unanswered gap: asked again with backoff, at most resend_max_attempts times
        send(broker.url, [(g.topic, g.batch(t0 + 90_000, 30)) for _ in range(2)])  # seq 6, 7; seq 5 missing
        wait_for(
            lambda: len([d for d in req.of(g.gateway) if d["from_seq"] == 5]) >= 3,
            timeout=15,
            what="three requests for seq 5",
        )
        wait_for(
            lambda: ing.metrics().get("pp_ingest_resend_gave_up_total", 0) == 1, timeout=10, what="gave up"
        )
        time.sleep(1.5)
        asks = [d for d in req.of(g.gateway) if d["from_seq"] == 5]
        assert len(asks) == 3 and all(d["to_seq"] == 5 for d in asks)
        assert ing.metrics()["pp_ingest_resend_requests_total"] == n_answered + 3
        assert q1(db, "SELECT from_seq || '-' || to_seq FROM seq_gaps WHERE filled_at IS NULL") == "5-5"
        # tail: the status says seqs up to 9 were acknowledged by the broker; 8 and 9 never came
        status = orjson.dumps(
            {
                "v": 1,
                "gateway": g.gateway,
                "state": "online",
                "ts": "2026-11-25T08:00:00Z",
                "version": "t",
                "devices": [],
                "spool_depth": 0,
                "last_seq": 9,
            }
        )
        send(broker.url, [(g.topic.rsplit("/", 1)[0] + "/status", status)])
        tail = wait_for(lambda: [d for d in req.of(g.gateway) if d["from_seq"] == 8], what="tail request")
        assert tail[0]["to_seq"] == 9
        send(broker.url, [(g.topic, g.batch(t0 + 100_000, 30)) for _ in range(2)])  # seq 8, 9 re-sent
        wait_for(
            lambda: q1(db, "SELECT max_seq FROM gateway_seq WHERE gateway_id = %s", g.gateway) == 9,
            what="seq 9",
        )
    finally:
        req.close()


def test_two_ingest_processes_ask_once(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    """Only the holder of the advisory lock asks: two processes, one attempt each allowed → one request."""
    opts = {"resend_delay_s": 0.5, "resend_max_attempts": 1, "resend_interval_s": 0.2}
    a = start_ingest(broker.url, client="a", **opts)
    b = start_ingest(broker.url, client="b", **opts)
    req = _Requests(broker.port, park.pf.park.id)
    try:
        g = park.gateways[1]
        t0 = int(time.time() * 1000) - 3_600_000
        payloads = [g.batch(t0 + i * 10_000, 30) for i in range(4)]
        send(broker.url, [(g.topic, payloads[i]) for i in (0, 3)])
        wait_for(
            lambda: q1(db, "SELECT max_seq FROM gateway_seq WHERE gateway_id = %s", g.gateway) == 3,
            what="seq 3",
        )
        wait_for(lambda: req.of(g.gateway), what="a resend request")
        time.sleep(2.0)
        assert [(d["from_seq"], d["to_seq"]) for d in req.of(g.gateway)] == [(1, 2)]
        total = sum(p.metrics().get("pp_ingest_resend_requests_total", 0) for p in (a, b))
        assert total == 1
    finally:
        req.close()
