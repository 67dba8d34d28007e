"""MQTT 5 side: a paho client with manual acknowledgement, a persistent session and a shared
subscription; incoming messages go into a byte-bounded queue (backpressure on the reader)."""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest._prepare import Message
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import shared_data_subscription

__all__ = ["MessageQueue", "MqttReceiver"]

log = logging.getLogger("parkpulse.ingest.mqtt")


class MessageQueue:
    """FIFO bounded by payload bytes. `put` waits while full (the broker then holds the rest);
    `put_control` bypasses the bound (used for the drain marker)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._q: collections.deque[Message | None] = collections.deque()
        self._bytes = 0
        self._cv = threading.Condition()
        self.closed = False

    def put(self, m: Message) -> None:
        size = len(m.payload)
        with self._cv:
            while self._bytes and self._bytes + size > self.max_bytes and not self.closed:
                self._cv.wait(0.5)
            self._q.append(m)
            self._bytes += size
            self._cv.notify_all()

    def put_control(self) -> None:
        with self._cv:
            self._q.append(None)
            self._cv.notify_all()

    def get(self, timeout: float) -> Message | bool | None:
        """A message, None (the drain marker) or False on timeout."""
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
                if not self._q:
                    return False
            m = self._q.popleft()
            if m is not None:
                self._bytes -= len(m.payload)
            self._cv.notify_all()
            return m

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def __len__(self) -> int:
        return len(self._q)

    @property
    def nbytes(self) -> int:
        return self._bytes


class MqttReceiver:
    """Connects (and reconnects) with clean_start=False so unacked messages survive a restart.

    `gen` counts connections: a message is acknowledged only on the connection it came from;
    after a reconnect the broker redelivers the older ones and dedupe skips them.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        group: str,
        park: str,
        *,
        session_expiry_s: int,
        receive_maximum: int,
        keepalive_s: int,
        reconnect: tuple[float, float],
        on_message: Callable[[Message], None],
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self.target = parse_mqtt_url(url)
        self.client_id = client_id
        self.topics = [shared_data_subscription(group, park), f"pp/v1/{park}/+/+/status"]
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.gen = 0
        self.connected = False
        self._on_message = on_message
        self._on_state = on_state
        c = self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.target.username:
            c.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        # paho sleeps min(max, min * 2**k) between attempts; floats work, so the first retry after
        # a broker restart comes within a fraction of a second (annotations say int)
        c.reconnect_delay_set(reconnect[0], max(reconnect[0], reconnect[1]))  # type: ignore[arg-type]
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        c.on_subscribe = self._subscribed
        self._unsubscribed = threading.Event()
        c.on_unsubscribe = self._unsubscribed_cb
        self.subscribed = False
        self.last_message_at = 0.0
        self._started = False

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(
            self.target.host,
            self.target.port,
            keepalive=self.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._started = True

    def leave_group(self, timeout: float = 5.0) -> bool:
        """Unsubscribe from the shared data topic, so the broker stops assigning messages to us."""
        if not self.connected:
            return False
        self._unsubscribed.clear()
        self.client.unsubscribe(self.topics[0])
        return self._unsubscribed.wait(timeout)

    def stop(self, end_session: bool = False) -> None:
        if not self._started:
            return
        try:
            props = None
            if end_session:  # retiring for good: the broker forgets the (by now empty) session
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0
            self.client.disconnect(properties=props)
        finally:
            self.client.loop_stop()
            self._started = False

    def ack(self, mid: int, qos: int, gen: int) -> bool:
        if qos == 0 or gen != self.gen or not self.connected:
            return False
        self.client.ack(mid, qos)
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish (resend requests); False when not connected. paho keeps a QoS 1 message until PUBACK."""
        if not self.connected:
            return False
        return self.client.publish(topic, payload, qos=qos).rc == mqtt.MQTT_ERR_SUCCESS

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.connected

    # paho callbacks (network thread)
    def _connected(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("broker refused the connection: %s", rc)
            return
        self.gen += 1
        if self.gen > 1 and not flags.session_present:
            log.error(
                "the broker lost this client's session: messages it held for us may be gone "
                "(sequence gaps will show them)"
            )
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])
        self.connected = True
        log.info(
            "connected to %s as %s (session present: %s)",
            self.target.redacted(),
            self.client_id,
            flags.session_present,
        )
        if self._on_state:
            self._on_state(True)

    def _subscribed(
        self, client: mqtt.Client, userdata: object, mid: int, rcs: object, props: object
    ) -> None:
        self.subscribed = True

    def _unsubscribed_cb(self, *args: object) -> None:
        self._unsubscribed.set()

    def _disconnected(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        self.connected = False
        log.warning("disconnected from the broker (%s); reconnecting", rc)
        if self._on_state:
            self._on_state(False)

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self.last_message_at = time.monotonic()
        self._on_message(Message(topic, bytes(msg.payload), msg.mid, msg.qos, self.gen, bool(msg.dup)))
