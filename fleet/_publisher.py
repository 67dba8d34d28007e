"""`parkpulse fleet serve`: keeps every managed gateway's retained `config` message equal to its
newest desired version, with the platform's `fleet` MQTT account.

Every message is signed with the platform's Ed25519 key (`sig`, docs/wire-format.md) and carries
the time it was signed as `issued_at`; gateways refuse a push older than 7 days, so the publisher
re-signs and republishes every retained message when it starts and once `resign_s` (a day) has
passed since it was published. Then it publishes what a write announces on the PostgreSQL
channel `fleet_config` (LISTEN/NOTIFY, sent in the writer's transaction) and, every `sweep_s`,
whatever the store holds that was not published yet (a missed notification, a broker that
refused). A version counts as published only when the broker acknowledged it
(PUBACK below 0x80); `fleet_published` records it. A gateway moved to another firm gets its old
retained topic cleared.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from psycopg.rows import dict_row

from fleet._errors import FleetError
from fleet._store import NOTIFY_CHANNEL
from parkpulse.redact import redact_url
from parkpulse.settings import parse_mqtt_url
from parkpulse.wire import config_payload, config_topic

__all__ = ["Publisher", "SyncResult"]

log = logging.getLogger("parkpulse.fleet.publisher")


@dataclass(slots=True)
class SyncResult:
    published: int = 0
    failed: int = 0
    cleared: int = 0


_PENDING = """
SELECT DISTINCT ON (c.gateway_id) c.gateway_id, f.park_id, g.firm_id, c.version, c.sha256,
       p.topic AS published_topic, p.version AS published_version, p.sha256 AS published_sha256,
       p.published_at < now() - make_interval(secs => %(resign_s)s) AS due
FROM fleet_configs c
JOIN gateways g USING (gateway_id)
JOIN firms f USING (firm_id)
LEFT JOIN fleet_published p USING (gateway_id)
WHERE %(all)s OR c.gateway_id = ANY(%(gateways)s)
ORDER BY c.gateway_id, c.version DESC"""

_CONTENT = """SELECT config, profiles, created_by, created_at, reason FROM fleet_configs
WHERE gateway_id = %s AND version = %s"""

_RECORD = """INSERT INTO fleet_published (gateway_id, topic, version, sha256, published_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (gateway_id) DO UPDATE SET topic = excluded.topic, version = excluded.version,
  sha256 = excluded.sha256, published_at = excluded.published_at"""


class Publisher:
    """One publisher process (run one per platform; two would only publish the same messages twice)."""

    def __init__(
        self,
        dsn: str,
        mqtt_url: str,
        *,
        signing_key: Ed25519PrivateKey,
        client_id: str | None = None,
        sweep_s: float = 30.0,
        resign_s: float = 86_400.0,
        ack_timeout_s: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.signing_key = signing_key
        self.resign_s = resign_s
        self.mqtt_url = mqtt_url
        self.target = parse_mqtt_url(mqtt_url)
        self.sweep_s = sweep_s
        self.ack_timeout_s = ack_timeout_s
        self.client_id = client_id or f"pp-fleet-{socket.gethostname()[:40]}-{os.getpid()}"
        self._connected = threading.Event()
        self._refused: str | None = None
        self._acks: dict[int, int] = {}
        self._acked = threading.Condition()
        c = self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if self.target.username:
            c.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish

    # -- MQTT ------------------------------------------------------------------------------------
    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        if rc.is_failure:
            self._refused = str(rc)
            log.error("broker %s refused the fleet account: %s", redact_url(self.mqtt_url), rc)
            return
        self._refused = None
        self._connected.set()
        log.info("connected to %s as %s", redact_url(self.mqtt_url), self.client_id)

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        self._connected.clear()
        log.warning("disconnected from the broker: %s", rc)

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, props: Properties | None) -> None:
        with self._acked:
            self._acks[mid] = rc.value
            self._acked.notify_all()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect (paho reconnects by itself later); FleetError when the broker stays unreachable or refuses."""
        self.client.connect_async(self.target.host, self.target.port, keepalive=30, clean_start=True)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            why = f"refused: {self._refused}" if self._refused else f"no connection within {timeout:g} s"
            raise FleetError(f"PARKPULSE_FLEET_MQTT_URL: broker {redact_url(self.mqtt_url)} {why}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _publish(self, topic: str, payload: bytes) -> int:
        """QoS 1, retained; the PUBACK reason code (-1: none within the timeout)."""
        if not self._connected.wait(self.ack_timeout_s):
            return -1
        info = self.client.publish(topic, payload, qos=1, retain=True)
        deadline = time.monotonic() + self.ack_timeout_s
        with self._acked:
            while info.mid not in self._acks and time.monotonic() < deadline:
                self._acked.wait(max(0.0, deadline - time.monotonic()))
            return self._acks.pop(info.mid, -1)

    # -- store -------------------------------------------------------------------------------------
    def sync(
        self, conn: psycopg.Connection[Any], gateways: set[str] | None = None, *, force: bool = False
    ) -> SyncResult:
        """Publish the newest version of `gateways` (None: all) when it differs from what was published
        or its signature is due for renewal (`force`: in any case). Returns what was done."""
        res = SyncResult()
        params = {"all": gateways is None, "gateways": sorted(gateways or ()), "resign_s": self.resign_s}
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_PENDING, params).fetchall()
        for r in rows:
            topic = config_topic(r["park_id"], r["firm_id"], r["gateway_id"])
            same = (r["published_topic"], r["published_version"], r["published_sha256"]) == (
                topic,
                r["version"],
                r["sha256"],
            )
            if same and not force and not r["due"]:
                continue
            if r["published_topic"] not in (None, topic) and self._publish(r["published_topic"], b"") < 0x80:
                res.cleared += 1  # the gateway moved: its old retained config goes
            if self._publish_version(conn, r["gateway_id"], r["version"], topic):
                res.published += 1
            else:
                res.failed += 1
        return res

    def _publish_version(
        self, conn: psycopg.Connection[Any], gateway_id: str, version: int, topic: str
    ) -> bool:
        with conn.cursor(row_factory=dict_row) as cur:
            c = cur.execute(_CONTENT, (gateway_id, version)).fetchone()
        if c is None:
            return False
        payload = config_payload(
            gateway_id,
            version,
            c["config"],
            c["profiles"],
            issued_by=c["created_by"],
            reason=c["reason"],
            signing_key=self.signing_key,
        )
        rc = self._publish(topic, payload)
        if not 0 <= rc < 0x80:
            log.error(
                "config v%d of %s not accepted by the broker (reason code %d) on %s",
                version,
                gateway_id,
                rc,
                topic,
            )
            return False
        conn.execute(_RECORD, (gateway_id, topic, version, _sha_of(payload)))
        log.info("published config v%d of %s on %s (%d bytes)", version, gateway_id, topic, len(payload))
        return True

    # -- the service -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, once: bool = False) -> None:
        """Republish everything, then follow the store until `stop` is set (`once`: return after the first pass)."""
        self.connect()
        try:
            first = True
            while not stop.is_set():
                try:
                    self._follow(stop, force=first, once=once)
                    return
                except psycopg.OperationalError as exc:
                    log.error(
                        "database: %s; retrying in 5 s", str(exc).strip().splitlines()[0] if str(exc) else exc
                    )
                    first = False
                    stop.wait(5.0)
        finally:
            self.close()

    def _follow(self, stop: threading.Event, *, force: bool, once: bool) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="parkpulse-fleet") as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            res = self.sync(conn, force=force)
            log.info("start: %d config(s) published, %d failed", res.published, res.failed)
            if once:
                return
            last_sweep = time.monotonic()
            while not stop.is_set():
                changed = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1)}
                if changed:  # a burst of writes: take what arrives within a moment together
                    changed |= {n.payload for n in conn.notifies(timeout=0.05)}
                    self.sync(conn, changed)
                if time.monotonic() - last_sweep >= self.sweep_s:
                    self.sync(conn)
                    last_sweep = time.monotonic()


def _sha_of(payload: bytes) -> str:
    doc = orjson.loads(payload)
    return str(doc["sha256"])
