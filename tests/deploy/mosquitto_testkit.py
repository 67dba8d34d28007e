"""The production broker configuration (deploy/mosquitto/) started for a test, and an MQTT 5 client.

`start_broker` runs /usr/sbin/mosquitto with deploy/mosquitto/mosquitto.conf and an ACL — only
the container paths and the listener ports are rewritten for a temporary directory — and the two
password files made with mosquitto_passwd: `passwd` (gateways, listener 1883) and
`passwd-services` (the ParkPulse services, listener 1884). Test modules import from here
(`from conftest import` would be ambiguous across test folders).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from parkpulse.services import free_port, wait_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
MOSQUITTO = "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd")
# Gateway accounts (password file `passwd`, the gateway listeners).
GATEWAYS = {"gw-a": "pa", "gw-b": "pb"}
# Service accounts (password file `passwd-services`, the services' listener); `monitor` is a
# test-only account that reads everything (ACL_MONITOR).
SERVICES = {"monitor": "pm", "ingest": "pi", "alerts": "pal", "console": "pc"}
USERS = {**GATEWAYS, **SERVICES}
ACL_MONITOR = "\n# test only\nuser monitor\ntopic read #\n"

needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="needs /usr/sbin/mosquitto (./run setup)"
)


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    port: int  # the gateways' listener (1883 in production)
    services_port: int  # the services' listener (1884 in production)
    log: Path

    def port_of(self, user: str) -> int:
        """The listener an account belongs on."""
        return self.services_port if user in SERVICES else self.port

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _write_passwd(path: Path, users: dict[str, str]) -> None:
    assert PASSWD, "mosquitto_passwd not installed (Debian package mosquitto)"
    for i, (user, password) in enumerate(users.items()):
        subprocess.run(
            [PASSWD, *(["-c"] if i == 0 else []), "-b", str(path), user, password],
            check=True,
            capture_output=True,
        )
    path.chmod(0o600)


def start_broker(tmp: Path, acl_text: str, tls_port: int | None = None) -> Broker:
    conf_dir, data = tmp / "config", tmp / "data"
    (conf_dir / "conf.d").mkdir(parents=True)
    data.mkdir()
    port, services_port = free_port(), free_port()
    text = (DEPLOY / "mosquitto.conf").read_text()
    assert "listener 1883\n" in text and "listener 1884\n" in text and "/mosquitto/config/" in text
    text = (
        text.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
        .replace("listener 1884\n", f"listener {services_port} 127.0.0.1\n")
        .replace("/mosquitto/config/", f"{conf_dir}/")
        .replace("/mosquitto/data/", f"{data}/")
        .replace("log_dest stdout", f"log_dest file {tmp}/mosquitto.log")
    )
    (conf_dir / "mosquitto.conf").write_text(text)
    (conf_dir / "acl").write_text(acl_text)
    if tls_port is not None:  # enable the TLS option the way the README says: conf.d/tls.conf
        tls = (DEPLOY / "conf.d" / "tls.conf.example").read_text()
        assert "listener 8883\n" in tls
        (conf_dir / "conf.d" / "tls.conf").write_text(
            tls.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n")
            .replace("/mosquitto/certs/", f"{tmp}/certs/")
            .replace("/mosquitto/config/", f"{conf_dir}/")
        )
    _write_passwd(conf_dir / "passwd", GATEWAYS)
    _write_passwd(conf_dir / "passwd-services", SERVICES)
    (conf_dir / "acl").chmod(0o600)
    if os.geteuid() == 0:
        # Mosquitto started as root drops to the `mosquitto` user: let that user read the files.
        for path in (tmp, *tmp.rglob("*")):
            shutil.chown(path, "mosquitto", "mosquitto")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf_dir / "mosquitto.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    broker = Broker(proc, port, services_port, tmp / "mosquitto.log")
    if not (wait_port("127.0.0.1", port, timeout=10) and wait_port("127.0.0.1", services_port, timeout=10)):
        proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
        pytest.fail(f"mosquitto did not start:\n{out}\n{broker.log_text()}")
    return broker


class Client:
    """A paho MQTT 5 client that records its CONNACK, disconnects, PUBACK reason codes and the
    messages it receives. `persistent` connects with clean_start false and a session expiry."""

    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        persistent: bool = False,
        reconnect: bool = True,
    ) -> None:
        self.client_id = client_id or f"t-{user}-{time.monotonic_ns()}"
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=reconnect,
        )
        if user:
            self.c.username_pw_set(user, password if password is not None else USERS[user])
        self.connected = threading.Event()
        self.connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self.disconnects = 0
        self.pubacks: dict[int, int] = {}
        self.subacks: list[list[int]] = []
        self.got: list[tuple[str, bytes]] = []
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append([rc.value for rc in rcs])
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", port, keepalive=10, clean_start=not persistent, properties=props)
        self.c.loop_start()
        self.connected.wait(5)

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        self.connack = rc
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        self.disconnects += 1

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, props: Properties | None) -> None:
        self.pubacks[mid] = rc.value

    @property
    def accepted(self) -> bool:
        return self.connack is not None and self.connack.value == 0

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """QoS 1 publish; returns the PUBACK reason code (0 ok, 16 ok but no subscriber, 135 not authorised)."""
        info = self.c.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pubacks.get(info.mid, -1)

    def subscribe(self, topic: str) -> list[int]:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while len(self.subacks) == n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.subacks[-1]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def wait(cond: Callable[[], Any], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def refused(broker: Broker, user: str, topic: str) -> bool:
    """A fresh client publishes once at QoS 1. Mosquitto 2.0 answers an unauthorised publish with
    PUBACK 135 (not authorised) and may then drop the connection; either counts as refused."""
    c = Client(broker.port_of(user), user)
    try:
        rc = c.publish(topic, b"bad")
        return rc == 135 or (rc == -1 and not c.c.is_connected())
    finally:
        c.close()
