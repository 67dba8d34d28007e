"""The publisher (`parkpulse fleet serve`): a stored version becomes the gateway's retained config
message on a real Mosquitto, on start and when a version is written (LISTEN/NOTIFY)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from platform_testkit import KEY, Registry, config

import fleet
from fleet._publisher import Publisher
from parkpulse.services import MosquittoBroker
from parkpulse.wire import ConfigPush, config_topic, load_verify_key, parse_config_push


class Retained:
    """A subscriber that keeps the newest message per topic (a gateway's view of its config topic)."""

    def __init__(self, url_port: int, topic: str) -> None:
        self.got: dict[str, bytes] = {}
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-sub-{time.monotonic_ns()}", protocol=mqtt.MQTTv5
        )
        self.c.on_message = lambda c, u, m: self.got.__setitem__(m.topic, bytes(m.payload))
        self.c.connect("127.0.0.1", url_port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def push(self, topic: str, gateway: str, version: int, timeout: float = 10.0) -> ConfigPush:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self.got.get(topic)
            if raw:
                p = parse_config_push(raw, gateway, verify_key=KEY.public_key(), max_age_s=60)
                if p.version == version:
                    return p
            time.sleep(0.05)
        raise AssertionError(
            f"no version {version} on {topic} within {timeout} s (have {self.got.get(topic, b'')[:100]!r})"
        )

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def publisher(registry: Registry, broker: MosquittoBroker) -> Iterator[Publisher]:
    pub = Publisher(registry.dsn, broker.url, signing_key=KEY, sweep_s=60)
    yield pub


def test_sync_publishes_the_stored_version_retained_and_equal(
    registry: Registry, broker: MosquittoBroker, publisher: Publisher
) -> None:
    with registry.conn() as conn:
        v1 = fleet.set_desired(
            conn,
            registry.gw,
            config({"id": "pump", "profile": "generic-meter"}),
            by="li.wei",
            reason="add pump",
        )
        publisher.connect()
        try:
            res = publisher.sync(conn)
            assert (res.published, res.failed) == (1, 0)
            assert publisher.sync(conn).published == 0  # nothing new
            assert publisher.sync(conn, force=True).published == 1  # a restart republishes
        finally:
            publisher.close()
        rec = conn.execute(
            "SELECT version, sha256, topic FROM fleet_published WHERE gateway_id = %s", (registry.gw,)
        ).fetchone()
    topic = config_topic(registry.park, registry.firm, registry.gw)
    assert rec == (1, v1.sha256, topic)
    # a gateway connecting afterwards (it was offline during the push) finds it retained
    sub = Retained(broker.port, topic)
    try:
        p = sub.push(topic, registry.gw, 1)
    finally:
        sub.close()
    assert (p.version, p.sha256, p.config, p.profiles) == (1, v1.sha256, v1.config, v1.profiles)
    assert (p.issued_by, p.reason) == ("li.wei", "add pump")
    assert p.issued_at >= int(v1.created_at.timestamp() * 1000)  # signed when published, not when stored


def test_serve_follows_writes_and_a_gateway_move(
    registry: Registry, broker: MosquittoBroker, publisher: Publisher
) -> None:
    old_topic = config_topic(registry.park, registry.firm, registry.gw)
    new_topic = config_topic(registry.park, registry.other_firm, registry.gw)
    with registry.conn() as conn:
        fleet.set_desired(conn, registry.gw, config(), by="a", reason="one")
    sub = Retained(broker.port, f"pp/v1/{registry.park}/+/{registry.gw}/config")
    stop = threading.Event()
    t = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    t.start()
    try:
        sub.push(old_topic, registry.gw, 1)  # on start
        with registry.conn() as conn:
            t0 = time.monotonic()
            v2 = fleet.set_desired(
                conn, registry.gw, config({"id": "pump", "profile": "generic-meter"}), by="a", reason="two"
            )
            p = sub.push(old_topic, registry.gw, 2)
            latency = time.monotonic() - t0
            assert p.sha256 == v2.sha256
            assert latency < 5, f"NOTIFY should deliver well before the 60 s sweep ({latency:.1f} s)"
            # the gateway moves to another firm: the next write publishes on the new topic, the old one is cleared
            conn.execute(
                "UPDATE gateways SET firm_id = %s WHERE gateway_id = %s", (registry.other_firm, registry.gw)
            )
            fleet.rollback(conn, registry.gw, 1, by="a", reason="moved")
            sub.push(new_topic, registry.gw, 3)
            deadline = time.monotonic() + 5
            while sub.got.get(old_topic) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sub.got.get(old_topic) == b""
    finally:
        stop.set()
        t.join(15)
        sub.close()
    assert not t.is_alive()


def test_a_broker_that_refuses_the_account_is_named(registry: Registry) -> None:
    from fleet import FleetError
    from parkpulse.services import free_port

    pub = Publisher(registry.dsn, f"mqtt://fleet:secret-pw@127.0.0.1:{free_port()}", signing_key=KEY)
    with pytest.raises(FleetError) as exc:
        pub.connect(timeout=1.0)
    assert "secret-pw" not in str(exc.value) and "fleet:***@" in str(exc.value)


def test_keygen_and_fleet_serve_once_as_processes(
    registry: Registry, broker: MosquittoBroker, tmp_path: Path
) -> None:
    """`parkpulse fleet keygen` and `fleet serve --once` (the typer app the `fleet` entry point names)
    as real subprocesses: the retained push verifies with the public key, and serve refuses to run unsigned."""
    cli = [sys.executable, "-c", "from fleet.cli import app; app(prog_name='parkpulse fleet')"]
    private, public = tmp_path / "fleet.key", tmp_path / "fleet.pub"
    gen = subprocess.run(
        [*cli, "keygen", str(private), str(public)], capture_output=True, text=True, timeout=60
    )
    assert gen.returncode == 0, gen.stderr
    assert private.stat().st_mode & 0o777 == 0o600
    again = subprocess.run(
        [*cli, "keygen", str(private), str(public)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 2 and "already there" in again.stderr
    with registry.conn() as conn:
        v = fleet.set_desired(conn, registry.gw2, config(), by="a", reason="process")
    env = {**os.environ, "PARKPULSE_DATABASE_URL": registry.dsn, "PARKPULSE_FLEET_MQTT_URL": broker.url}
    env.pop("PARKPULSE_FLEET_SIGNING_KEY", None)
    unsigned = subprocess.run([*cli, "serve", "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert unsigned.returncode == 2 and "PARKPULSE_FLEET_SIGNING_KEY: required" in unsigned.stderr
    env["PARKPULSE_FLEET_SIGNING_KEY"] = str(private)
    run = subprocess.run([*cli, "serve", "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"published config v1 of {registry.gw2}" in run.stderr
    topic = config_topic(registry.park, registry.other_firm, registry.gw2)
    sub = Retained(broker.port, topic)
    try:
        deadline = time.monotonic() + 10
        while topic not in sub.got and time.monotonic() < deadline:
            time.sleep(0.05)
        push = parse_config_push(
            sub.got[topic], registry.gw2, verify_key=load_verify_key(public), max_age_s=60
        )
        assert push.sha256 == v.sha256
        with pytest.raises(ValueError, match="sig: does not verify"):
            parse_config_push(sub.got[topic], registry.gw2, verify_key=KEY.public_key())
    finally:
        sub.close()


def test_the_publisher_re_signs_retained_messages_when_due(
    registry: Registry, broker: MosquittoBroker
) -> None:
    pub = Publisher(registry.dsn, broker.url, signing_key=KEY, resign_s=1.0)
    with registry.conn() as conn:
        fleet.set_desired(conn, registry.gw, config(), by="a", reason="x")
        pub.connect()
        try:
            assert pub.sync(conn).published == 1
            assert pub.sync(conn).published == 0  # fresh
            first = conn.execute("SELECT published_at FROM fleet_published").fetchone()
            time.sleep(1.2)
            assert pub.sync(conn).published == 1  # due: signed again with a new issue time
            second = conn.execute("SELECT published_at FROM fleet_published").fetchone()
        finally:
            pub.close()
    assert first is not None and second is not None and second[0] > first[0]
