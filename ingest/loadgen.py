"""The load generator: a synthetic park's batches, planned and published on the broker at QoS 1
(the `parkpulse ingest load` job and the ingest benchmark share it; `ingest.harness` runs ingest
and waits for what it stored)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from parkpulse.errors import ParkPulseError
from parkpulse.registry import ParkFile
from parkpulse.settings import parse_mqtt_url
from parkpulse.synthetic import SyntheticGateway, synthetic_gateways

__all__ = ["LoadPlan", "plan_load", "publish"]


@dataclass
class LoadPlan:
    """Payloads ready to publish: (topic, payload, readings) in publishing order."""

    messages: list[tuple[str, bytes, int]]
    readings: int
    gateways: list[str]
    last_seq: dict[str, int] = field(default_factory=dict)


def plan_load(pf: ParkFile, readings: int, per_message: int = 2000, t_end_ms: int | None = None) -> LoadPlan:
    """Split `readings` over the park's gateways, `per_message` per batch, timestamps in the past."""
    gws: list[SyntheticGateway] = list(synthetic_gateways(pf))
    per_instant = gws[0].readings_per_instant()
    per_message = max(per_instant, per_message - per_message % per_instant)
    n_msgs = max(1, -(-readings // per_message))
    instants_per_msg = per_message // per_instant
    msgs_per_gw = -(-n_msgs // len(gws))
    t_end = t_end_ms or int(time.time() * 1000) - 60_000
    t0 = t_end - msgs_per_gw * instants_per_msg * 1000
    out: list[tuple[str, bytes, int]] = []
    left = readings
    clock = {g.gateway: t0 for g in gws}
    last: dict[str, int] = {}
    i = 0
    while left > 0:
        g = gws[i % len(gws)]
        rows = min(per_message, left)
        out.append((g.topic, g.batch(clock[g.gateway], rows), rows))
        last[g.gateway] = g.seq - 1
        clock[g.gateway] += instants_per_msg * 1000
        left -= rows
        i += 1
    return LoadPlan(out, readings, [g.gateway for g in gws], last)


def publish(
    url: str, messages: list[tuple[str, bytes, int]], client_id: str = "pp-load", inflight: int = 200
) -> float:
    """Publish at QoS 1 and wait for every PUBACK. Returns seconds taken."""
    t = parse_mqtt_url(url)
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    if t.username:
        c.username_pw_set(t.username, t.password)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0]
    total = len(messages)

    def on_publish(client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        acked[0] += 1
        if acked[0] >= total:
            done.set()

    c.on_publish = on_publish
    c.connect(t.host, t.port, keepalive=30)
    c.loop_start()
    try:
        t0 = time.perf_counter()
        for topic, payload, _ in messages:
            while len(c._out_messages) >= inflight * 4:  # keep paho's own queue short (memory)
                time.sleep(0.001)
            c.publish(topic, payload, qos=1)
        if not done.wait(600):
            raise ParkPulseError(f"publisher: only {acked[0]} of {total} messages acknowledged by the broker")
        return time.perf_counter() - t0
    finally:
        c.disconnect()
        c.loop_stop()
