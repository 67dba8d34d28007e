"""Helpers to run the engine beside other code and to receive its webhooks.

- `EngineThread`: the AlertEngine on its own event loop in a background thread (tests, demos).
- `WebhookReceiver`: a real local HTTP server that verifies the HMAC signature, de-duplicates by
  idempotency key and can be taken down and brought back on the same port (what a receiver
  integrating ParkPulse does).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson

from alerts._engine import AlertEngine
from alerts._ruleset import RuleSet
from alerts._settings import AlertSettings
from alerts._webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

__all__ = ["EngineThread", "Received", "WebhookReceiver", "sample_park"]


class EngineThread:
    """Run an AlertEngine in a thread; `start()` returns once it is subscribed to MQTT."""

    def __init__(self, settings: AlertSettings, rules: RuleSet | None = None) -> None:
        self.settings = settings
        self.rules = rules
        self.engine: AlertEngine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._up = threading.Event()

    def start(self, timeout: float = 20.0) -> EngineThread:
        self._thread = threading.Thread(target=self._run, name="alerts-engine-thread", daemon=True)
        self._thread.start()
        if not self._up.wait(timeout):
            self.stop()
            raise TimeoutError("alert engine did not come up")
        if self._error:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.engine = AlertEngine(self.settings, self.rules)
            try:
                async with self.engine:
                    await asyncio.wait_for(self.engine.ready.wait(), 15)
                    self._up.set()
                    await self.engine._stop.wait()
            except BaseException as exc:
                self._error = exc
                self._up.set()
                raise

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()/stop()
            self._error = self._error or exc

    def call(self, coro_fn: Any, timeout: float = 30.0) -> Any:
        """Run `coro_fn(engine)` on the engine's loop and return its result."""
        assert self.loop is not None and self.engine is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(self.engine), self.loop).result(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        if self.loop is not None and self.engine is not None:
            self.loop.call_soon_threadsafe(self.engine.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> EngineThread:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Received:
    at: float
    key: str
    signature_ok: bool
    body: dict[str, Any]
    headers: dict[str, str]


class WebhookReceiver:
    """A local HTTP endpoint for webhooks. `.received` holds every accepted POST in order."""

    def __init__(self, secret: str, port: int = 0, status: int = 200) -> None:
        self.secret = secret
        self.port = port
        self.status = status
        self.received: list[Received] = []
        self.keys: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify_signature(
                    recv.secret, self.headers.get(TIMESTAMP_HEADER), body, self.headers.get(SIGNATURE_HEADER)
                )
                key = self.headers.get("Idempotency-Key") or ""
                status = recv.status if ok else 401
                if 200 <= status < 300:
                    with recv._lock:
                        recv.keys[key] = recv.keys.get(key, 0) + 1
                        recv.received.append(
                            Received(time.time(), key, ok, orjson.loads(body), dict(self.headers))
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wait_for(self, n: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= n:
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def sample_park(park: str, gateways: int = 1) -> Any:
    """A small park for tests, demos and the benchmark: per gateway one energy meter (rated
    50 kW, polled every 2 s) and one gas-boiler CEMS (polled every 60 s)."""
    from parkpulse.registry import Device, Firm, Gateway, ParkFile, ParkInfo

    firm = f"{park}-f1"
    gws = [
        Gateway(
            id=f"{park}-g{i}",
            devices=[
                Device(
                    id="meter-1",
                    kind="meter",
                    meter_level=1,
                    carrier="electricity",
                    poll_interval_s=2.0,
                    rated_power_kw=50.0,
                ),
                Device(
                    id="cems-1",
                    kind="cems",
                    source_type="gas_boiler",
                    fuel="gas",
                    age_class="new",
                    poll_interval_s=60.0,
                ),
            ],
        )
        for i in range(1, gateways + 1)
    ]
    return ParkFile(
        park=ParkInfo(id=park, name=f"测试园区 {park}", name_en=f"test park {park}"),
        firms=[Firm(id=firm, name="测试企业", name_en="test firm", land_mu=100, gateways=gws)],
    )
