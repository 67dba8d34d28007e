"""The MQTT line sensor against the session's real Mosquitto, and its state machine alone."""

from __future__ import annotations

import contextlib
import json
import queue
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from parkpulse.services import MosquittoBroker
from simulators.errors import SimulatorError
from simulators.mqtt_sensors import RUNNING, LineSensor, LineState, parse_broker_url


@pytest.fixture
def subscriber(broker: MosquittoBroker, unique_id: str) -> Iterator[queue.Queue[tuple[str, dict]]]:
    got: queue.Queue[tuple[str, dict]] = queue.Queue()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{unique_id}")
    client.on_message = lambda c, u, m: got.put((m.topic, json.loads(m.payload)))
    client.connect("127.0.0.1", broker.port)
    client.subscribe(f"factory/{unique_id}/telemetry", qos=1)
    client.loop_start()
    time.sleep(0.2)
    yield got
    client.loop_stop()
    client.disconnect()


def _collect(got: queue.Queue[tuple[str, dict]], n: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            out.append(got.get(timeout=0.2))
    return out


def test_publishes_valid_json_with_rising_counts(
    broker: MosquittoBroker, unique_id: str, subscriber: queue.Queue
) -> None:
    sensor = LineSensor(
        unique_id, broker_url=broker.url, interval_s=0.1, time_scale=120.0, ideal_rate=3600, seed=5
    )
    with sensor:
        msgs = _collect(subscriber, 12)
    assert len(msgs) >= 12
    assert {t for t, _ in msgs} == {f"factory/{unique_id}/telemetry"}
    bodies = [m for _, m in msgs]
    for m in bodies:
        assert set(m) == {"ts", "state", "good", "reject", "ideal_rate"}
        assert isinstance(m["ts"], int) and abs(m["ts"] / 1000 - time.time()) < 60
        assert m["state"] in (0, 1, 2, 3, 4)
        assert isinstance(m["good"], int) and isinstance(m["reject"], int)
        assert m["ideal_rate"] == 3600.0
    goods = [m["good"] + m["reject"] for m in bodies]
    assert goods == sorted(goods) and goods[-1] > goods[0]
    assert [m["ts"] for m in bodies] == sorted(m["ts"] for m in bodies)
    truth = sensor.truth()
    assert truth["good_count"] >= bodies[-1]["good"] and truth["ideal_rate_pcs_h"] == 3600.0


def test_timeout_and_clock_drift(broker: MosquittoBroker, unique_id: str, subscriber: queue.Queue) -> None:
    sensor = LineSensor(unique_id, broker_url=broker.url, interval_s=0.1, seed=1)
    with sensor:
        assert _collect(subscriber, 2)
        sensor.inject("timeout")
        time.sleep(0.3)
        while not subscriber.empty():
            subscriber.get()
        assert _collect(subscriber, 1, timeout=0.6) == []
        sensor.inject(None)
        assert _collect(subscriber, 1)  # publishing again
        sensor.inject("clock_drift", rate=100.0)
        time.sleep(0.3)
        msgs = _collect(subscriber, 3)
    assert msgs and msgs[-1][1]["ts"] / 1000 - time.time() > 5  # runs fast


def test_state_machine_counts_only_while_running() -> None:
    line = LineState(seed=11, ideal_rate=1800, reject_ratio=0.05)
    states = set()
    last = first = (line.good, line.reject)
    produced_running = 0
    for _ in range(2000):
        state = line.state
        line.advance(30.0)
        states.add(line.state)
        made = line.good + line.reject - sum(last)
        assert made >= 0
        if state != RUNNING and line.state == state:
            assert made == 0
        else:
            produced_running += made
        last = (line.good, line.reject)
    assert {1, 2, 3, 4} <= states  # idle, running, fault and planned stop all occur
    # 2000 × 30 s = 16.7 h at <= 1800 pcs/h: plausible output and reject share
    assert 0 < produced_running < 1800 * 16.7
    rejects = line.reject - first[1]
    assert 0.03 < rejects / produced_running < 0.07


def test_bad_arguments() -> None:
    with pytest.raises(SimulatorError, match="line_id"):
        LineSensor("a/b")
    with pytest.raises(SimulatorError, match="mqtt://"):
        LineSensor("l1", broker_url="http://x")
    assert parse_broker_url("mqtts://u:p%40ss@broker.example:9883").password == "p@ss"
    assert parse_broker_url("mqtt://h").port == 1883


def _collect_plain(got: queue.Queue[dict], n: int, timeout: float) -> list[dict]:
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            out.append(got.get(timeout=0.2))
    return out


def test_sensor_reconnects_after_a_broker_restart(own_broker: MosquittoBroker, unique_id: str) -> None:
    got: queue.Queue[dict] = queue.Queue()

    def subscribe() -> mqtt.Client:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        c.on_message = lambda cl, u, m: got.put(json.loads(m.payload))
        c.on_connect = lambda cl, u, f, r, p=None: cl.subscribe(f"factory/{unique_id}/telemetry", qos=1)
        c.connect("127.0.0.1", own_broker.port)
        c.loop_start()
        return c

    sub = subscribe()
    sensor = LineSensor(unique_id, broker_url=own_broker.url, interval_s=0.1, seed=2)
    try:
        with sensor:
            assert got.get(timeout=5)
            own_broker.restart(down_for=1.0)
            sub.loop_stop()
            sub.disconnect()
            while not got.empty():
                got.get()
            sub = subscribe()
            after = _collect_plain(got, 3, timeout=15)
            assert len(after) == 3  # the sensor reconnected by itself and publishes again
            assert sensor.connected.is_set()
    finally:
        sub.loop_stop()
        sub.disconnect()
