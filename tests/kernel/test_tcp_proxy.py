"""The TCP proxy the demo and the tests cut links with: it forwards both ways, cut() severs and
refuses, cut(drop=False) only refuses, restore() admits again, close() stops listening."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from parkpulse.tcp_proxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server on the loopback; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(server.getsockname()[1])
    stop.set()
    t.join(2)
    server.close()


@pytest.fixture
def proxy(echo: int) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo) as p:
        yield p


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def _echoed(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _closed_by_peer(s: socket.socket) -> bool:
    """The connection ends (EOF or reset) instead of echoing."""
    try:
        s.sendall(b"ping")
        return s.recv(16) == b""
    except OSError:
        return True


def _refused(port: int) -> bool:
    """A new connection is reset: during connect() already, or at its first exchange."""
    try:
        s = _connect(port)
    except ConnectionResetError:
        return True
    with s:
        return _closed_by_peer(s)


def test_forwards_both_ways_and_counts_connections(proxy: TcpProxy) -> None:
    payload = os.urandom(1 << 20)
    with _connect(proxy.port) as a, _connect(proxy.port) as b:
        assert _echoed(a, payload) == payload
        assert _echoed(b, b"second") == b"second"
        assert proxy.connections == 2
        assert proxy.accepted == 2
    deadline = time.monotonic() + 5
    while proxy.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.connections == 0, "a connection the client closed is forgotten"
    assert proxy.accepted == 2


def test_cut_severs_open_connections_and_refuses_new_ones_until_restore(proxy: TcpProxy) -> None:
    with _connect(proxy.port) as s:
        assert _echoed(s, b"before") == b"before"
        proxy.cut()
        assert not proxy.up
        assert _closed_by_peer(s)
    assert proxy.connections == 0
    assert _refused(proxy.port)  # the port stays open: the client is reset at once
    assert proxy.accepted == 1
    proxy.restore()
    assert proxy.up
    with _connect(proxy.port) as s:
        assert _echoed(s, b"after") == b"after"
    assert proxy.accepted == 2


def test_cut_without_drop_is_a_gate_open_connections_keep_flowing(proxy: TcpProxy) -> None:
    with _connect(proxy.port) as s:
        assert _echoed(s, b"one") == b"one"
        proxy.cut(drop=False)
        assert _refused(proxy.port)
        assert _echoed(s, b"two") == b"two"
        assert proxy.connections == 1
        proxy.restore()
        with _connect(proxy.port) as t:
            assert _echoed(t, b"three") == b"three"


def test_unreachable_target_resets_the_client_and_the_proxy_lives_on(echo: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])  # nothing listens here once the socket is closed
    with TcpProxy("127.0.0.1", dead, connect_timeout=1) as p:
        assert _refused(p.port)
        assert p.accepted == 0
        p.target = ("127.0.0.1", echo)
        with _connect(p.port) as c:
            assert _echoed(c, b"up") == b"up"


def test_close_stops_listening_and_severs(echo: int) -> None:
    p = TcpProxy("127.0.0.1", echo).start()
    s = _connect(p.port)
    assert _echoed(s, b"x") == b"x"
    p.close()
    assert _closed_by_peer(s)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
    assert p.connections == 0
