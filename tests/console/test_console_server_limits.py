"""Read deadlines of `parkpulse console serve` (issue 9: 350 slowloris connections were never closed).

A real server (uvicorn with console._server's guarded h11 protocol) with short deadlines: raw
sockets that never finish their headers, or announce a body and stall, are closed in time while
normal requests are served, and the server's file descriptors go back to where they were."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_testkit import PASSWORDS, LiveServer, World, serve_console

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
MARGIN_S = 2.5


@pytest.fixture
def strict_server(world: World, tmp_path: Path) -> Iterator[LiveServer]:
    with serve_console(
        world,
        tmp_path,
        PARKPULSE_CONSOLE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        PARKPULSE_CONSOLE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    ) as server:
        yield server


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _open(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setblocking(False)
    return s


def _wait_closed(
    socks: list[socket.socket],
    deadline_s: float,
    trickle: set[socket.socket] | None = None,
    during: list[float] | None = None,
    server: LiveServer | None = None,
) -> dict[socket.socket, float]:
    """Seconds until each socket is closed by the server (reads 408 or EOF); keeps trickling a header
    line into `trickle` sockets every 0.5 s, and times a normal request in `during` each second."""
    start = time.monotonic()
    closed: dict[socket.socket, float] = {}
    got: dict[socket.socket, bytes] = {s: b"" for s in socks}
    next_trickle = next_probe = start
    while len(closed) < len(socks) and time.monotonic() - start < deadline_s:
        now = time.monotonic()
        if trickle and now >= next_trickle:
            for s in trickle - closed.keys():
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    closed.setdefault(s, now - start)
            next_trickle = now + 0.5
        if during is not None and server is not None and now >= next_probe:
            t0 = time.monotonic()
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
            during.append(time.monotonic() - t0)
            next_probe = time.monotonic() + 1.0
        open_socks = [s for s in socks if s not in closed]
        readable, _, _ = select.select(open_socks, [], [], 0.1)
        for s in readable:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            got[s] += data
            if not data:
                closed[s] = time.monotonic() - start
    for s in closed:
        if got[s]:
            assert got[s].startswith(b"HTTP/1.1 408 "), got[s][:100]
    return closed


def test_slowloris_connections_are_closed_and_requests_still_served(strict_server: LiveServer) -> None:
    pid = strict_server.proc.pid
    assert httpx.get(f"{strict_server.url}/healthz", timeout=5).status_code == 200
    baseline = _fds(pid)
    trickling = [_open(strict_server) for _ in range(50)]
    for s in trickling:
        s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
    silent = [_open(strict_server) for _ in range(10)]  # connect and send nothing at all
    socks = trickling + silent
    time.sleep(0.3)
    peak = _fds(pid)
    during: list[float] = []
    try:
        closed = _wait_closed(
            socks,
            HEADER_TIMEOUT_S + MARGIN_S + 3,
            trickle=set(trickling),
            during=during,
            server=strict_server,
        )
    finally:
        for s in socks:
            s.close()
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} of {len(socks)} connections still open"
    slowest = max(closed.values())
    assert slowest <= HEADER_TIMEOUT_S + MARGIN_S, f"slowest close after {slowest:.1f} s"
    assert during and max(during) < 1.0, f"normal requests meanwhile took {during}"
    assert peak >= baseline + 50, (baseline, peak)  # the sockets were really held by the server
    time.sleep(0.5)
    assert _fds(pid) <= baseline + 2, (baseline, peak, _fds(pid))
    print(
        f"fds {baseline} -> {peak} -> {_fds(pid)}; slowest close {slowest:.2f} s; "
        f"healthz meanwhile max {max(during) * 1000:.0f} ms"
    )
    assert "closing connection from" in strict_server.log_text()


def test_a_stalled_body_is_cut_off(strict_server: LiveServer) -> None:
    s = _open(strict_server)
    s.send(
        b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"user": '
    )
    try:
        closed = _wait_closed([s], BODY_TIMEOUT_S + MARGIN_S + 3)
    finally:
        s.close()
    assert closed, "a request whose body stalls is never closed"
    assert BODY_TIMEOUT_S - 0.5 <= closed[s] <= BODY_TIMEOUT_S + MARGIN_S, closed[s]
    # a complete request with a body still works, and the cut-off left no traceback behind
    r = httpx.post(
        f"{strict_server.url}/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]}
    )
    assert r.status_code == 200
    log = strict_server.log_text()
    assert "request body not received within 3 s" in log and "Traceback" not in log, log[-3000:]


def test_long_responses_are_not_cut_by_the_read_deadlines(strict_server: LiveServer) -> None:
    """The live feed stays open well past the header deadline (it only limits reading a request)."""
    c = httpx.Client(base_url=strict_server.url, timeout=httpx.Timeout(10.0))
    assert (
        c.post("/api/v1/session", json={"user": "insp1", "password": PASSWORDS["insp1"]}).status_code == 200
    )
    keepalives = 0
    start = time.monotonic()
    with c.stream("GET", "/alerts/stream") as stream:
        for line in stream.iter_lines():
            keepalives += line.startswith(": keepalive")
            if time.monotonic() - start > HEADER_TIMEOUT_S + BODY_TIMEOUT_S:
                break
    c.close()
    assert keepalives >= 2 and time.monotonic() - start > HEADER_TIMEOUT_S + BODY_TIMEOUT_S
