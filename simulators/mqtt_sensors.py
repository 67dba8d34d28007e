"""MQTT line sensor: a production line's machine state and part counters, published as JSON.

    sensor = LineSensor("line-1", broker_url="mqtt://127.0.0.1:1883", interval_s=1.0)
    sensor.start()          # a background thread publishes to factory/line-1/telemetry
    sensor.truth()          # {"machine_state": 2, "good_count": ..., ...} of the last message
    sensor.stop()

Message (QoS 1, not retained): {"ts": epoch_ms, "state": 0..4, "good": int, "reject": int,
"ideal_rate": float}. States: 0 off, 1 idle, 2 running, 3 fault, 4 planned stop. Counters are
cumulative and rise only while running (ideal rate × a performance factor, a share rejected).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.errors import SimulatorError

__all__ = ["LINE_FAULTS", "BrokerTarget", "LineSensor", "LineState", "parse_broker_url"]

OFF, IDLE, RUNNING, FAULT, PLANNED_STOP = 0, 1, 2, 3, 4
LINE_FAULTS: tuple[str | None, ...] = ("timeout", "clock_drift", None)

# mean durations (simulated seconds) and where a state goes next (weights)
_MEAN_S = {RUNNING: 1500.0, IDLE: 180.0, FAULT: 420.0, PLANNED_STOP: 900.0, OFF: 600.0}
_NEXT = {
    RUNNING: ((IDLE, 0.6), (FAULT, 0.25), (PLANNED_STOP, 0.15)),
    IDLE: ((RUNNING, 1.0),),
    FAULT: ((RUNNING, 0.85), (IDLE, 0.15)),
    PLANNED_STOP: ((RUNNING, 1.0),),
    OFF: ((RUNNING, 1.0),),
}


@dataclass(frozen=True)
class BrokerTarget:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_broker_url(url: str) -> BrokerTarget:
    """mqtt://[user:pass@]host[:port] or mqtts://… (8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise SimulatorError(f"broker URL must start with mqtt:// or mqtts:// (got {url!r})")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise SimulatorError(f"broker URL has no host (got {url!r})")
    return BrokerTarget(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class LineState:
    """The line's state machine and counters, advanced in simulated time (no I/O)."""

    def __init__(
        self,
        seed: int = 0,
        ideal_rate: float = 1200.0,
        reject_ratio: float = 0.02,
        start_state: int = RUNNING,
    ) -> None:
        if ideal_rate <= 0:
            raise SimulatorError(f"ideal_rate must be > 0 pcs/h (got {ideal_rate!r})")
        if not 0 <= reject_ratio < 1:
            raise SimulatorError(f"reject_ratio must be within 0..1 (got {reject_ratio!r})")
        self.rng = random.Random(seed)
        self.ideal_rate = float(ideal_rate)
        self.reject_ratio = float(reject_ratio)
        self.state = start_state
        self.remaining = self._duration(start_state)
        self.good = self.rng.randint(0, 50_000)
        self.reject = int(self.good * reject_ratio)
        self._made = 0.0  # fractional parts not yet counted
        self.performance = self.rng.uniform(0.86, 0.96)

    def _duration(self, state: int) -> float:
        return self.rng.expovariate(1.0 / _MEAN_S[state])

    def _next_state(self) -> int:
        r = self.rng.random()
        acc = 0.0
        for state, weight in _NEXT[self.state]:
            acc += weight
            if r < acc:
                return state
        return _NEXT[self.state][-1][0]

    def advance(self, dt: float) -> None:
        """Advance by dt simulated seconds (may cross several states)."""
        while dt > 0:
            step = min(dt, self.remaining)
            if self.state == RUNNING:
                self._made += self.ideal_rate * self.performance * step / 3600.0
                whole = int(self._made)
                self._made -= whole
                if whole < 64:  # part by part: rejects arrive at random
                    rej = sum(1 for _ in range(whole) if self.rng.random() < self.reject_ratio)
                else:  # a long step: the expected share
                    rej = round(whole * self.reject_ratio)
                self.reject += rej
                self.good += whole - rej
            dt -= step
            self.remaining -= step
            if self.remaining <= 0:
                self.state = self._next_state()
                self.remaining = self._duration(self.state)
                if self.state == RUNNING:
                    self.performance = self.rng.uniform(0.86, 0.96)


class LineSensor:
    """Publishes a line's telemetry to `factory/{line_id}/telemetry` every `interval_s`."""

    def __init__(
        self,
        line_id: str,
        broker_url: str = "mqtt://127.0.0.1:1883",
        interval_s: float = 1.0,
        ideal_rate: float = 1200.0,
        reject_ratio: float = 0.02,
        seed: int = 0,
        time_scale: float = 1.0,
        qos: int = 1,
        topic: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not line_id or "/" in line_id or "+" in line_id or "#" in line_id:
            raise SimulatorError(f"line_id must be a non-empty topic level without / + # (got {line_id!r})")
        if interval_s <= 0:
            raise SimulatorError(f"interval_s must be > 0 (got {interval_s!r})")
        if time_scale <= 0:
            raise SimulatorError(f"time_scale must be > 0 (got {time_scale!r})")
        if qos not in (0, 1, 2):
            raise SimulatorError(f"qos must be 0, 1 or 2 (got {qos!r})")
        self.line_id = line_id
        self.target = parse_broker_url(broker_url)
        self.broker_url = broker_url
        self.topic = topic or f"factory/{line_id}/telemetry"
        self.interval_s = float(interval_s)
        self.time_scale = float(time_scale)
        self.qos = qos
        self._clock = clock
        self.state = LineState(seed=seed, ideal_rate=ideal_rate, reject_ratio=reject_ratio)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] | None = None
        self._fault: str | None = None
        self._drift_rate = 0.0
        self._drift_since: float | None = None
        self._drift_offset = 0.0
        self._t: float | None = None
        self.published = 0
        self.connected = threading.Event()

    # ----------------------------------------------------------------- state
    def _device_ts_ms(self, now: float) -> int:
        offset = self._drift_offset
        if self._drift_since is not None:
            offset += (now - self._drift_since) * self._drift_rate
        return int((now + offset) * 1000)

    def step(self) -> dict[str, Any]:
        """Advance to now and build the next message (also used by tests without a broker)."""
        with self._lock:
            now = self._clock()
            if self._t is not None:
                self.state.advance((now - self._t) * self.time_scale)
            self._t = now
            s = self.state
            msg = {
                "ts": self._device_ts_ms(now),
                "state": s.state,
                "good": s.good,
                "reject": s.reject,
                "ideal_rate": s.ideal_rate,
            }
            self._last = msg
            return dict(msg)

    def truth(self) -> dict[str, float]:
        """Catalogue metric -> value of the last message published (or built)."""
        with self._lock:
            msg = self._last
        if msg is None:
            msg = self.step()
        return {
            "machine_state": float(msg["state"]),
            "good_count": float(msg["good"]),
            "reject_count": float(msg["reject"]),
            "ideal_rate_pcs_h": float(msg["ideal_rate"]),
        }

    def last_message(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._last) if self._last else None

    def inject(self, fault: str | None, *, rate: float = 0.05) -> None:
        """ "timeout": stop publishing (the sensor goes silent); "clock_drift": `ts` runs fast by
        `rate` s/s; None: both cleared."""
        if fault not in LINE_FAULTS:
            raise SimulatorError(f"unknown line sensor fault {fault!r} (known: {list(LINE_FAULTS)})")
        with self._lock:
            now = self._clock()
            if fault is None:
                self._fault = None
                self._drift_since, self._drift_offset, self._drift_rate = None, 0.0, 0.0
            elif fault == "timeout":
                self._fault = "timeout"
            else:
                if self._drift_since is not None:
                    self._drift_offset += (now - self._drift_since) * self._drift_rate
                self._drift_since, self._drift_rate = now, rate

    # ----------------------------------------------------------------- MQTT
    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"parkpulse-sim-line-{self.line_id}-{random.randrange(1 << 30):x}",
            protocol=mqtt.MQTTv5,
        )
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set()

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            if not reason.is_failure:
                self.connected.set()

        def on_disconnect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            self.connected.clear()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        return client

    def _run(self) -> None:
        client = self._client()
        backoff = 0.2
        next_pub = time.monotonic()
        try:
            while not self._stop.is_set():
                if not client.is_connected():
                    try:
                        client.connect(self.target.host, self.target.port, keepalive=30)
                        backoff = 0.2
                    except OSError:
                        self._stop.wait(backoff)
                        backoff = min(5.0, backoff * 2)
                        continue
                client.loop(timeout=0.05)
                now = time.monotonic()
                if now >= next_pub:
                    next_pub = max(next_pub + self.interval_s, now - self.interval_s)
                    msg = self.step()
                    if self._fault != "timeout" and client.is_connected():
                        client.publish(self.topic, json.dumps(msg, separators=(",", ":")), qos=self.qos)
                        self.published += 1
                else:
                    self._stop.wait(min(0.05, next_pub - now))
        finally:
            deadline = time.monotonic() + 2.0
            while client.is_connected() and client.want_write() and time.monotonic() < deadline:
                client.loop(timeout=0.05)
            client.disconnect()
            client.loop(timeout=0.05)

    def start(self) -> LineSensor:
        if self._thread is not None:
            raise SimulatorError(f"line sensor {self.line_id} already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"parkpulse-sim-line-{self.line_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SimulatorError(f"line sensor {self.line_id} did not stop within {timeout} s")
        self._thread = None

    def __enter__(self) -> LineSensor:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
