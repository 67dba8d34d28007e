"""MQTT uplink (paho-mqtt 2, MQTT 5, QoS 1): birth and last-will, PUBACK callbacks, reconnect with backoff.

paho runs its network loop in one thread; every callback is handed to the asyncio loop with
`call_soon_threadsafe`. A message published while connected stays in paho's session until its
PUBACK arrives and is re-sent (DUP) after a reconnect; `on_publish` fires only after the PUBACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import GatewayConfig
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import config_topic, data_topic, resend_topic, status_topic
from parkpulse.wire import status_payload as wire_status_payload

__all__ = ["Uplink"]

log = logging.getLogger("parkpulse.gateway.uplink")


class Uplink:
    """One MQTT connection to the platform broker."""

    def __init__(
        self,
        cfg: GatewayConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        on_ack: Callable[[int], None],
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_resend: Callable[[bytes], None] | None = None,
        on_config: Callable[[bytes], None] | None = None,
        version: str = "",
    ) -> None:
        self.cfg = cfg
        self.loop = loop
        self._on_ack = on_ack
        self._on_connect_cb = on_connect
        self._on_disconnect_cb = on_disconnect
        self._on_resend_cb = on_resend
        self._on_config_cb = on_config
        ident = cfg.gateway
        self.data_topic = data_topic(ident.park, ident.firm, ident.id)
        self.status_topic = status_topic(ident.park, ident.firm, ident.id)
        self.resend_topic = resend_topic(ident.park, ident.firm, ident.id)
        self.config_topic = config_topic(ident.park, ident.firm, ident.id)
        self.version = version
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.published = 0
        self.acked = 0
        self._started = False
        self._stopping = False
        up = cfg.uplink
        target = parse_mqtt_url(up.url)
        self.target = target
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=up.client_id or f"pp-gw-{ident.park}-{ident.id}",
            protocol=mqtt.MQTTv5,
        )
        user = up.username or target.username
        pw = up.password or target.password
        if user:
            client.username_pw_set(user, pw)
        if target.tls or up.tls is not None:
            tls = up.tls
            client.tls_set(
                ca_certs=str(tls.ca) if tls and tls.ca else None,
                certfile=str(tls.cert) if tls and tls.cert else None,
                keyfile=str(tls.key) if tls and tls.key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if tls and tls.insecure:
                client.tls_insecure_set(True)
        client.reconnect_delay_set(
            int(max(1, up.reconnect_min_s)), int(max(up.reconnect_min_s, up.reconnect_max_s))
        )
        client.max_inflight_messages_set(up.max_inflight + 4)
        client.max_queued_messages_set(0)
        client.will_set(self.status_topic, self.status_payload("offline"), qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_publish = self._paho_publish
        client.on_message = self._paho_message
        self.client = client
        self.status_extra: Callable[[], dict[str, Any]] = dict

    def status_payload(self, state: str, **extra: Any) -> bytes:
        return wire_status_payload(self.cfg.gateway.id, state, version=self.version, ts=_now_iso(), **extra)

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(
            self.target.host,
            self.target.port,
            keepalive=self.cfg.uplink.keepalive_s,
            clean_start=True,
            properties=props,
        )
        self.client.loop_start()
        self._started = True

    def stop(self, timeout: float = 5.0) -> None:
        if not self._started:
            return
        self._stopping = True
        if self.connected:
            try:
                info = self.client.publish(
                    self.status_topic,
                    self.status_payload("offline", **self.status_extra()),
                    qos=1,
                    retain=True,
                )
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._started = False

    # publishing (any thread) --------------------------------------------------------------------
    def publish_batch(self, payload: bytes) -> int | None:
        """Publish one batch with QoS 1; returns the mid, or None when not connected."""
        if not self.connected:
            return None
        info = self.client.publish(self.data_topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        self.published += 1
        return int(info.mid)

    def publish_status(self, **extra: Any) -> None:
        if self.connected:
            self.client.publish(self.status_topic, self.status_payload("online", **extra), qos=1, retain=True)

    # paho callbacks (network thread) -----------------------------------------------------------
    def _paho_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("broker %s refused the connection: %s", self.target.redacted(), rc)
            return
        self.connected = True
        self.connects += 1
        log.info("connected to %s", self.target.redacted())
        client.publish(
            self.status_topic, self.status_payload("online", **self.status_extra()), qos=1, retain=True
        )
        if self._on_resend_cb is not None:  # clean session: subscribe on every connect
            client.subscribe(self.resend_topic, qos=1)
        if self._on_config_cb is not None:  # retained: the broker sends the desired version at once
            client.subscribe(self.config_topic, qos=1)
        if self._on_connect_cb is not None:
            self.loop.call_soon_threadsafe(self._on_connect_cb)

    def _paho_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        was = self.connected
        self.connected = False
        if was:
            self.disconnects += 1
            if self._stopping:
                log.info("disconnected from %s", self.target.redacted())
            else:
                log.warning("disconnected from %s: %s", self.target.redacted(), rc)
        if self._on_disconnect_cb is not None:
            self.loop.call_soon_threadsafe(self._on_disconnect_cb)

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.resend_topic:
            cb = self._on_resend_cb
        elif msg.topic == self.config_topic:
            cb = self._on_config_cb
            if not msg.payload:  # an empty retained message clears the topic: nothing to apply
                return
        else:
            return
        if cb is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(cb, bytes(msg.payload))

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            log.warning("broker refused message %s: %s", mid, rc)
            return
        self.acked += 1
        # a closed loop (shutdown): the batch stays spooled and is re-sent at the next start
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._on_ack, mid)


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
