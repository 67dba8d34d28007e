"""The HJ 212 receiver over real TCP, with the simulated data logger (simulators/hj212.py) and raw
sockets: several packets per connection, split packets, a bad CRC dead-lettered with the connection
kept, unknown MN and wrong PW refused, garbage bounded, the reply only after the spool took the
readings, a resend, gap detection and the history request.

The gateway's spool is replaced here by a recorder of `emit` and `flush` (what the receiver sees of
it); tests/gateway/test_gw_hj212_e2e.py runs the real gateway, broker, ingest and database.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.counters import CounterTracker
from gateway.sources._plugin import SourceContext
from gateway.sources.hj212 import Hj212Listen, Hj212Receiver, build_packet
from simulators.hj212 import SHANGHAI, Hj212DataLogger

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI)


class Recorder:
    """Stands in for the gateway: readings emitted, and a spool flush that can be made to fail."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.timeline: list[tuple[str, Any]] = []
        self.flush_ok = True
        self.lock = threading.Lock()

    def emit(self, rows: list[list[Any]]) -> None:
        with self.lock:
            self.rows.extend(rows)
            self.timeline.append(("emit", rows[0][2]))

    def flush(self) -> bool:
        with self.lock:
            self.timeline.append(("flush", self.flush_ok))
        return self.flush_ok

    def on_packet(self, head: dict[str, str], cp: dict[str, str]) -> None:
        with self.lock:
            self.timeline.append(("ack" if head.get("CN") == "9014" else head.get("CN", "?"), head.get("QN")))


class Running:
    """The receiver on its own event loop in a thread, listening on a free port."""

    def __init__(self, cfg: Hj212Listen, rec: Recorder, dead: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.rx = Hj212Receiver(
            cfg,
            SourceContext(emit=rec.emit, counters=CounterTracker(), flush=rec.flush),
            dead_letters=dead,
        )
        self.thread = threading.Thread(target=self._main, name="hj212-rx", daemon=True)
        self._task: asyncio.Task[None] | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(self.rx.run())
        try:
            self.loop.run_until_complete(self._task)
        except (asyncio.CancelledError, Exception):
            pass
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 5
        while self.rx.port is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.rx.port
        return self

    def __exit__(self, *exc: object) -> None:
        def cancel() -> None:
            if self._task is not None:
                self._task.cancel()

        self.loop.call_soon_threadsafe(cancel)
        self.thread.join(10)


def _cfg(**extra: Any) -> Hj212Listen:
    doc: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "ack_window_ms": 10,
        "loggers": [
            {"mn": "MN17", "password": "123456", "device": "cems-17", "edition": "2017"},
            {"mn": "MN25", "password": "s3cret", "device": "cems-25", "edition": "2025"},
        ],
    }
    doc.update(extra)
    return Hj212Listen.model_validate(doc)


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[tuple[Running, Recorder]]:
    rec = Recorder()
    with Running(_cfg(), rec, tmp_path / "dead.jsonl") as r:
        yield r, rec


def _until(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


def _dead(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _logger(
    r: Running, mn: str = "MN17", pw: str = "123456", edition: str = "2017", **kw: Any
) -> Hj212DataLogger:
    assert r.rx.port is not None
    return Hj212DataLogger(
        "127.0.0.1", r.rx.port, mn=mn, password=pw, edition=edition, reply_timeout_s=2.0, **kw
    )


def test_minutes_of_both_editions_are_acknowledged_after_the_spool_took_them(rx: Any) -> None:
    r, rec = rx
    with _logger(r) as a, _logger(r, "MN25", "s3cret", "2025") as b:
        a.on_packet = rec.on_packet
        for i in range(3):
            assert a.send_minute(T0 + timedelta(minutes=i))
            assert b.send_minute(T0 + timedelta(minutes=i))
    devices = {row[0] for row in rec.rows}
    assert devices == {"cems-17", "cems-25"}
    flags = [row for row in rec.rows if row[1] == "cems_flag"]
    assert len(flags) == 6 and all(f[3] == 0.0 for f in flags)
    nox = [row for row in rec.rows if row[0] == "cems-17" and row[1] == "nox_mg_m3"]
    assert [n[2] for n in nox] == [int((T0 + timedelta(minutes=i)).timestamp() * 1000) for i in range(3)]
    # every acknowledgement the 2017 logger got came after a successful flush that followed its emit
    events = [e for e in rec.timeline if e[0] in ("emit", "flush", "ack")]
    for i, (kind, _) in enumerate(events):
        if kind == "ack":
            before = events[:i]
            last_emit = max(j for j, e in enumerate(before) if e[0] == "emit")
            assert any(e == ("flush", True) for e in before[last_emit:]), events
    st = {s.device: s for s in r.rx.stats()}
    assert st["cems-17"].polls == 3 and st["cems-17"].ok == 3 and st["cems-17"].decode_errors == 0


def test_no_reply_when_the_spool_cannot_take_the_readings_and_the_resend_is_kept(rx: Any) -> None:
    r, rec = rx
    rec.flush_ok = False
    with _logger(r, retries=1) as a:
        a.reply_timeout_s = 0.5
        assert not a.send_minute(T0), "no acknowledgement while the spool refuses"
        assert a.stats["sent"] == 2 and a.stats["unacked"] == 1
        rec.flush_ok = True
        assert a.send_minute(T0)
    assert r.rx.counts["replies_withheld_spool"] == 2
    # the same minute emitted three times: ingest keeps one reading per device, metric and time
    assert len({(x[1], x[2]) for x in rec.rows}) == len(rec.rows) // 3


def test_several_packets_in_one_write_and_one_packet_split_over_writes(rx: Any) -> None:
    r, rec = rx
    segs = [
        f"QN=2026030110{i:02d}00000;ST=31;CN=2051;PW=123456;MN=MN17;Flag=5;"
        f"CP=&&DataTime=202603011{i:03d}00;a21002-Avg={i}.5,a21002-Flag=N&&"
        for i in range(3)
    ]
    pkts = [build_packet(s) for s in segs]
    with socket.create_connection(("127.0.0.1", r.rx.port), timeout=5) as s:
        s.sendall(pkts[0] + pkts[1])
        half = len(pkts[2]) // 2
        s.sendall(pkts[2][:half])
        time.sleep(0.2)
        s.sendall(pkts[2][half:])
        got = b""
        while got.count(b"\r\n") < 3:
            got += s.recv(4096)
    replies = got.split(b"\r\n")[:3]
    assert all(b"CN=9014" in x and b"ST=91" in x and b"Flag=4" in x for x in replies)
    assert [x.split(b";")[0][2 + 4 :] for x in replies] == [
        f"QN=2026030110{i:02d}00000".encode() for i in range(3)
    ]
    assert [x[3] for x in rec.rows if x[1] == "nox_mg_m3"] == [0.5, 1.5, 2.5]


def test_bad_crc_is_dead_lettered_and_the_connection_stays_up(rx: Any, tmp_path: Path) -> None:
    r, rec = rx
    with _logger(r, retries=2) as a:
        a.reply_timeout_s = 0.5
        a.corrupt_next()
        assert a.send_minute(T0), (
            "the resend after the corrupted packet is acknowledged on the same connection"
        )
        assert a.stats["corrupted"] == 1 and a.stats["resent"] == 1
    dead = _dead(tmp_path / "dead.jsonl")
    assert [d["kind"] for d in dead] == ["crc"]
    assert "CRC: packet says" in dead[0]["reason"] and dead[0]["mn"] == "MN17"
    assert "PW=***" in dead[0]["raw"] and "123456" not in dead[0]["raw"]
    assert r.rx.counts["connections"] == 1 and r.rx.counts["crc"] == 1
    assert len([x for x in rec.rows if x[1] == "cems_flag"]) == 1


def test_unknown_mn_and_wrong_password_are_refused_and_stored_nowhere(
    rx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r, rec = rx
    with _logger(r, "NOBODY", "123456", retries=0) as a, _logger(r, "MN17", "guess99", retries=0) as b:
        a.reply_timeout_s = b.reply_timeout_s = 0.4
        assert not a.send_minute(T0)
        assert not b.send_minute(T0)
    assert rec.rows == []
    kinds = sorted(d["kind"] for d in _dead(tmp_path / "dead.jsonl"))
    assert kinds == ["bad_password", "unknown_mn"]
    assert "MN 'NOBODY'" in caplog.text and "guess99" not in caplog.text
    assert "guess99" not in (tmp_path / "dead.jsonl").read_text()
    st = {s.device: s for s in r.rx.stats()}
    assert st["cems-17"].decode_errors == 1 and st["cems-17"].last_error == "wrong PW"
    assert r.rx.status()["dead_letters"]["by_kind"] == {"unknown_mn": 1, "bad_password": 1}


def test_garbage_does_not_pile_up_and_a_packet_after_it_is_read(rx: Any) -> None:
    r, rec = rx
    good = build_packet(
        "QN=1;ST=31;CN=2051;PW=123456;MN=MN17;Flag=5;CP=&&DataTime=20260301100000;a21002-Avg=7,a21002-Flag=N&&"
    )
    with socket.create_connection(("127.0.0.1", r.rx.port), timeout=5) as s:
        for _ in range(50):
            s.sendall(b"\x00garbage-without-a-header" * 400)
        s.sendall(b"##12ab" + good)
        got = b""
        while b"\r\n" not in got:
            got += s.recv(4096)
    assert b"CN=9014" in got
    assert [x[3] for x in rec.rows if x[1] == "nox_mg_m3"] == [7.0]
    assert r.rx.counts["junk"] >= 2
    assert r.rx.counts["bytes_in"] >= 50 * 400 * 25


def test_hourly_data_acknowledged_not_stored_and_a_resend_within_the_window(rx: Any) -> None:
    r, rec = rx
    with _logger(r) as a:
        assert a.send_hour(T0)
    assert rec.rows == []
    assert r.rx.status()["loggers"][0]["received_not_stored"] == {"2061": 1}


def test_missing_minutes_are_counted_and_asked_for_and_come_back(rx: Any) -> None:
    r, rec = rx
    with _logger(r) as a:
        a.send_minute(T0)
        a.skip_minute(T0 + timedelta(minutes=1))
        a.skip_minute(T0 + timedelta(minutes=2))
        a.send_minute(T0 + timedelta(minutes=3))
        assert _until(lambda: r.rx.counts["history_done"] == 1)
        assert a.stats["history_requests"] == 1 and a.stats["history_minutes"] == 2
    times = sorted({x[2] for x in rec.rows if x[1] == "nox_mg_m3"})
    assert times == [int((T0 + timedelta(minutes=i)).timestamp() * 1000) for i in range(4)]
    lg = r.rx.status()["loggers"][0]
    assert lg["missing_minutes"] == 2 and lg["history_requests"] == 1 and lg["recovered_minutes"] == 2
    st = {s.device: s for s in r.rx.stats()}
    assert st["cems-17"].missed_slots == 2


def test_a_flag_other_than_n_reaches_cems_flag_and_quality(rx: Any) -> None:
    r, rec = rx
    with _logger(r, flags={"a21002": "C", "a21026": "M"}) as a:
        assert a.send_minute(T0)
    flag = [x for x in rec.rows if x[1] == "cems_flag"]
    assert flag[0][3] == 2.0  # M (maintenance) is more severe than C (calibration)
    nox = next(x for x in rec.rows if x[1] == "nox_mg_m3")
    assert nox[4] == 3


def test_check_maps_the_first_packet_and_never_acknowledges(tmp_path: Path) -> None:
    from gateway.config import parse_config
    from gateway.sources.hj212 import _check
    from parkpulse.services import free_port

    port = free_port()
    cfg = parse_config(
        {
            "gateway": {"park": "p", "firm": "f", "id": "g"},
            "uplink": {"url": "mqtt://127.0.0.1:1883"},
            "spool": {"path": str(tmp_path / "s.db")},
            "hj212": {
                "listen": f"127.0.0.1:{port}",
                "loggers": [
                    {"mn": "MN17", "password": "123456", "device": "cems-17"},
                    {"mn": "MN99", "password": "x", "device": "cems-99"},
                ],
            },
        }
    )
    acks: list[str] = []

    def talk() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                lg = Hj212DataLogger(
                    "127.0.0.1", port, mn="MN17", password="123456", reply_timeout_s=0.3, retries=0
                )
                lg.connect()
                break
            except Exception:
                time.sleep(0.05)
        else:
            return
        lg.on_packet = lambda h, c: acks.append(h.get("CN", ""))
        lg.send_minute(T0)
        lg.close()

    t = threading.Thread(target=talk, name="hj212-check-logger")
    t.start()
    results = asyncio.run(_check.check(cfg, 2.0))
    t.join(10)
    by = {r.device: r for r in results}
    assert by["cems-17"].error is None and ("nox_mg_m3" in {row[0] for row in by["cems-17"].rows})
    assert by["cems-99"].error is not None and "no data packet from MN MN99 within 2 s" in by["cems-99"].error
    assert acks == [], "a check keeps nothing, so it acknowledges nothing"
    assert not (tmp_path / "s.db.hj212-dead.jsonl").exists()
