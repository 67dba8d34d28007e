"""A TCP proxy on the loopback whose link can be cut and restored: how the demo takes a gateway's
uplink away and how tests take the database or the broker away from a service.

    proxy = TcpProxy("127.0.0.1", 5432).start()    # point the client at 127.0.0.1:{proxy.port}
    proxy.cut()                # open connections are severed, new ones reset
    proxy.cut(drop=False)      # only new connections are reset: a gate, open ones keep flowing
    proxy.restore()            # new connections are proxied again
    proxy.close()

A connection the proxy refuses is accepted and reset at once, so the client fails fast, as with a
refused port, while the proxy keeps its port. One thread accepts; each connection has two threads,
one per direction.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

__all__ = ["TcpProxy"]

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    sock.close()


class _Link:
    """One proxied connection: the client's socket and the one to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.socks = (client, upstream)
        self.threads: list[threading.Thread] = []
        self._pipes_left = 2
        self._lock = threading.Lock()

    def sever(self) -> None:
        """Shut both sockets down: both pipes wake up and end, the peers see the connection end."""
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def pipe_ended(self) -> bool:
        """True for the second pipe to end: it closes the sockets."""
        with self._lock:
            self._pipes_left -= 1
            return self._pipes_left == 0


class TcpProxy:
    """Forwards every connection to 127.0.0.1:`port` on to (`target_host`, `target_port`)."""

    def __init__(self, target_host: str, target_port: int, *, connect_timeout: float = 5.0) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        """Connections proxied to the target since start()."""
        self._admit = threading.Event()
        self._admit.set()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._thread = threading.Thread(target=self._accept, name=f"tcp-proxy-{self.port}", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def up(self) -> bool:
        """True while new connections are proxied (not cut)."""
        return self._admit.is_set()

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return len(self._links)

    def cut(self, *, drop: bool = True) -> None:
        """Reset new connections until restore(); with `drop`, also sever the open ones (closed
        when this returns)."""
        with self._lock:
            self._admit.clear()
            links = list(self._links) if drop else []
        for link in links:
            link.sever()
        for t in (t for link in links for t in link.threads):
            t.join(timeout=2)

    def restore(self) -> None:
        self._admit.set()

    def close(self) -> None:
        """Stop listening and sever every connection."""
        self._stopped.set()
        self.cut()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._admit.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            self._link(client, upstream)

    def _link(self, client: socket.socket, upstream: socket.socket) -> None:
        """Start piping, unless cut() came while the target was being reached."""
        with self._lock:  # cut() takes its snapshot under the same lock: no link slips past it
            if not self._admit.is_set():
                _reset(client)
                upstream.close()
                return
            link = _Link(client, upstream)
            self._links.add(link)
            self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(link, src, dst), daemon=True)
                link.threads.append(t)
                t.start()

    def _pipe(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            link.sever()
            if link.pipe_ended():
                for s in link.socks:
                    s.close()
                with self._lock:
                    self._links.discard(link)
