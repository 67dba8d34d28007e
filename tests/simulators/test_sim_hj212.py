"""The simulated HJ 212 data logger against a plain TCP upper system written here: its packets'
framing and CRC (checked with the gateway's own table implementation, a different one), resends
without an acknowledgement, a corrupted packet, the history answer, and `parkpulse-sim hj212`."""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.sources.hj212 import Frame, Framer, build_packet, parse_segment
from simulators.errors import SimulatorError
from simulators.hj212 import SHANGHAI, Hj212DataLogger, crc16_bitwise

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI)


class Upper(socketserver.ThreadingTCPServer):
    """Records every frame; acknowledges data packets unless told not to; can send a request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.frames: list[tuple[bool, dict[str, str], list[list[tuple[str, str]]]]] = []
        self.ack = True
        self.conn: socket.socket | None = None
        self.lock = threading.Lock()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        srv: Upper = self.server  # type: ignore[assignment]
        srv.conn = self.request
        framer = Framer()
        while True:
            try:
                data = self.request.recv(4096)
            except OSError:
                return
            if not data:
                return
            for fr in framer.feed(data):
                assert isinstance(fr, Frame), fr
                p = parse_segment(fr.segment)
                with srv.lock:
                    srv.frames.append((fr.crc_ok, p.header, p.cp))
                if srv.ack and fr.crc_ok and p.reply_wanted and p.cn < 9000:
                    self.request.sendall(
                        build_packet(f"QN={p.qn};ST=91;CN=9014;PW={p.pw};MN={p.mn};Flag=4;CP=&&&&")
                    )


@pytest.fixture
def upper() -> Iterator[Upper]:
    srv = Upper()
    t = threading.Thread(target=srv.serve_forever, name="hj212-upper", daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


def test_minute_packet_has_every_code_a_good_crc_and_is_acknowledged(upper: Upper) -> None:
    with Hj212DataLogger("127.0.0.1", upper.server_address[1], mn="M1", password="pw1") as lg:
        assert lg.send_minute(T0)
    ((ok, head, cp),) = upper.frames
    assert ok and head["CN"] == "2051" and head["Flag"] == "5" and head["MN"] == "M1" and head["ST"] == "31"
    items = dict(kv for g in cp for kv in g)
    assert items["DataTime"] == "20260301100000"
    for code in ("a21026", "a21002", "a34013", "a19001", "a00000", "a01011", "a01012", "a01013", "a01014"):
        assert float(items[f"{code}-Avg"]) > 0 and items[f"{code}-Flag"] == "N"
    assert "a21002-ZsAvg" in items and "a19001-ZsAvg" not in items
    assert lg.stats["acked"] == 1 and lg.stats["resent"] == 0


def test_2025_flag_bits_and_the_crc_agrees_with_the_gateway(upper: Upper) -> None:
    with Hj212DataLogger("127.0.0.1", upper.server_address[1], mn="M2", password="p", edition="2025") as lg:
        lg.send_minute(T0)
        lg.send_hour(T0)
    assert [f[1]["Flag"] for f in upper.frames] == ["9", "9"]
    assert [f[1]["CN"] for f in upper.frames] == ["2051", "2061"]
    assert all(f[0] for f in upper.frames)
    assert (
        crc16_bitwise(
            b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
        )
        == 0x1C80
    )


def test_resends_without_acknowledgement_then_gives_up(upper: Upper) -> None:
    upper.ack = False
    with Hj212DataLogger(
        "127.0.0.1", upper.server_address[1], mn="M1", password="p", reply_timeout_s=0.2, retries=2
    ) as lg:
        assert not lg.send_minute(T0)
    assert len(upper.frames) == 3 and len({f[1]["QN"] for f in upper.frames}) == 1
    assert lg.stats == {**lg.stats, "sent": 3, "resent": 2, "unacked": 1, "acked": 0}


def test_corrupted_packet_fails_the_crc_and_the_resend_passes(upper: Upper) -> None:
    with Hj212DataLogger(
        "127.0.0.1", upper.server_address[1], mn="M1", password="p", reply_timeout_s=0.3
    ) as lg:
        lg.corrupt_next()
        assert lg.send_minute(T0)
    assert [f[0] for f in upper.frames] == [False, True]


def test_history_request_is_answered_with_the_kept_minutes(upper: Upper) -> None:
    with Hj212DataLogger("127.0.0.1", upper.server_address[1], mn="M1", password="p") as lg:
        lg.send_minute(T0)
        for i in (1, 2, 3):
            lg.skip_minute(T0 + timedelta(minutes=i))
        assert upper.conn is not None
        upper.conn.sendall(
            build_packet(
                "QN=20260301100500000;ST=31;CN=2051;PW=p;MN=M1;Flag=5;CP=&&BeginTime=20260301100100;EndTime=20260301100200&&"
            )
        )
        deadline = datetime.now().timestamp() + 5
        while len(upper.frames) < 5 and datetime.now().timestamp() < deadline:
            threading.Event().wait(0.02)
    cns = [f[1]["CN"] for f in upper.frames]
    assert cns == ["2051", "9011", "2051", "2051", "9012"]
    assert [dict(kv for g in f[2] for kv in g).get("DataTime") for f in upper.frames[2:4]] == [
        "20260301100100",
        "20260301100200",
    ]
    assert all(f[1]["QN"] == "20260301100500000" for f in upper.frames[1:])
    assert lg.stats["history_requests"] == 1 and lg.stats["history_minutes"] == 2


def test_unknown_edition_and_unreachable_host_are_clear_errors() -> None:
    with pytest.raises(SimulatorError, match="edition must be 2017 or 2025"):
        Hj212DataLogger("127.0.0.1", 1, mn="M", password="p", edition="2005")
    with pytest.raises(SimulatorError, match=r"cannot connect to 127\.0\.0\.1:1"):
        Hj212DataLogger("127.0.0.1", 1, mn="M", password="p").connect(timeout=1)


def test_cli_sends_backfill_and_gaps(upper: Upper) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulators.cli",
            "hj212",
            "--mn",
            "M9",
            "--password",
            "p",
            "--port",
            str(upper.server_address[1]),
            "--backfill",
            "6",
            "--gap-every",
            "3",
            "--corrupt-every",
            "5",
            "--interval",
            "0.05",
            "--duration",
            "1.5",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "connected to 127.0.0.1" in out.stdout and '"mn": "M9"' in out.stdout
    data = [f for f in upper.frames if f[1]["CN"] == "2051"]
    assert any(not f[0] for f in data), "a corrupted packet"
    times = sorted({dict(kv for g in f[2] for kv in g)["DataTime"] for f in data if f[0]})
    assert len(times) >= 4
