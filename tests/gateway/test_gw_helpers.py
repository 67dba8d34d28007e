"""Shared helpers for the gateway tests: a collecting MQTT subscriber, config builders, a gateway runner.

Imported by the other test_gw_* modules (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import GatewayConfig, parse_config
from gateway.runtime import Gateway

ROOT = Path(__file__).resolve().parents[2]


class Collector:
    """Subscribes to pp/v1/{park}/# and keeps every message (data batches and status)."""

    def __init__(self, url_port: int, park: str, persistent: bool = False) -> None:
        self.batches: list[dict[str, Any]] = []
        self.status: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"collector-{park}" if persistent else "",
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"pp/v1/{park}/#", qos=1)
        self.port = url_port
        self.client.reconnect_delay_set(1, 2)
        props = None
        if persistent:  # the broker keeps our session (and queues QoS 1 messages) while we are away
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", url_port, clean_start=not persistent, properties=props)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = json.loads(msg.payload)
        with self._lock:
            (self.status if msg.topic.endswith("/status") else self.batches).append(doc)

    def wait(self, pred: Any, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if pred(self):
                    return True
            time.sleep(0.05)
        return False

    def unique_batches(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {b["seq"]: b for b in self.batches}

    def readings(self) -> list[list[Any]]:
        return [
            r for b in sorted(self.unique_batches().values(), key=lambda b: b["seq"]) for r in b["readings"]
        ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def collector(port: int, park: str, persistent: bool = False) -> Iterator[Collector]:
    c = Collector(port, park, persistent)
    try:
        assert c.wait(lambda s: s.client.is_connected(), 10)
        time.sleep(0.2)
        yield c
    finally:
        c.close()


def make_config(
    *,
    park: str,
    broker_url: str,
    spool: Path,
    devices: list[dict[str, Any]],
    buses: list[dict[str, Any]],
    mqtt_sources: list[dict[str, Any]] | None = None,
    spool_extra: dict[str, Any] | None = None,
    **extra: Any,
) -> GatewayConfig:
    doc: dict[str, Any] = {
        "gateway": {"park": park, "firm": "f1", "id": "gw1"},
        "uplink": {"url": broker_url, "reconnect_min_s": 1, "reconnect_max_s": 2},
        "spool": {"path": str(spool)},
        "batching": {"max_readings": 500, "max_age_s": 0.5},
        "http": {"listen": "127.0.0.1:0"},
        "buses": buses,
        "devices": devices,
    }
    if mqtt_sources:
        doc["mqtt"] = mqtt_sources
    if spool_extra:
        doc["spool"].update(spool_extra)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k] = {**doc[k], **v}
        else:
            doc[k] = v
    return parse_config(doc, "test")


class RunningGateway:
    """A Gateway running in its own thread with its own event loop (so tests can block freely)."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.gw: Gateway | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="test-gateway", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def go() -> None:
            self.stop_event = asyncio.Event()
            self.gw = Gateway(self.cfg, shutdown=self.stop_event)
            self._ready.set()
            await self.gw.run()

        try:
            self.loop.run_until_complete(go())
        except BaseException as exc:
            self.error = exc
            self._ready.set()
        finally:
            self.loop.close()

    def __enter__(self) -> RunningGateway:
        self.thread.start()
        assert self._ready.wait(10)
        deadline = time.monotonic() + 10
        while (
            self.gw is not None and not self.gw.running and self.error is None and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        if self.thread.is_alive() and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        if self.error:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gateway_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )


@pytest.fixture
def sim_factory() -> Iterator[Any]:
    """Start ModbusSimulators; all are stopped at teardown."""
    from simulators.modbus import ModbusSimulator

    sims: list[Any] = []

    def make() -> Any:
        s = ModbusSimulator(host="127.0.0.1", port=0)
        sims.append(s)
        return s

    yield make
    for s in sims:
        with contextlib.suppress(Exception):
            s.stop()


def test_collector_sees_its_own_publish(broker: Any, unique_id: str) -> None:
    """The helper itself: a message published under the park reaches the collector."""
    with collector(broker.port, unique_id) as c:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(
            f"pp/v1/{unique_id}/f/g/data", json.dumps({"seq": 7, "readings": []}), qos=1
        ).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        assert c.wait(lambda s: len(s.batches) == 1, 5)
        assert c.unique_batches()[7]["readings"] == []
