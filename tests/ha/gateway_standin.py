"""Gateways for the HA tests: the ingest load generator's batches (ingest/loadgen.py), published at
QoS 1 at a steady pace through a real Mosquitto, and kept after the broker's PUBACK to answer
resend requests the way a gateway's spool does (wire contract, "Resend requests"): every batch
asked for on `pp/v1/{park}/{firm}/{gateway}/resend` is published again, unchanged (same seq).

This stands in for gateway processes because those need devices to read; what matters here, the
batches on the wire and the answers to resend requests, is the same wire contract.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from parkpulse.errors import ParkPulseError
from parkpulse.settings import parse_mqtt_url

__all__ = ["ResendingGateways"]


class ResendingGateways:
    """Publish `messages` (topic, payload, readings) at `rate` messages/s in a thread; answer
    resend requests from what was already published."""

    def __init__(self, url: str, park: str, messages: list[tuple[str, bytes, int]], rate: float) -> None:
        self.messages = messages
        self.rate = rate
        self.park = park
        self._keys = [_key(payload) for _, payload, _ in messages]
        self._by_key = {k: (t, p) for k, (t, p, _) in zip(self._keys, messages, strict=True)}
        self.sent: list[tuple[str, int]] = []  # keys published, in order (first time)
        self.resent: list[tuple[str, int]] = []  # keys published again on request
        self.requests: list[dict[str, Any]] = []
        self._acked = 0
        self._expected = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        t = parse_mqtt_url(url)
        self._c = c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pp-ha-gw-{park}",
            protocol=mqtt.MQTTv5,
        )
        if t.username:
            c.username_pw_set(t.username, t.password)
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        subscribed = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(f"pp/v1/{park}/+/+/resend", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_request
        c.on_publish = self._on_puback
        c.connect(t.host, t.port, keepalive=30)
        c.loop_start()
        if not subscribed.wait(10):
            c.loop_stop()
            raise ParkPulseError("gateway stand-in: no SUBACK for the resend topic")

    # -- mqtt callbacks (paho's network thread) ---------------------------------------------------
    def _on_puback(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        with self._lock:
            self._acked += 1

    def _on_request(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        req = orjson.loads(msg.payload)
        with self._lock:
            self.requests.append(req)
            published = set(self.sent)
        for seq in range(int(req["from_seq"]), int(req["to_seq"]) + 1):
            key = (str(req["gateway"]), seq)
            if key not in published:  # not sent yet: nothing to re-send (it will come in order)
                continue
            topic, payload = self._by_key[key]
            with self._lock:
                self.resent.append(key)
                self._expected += 1
            client.publish(topic, payload, qos=1)

    # -- publishing ------------------------------------------------------------------------------
    def start(self) -> ResendingGateways:
        self._thread = threading.Thread(target=self._publish_all, name="ha-gateways", daemon=True)
        self._thread.start()
        return self

    def _publish_all(self) -> None:
        try:
            t0 = time.monotonic()
            for i, (topic, payload, _) in enumerate(self.messages):
                due = t0 + i / self.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                with self._lock:
                    self.sent.append(self._keys[i])
                    self._expected += 1
                self._c.publish(topic, payload, qos=1)
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
        finally:
            self._done.set()

    @property
    def published(self) -> int:
        with self._lock:
            return len(self.sent)

    def wait(self, timeout: float = 120.0) -> None:
        """Until every message (and every re-sent one so far) was acknowledged by the broker."""
        if not self._done.wait(timeout):
            raise ParkPulseError("gateway stand-in: publishing did not finish in time")
        if self._error is not None:
            raise ParkPulseError(f"gateway stand-in failed: {self._error!r}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._acked >= self._expected:
                    return
            time.sleep(0.05)
        raise ParkPulseError(f"gateway stand-in: {self._acked} of {self._expected} PUBACKs")

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(5)
        self._c.disconnect()
        self._c.loop_stop()


def _key(payload: bytes) -> tuple[str, int]:
    doc = orjson.loads(payload)
    return str(doc["gateway"]), int(doc["seq"])
