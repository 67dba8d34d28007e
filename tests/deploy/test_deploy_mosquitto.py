"""The production broker configuration (deploy/mosquitto/) on a real Mosquitto.

The test starts /usr/sbin/mosquitto with deploy/mosquitto/mosquitto.conf and acl — only the
container paths and the listener ports are rewritten for a temporary directory — and the password
files made with mosquitto_passwd (mosquitto_testkit.py). It proves that a gateway can publish inside its own
pp/v1/{park}/{firm}/{gateway}/ prefix and nowhere else, that anonymous and wrong-password
clients are refused, and that ingest's shared subscription receives the data.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mosquitto_testkit import (
    ACL_MONITOR,
    DEPLOY,
    USERS,
    Broker,
    Client,
    needs_mosquitto,
    refused,
    start_broker,
    wait,
)
from paho.mqtt.enums import CallbackAPIVersion

from parkpulse.registry import Firm, Gateway, ParkFile, ParkInfo
from parkpulse.services import free_port, wait_port
from provisioning.mosquitto_acl import SERVICE_ACL, gateway_acl

pytestmark = needs_mosquitto


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory under /tmp (pytest's tmp_path sits below a root-only 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="pp-deploy-mosquitto-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker_pattern(work: Path) -> Iterator[Broker]:
    broker = start_broker(work, (DEPLOY / "acl").read_text() + ACL_MONITOR)
    yield broker
    broker.stop()


def test_deploy_gateway_publishes_only_under_its_prefix(broker_pattern: Broker) -> None:
    b = broker_pattern
    monitor = Client(b.services_port, "monitor")  # test-only account that reads everything (ACL_MONITOR)
    ingest = Client(b.services_port, "ingest")
    console = Client(b.services_port, "console")
    gw = Client(b.port, "gw-a")
    try:
        assert ingest.connack is not None and ingest.connack.value == 0
        assert monitor.subscribe("#") == [1]
        assert ingest.subscribe("$share/ingest/pp/v1/+/+/+/data") == [1]
        assert console.subscribe("pp/v1/+/alerts/#") == [1]
        # Inside its own prefix: accepted and delivered to ingest's shared subscription.
        assert gw.publish("pp/v1/park1/firm1/gw-a/data", b"ok-1") in (0, 16)
        assert gw.publish("pp/v1/park1/firm1/gw-a/status", b"ok-2") in (0, 16)
        assert wait(lambda: ("pp/v1/park1/firm1/gw-a/data", b"ok-1") in ingest.got)
        assert wait(lambda: ("pp/v1/park1/firm1/gw-a/status", b"ok-2") in monitor.got)
        # One connection per gateway account: the broker gives every gw-a connection the client id
        # gw-a, so the probes below would take this one's place (and it would take theirs back).
        gw.close()
        # Outside: another gateway's prefix, the alerts namespace, anything else — refused.
        for topic in (
            "pp/v1/park1/firm1/gw-b/data",
            "pp/v1/park1/alerts/gw-a/data",
            "pp/v1/park1/firm1/gw-a/cmd",
            "pp/v1/park1/firm1/gw-a",
            "factory/line-1/telemetry",
            "pp/v1/park1/firm1/gw-a2/data",
        ):
            assert refused(b, "gw-a", topic), f"gw-a could publish to {topic}"
        # The alerts service may publish alerts; the console reads them.
        alerts = Client(b.services_port, "alerts")
        try:
            assert alerts.publish("pp/v1/park1/alerts/emission/1", b"alert") in (0, 16)
        finally:
            alerts.close()
        assert wait(lambda: ("pp/v1/park1/alerts/emission/1", b"alert") in console.got)
        assert refused(b, "gw-a", "pp/v1/park1/alerts/emission/2")
        # A gateway cannot read another gateway's stream.
        spy = Client(b.port, "gw-a")
        try:
            spy.subscribe("pp/v1/+/+/gw-b/data")
            gwb = Client(b.port, "gw-b")
            try:
                assert gwb.publish("pp/v1/park1/firm1/gw-b/data", b"b-1") in (0, 16)
            finally:
                gwb.close()
            assert wait(lambda: ("pp/v1/park1/firm1/gw-b/data", b"b-1") in ingest.got)
            assert not spy.got
        finally:
            spy.close()
        time.sleep(0.3)
        leaked = [t for t, payload in monitor.got if payload == b"bad"]
        assert not leaked, f"refused publishes reached subscribers: {leaked}"
    finally:
        for c in (monitor, ingest, console, gw):
            c.close()


def test_deploy_ingest_may_ask_only_the_gateway_itself_to_resend(broker_pattern: Broker) -> None:
    """Gap fill: ingest publishes resend requests; a gateway reads its own resend topic only and
    cannot ask another gateway to re-send."""
    b = broker_pattern
    gw_a = Client(b.port, "gw-a")
    gw_b = Client(b.port, "gw-b")
    ingest = Client(b.services_port, "ingest")
    try:
        # Mosquitto 2.0 grants the SUBACK and applies the read ACL when it delivers.
        gw_a.subscribe("pp/v1/park1/firm1/gw-a/resend")
        gw_a.subscribe("pp/v1/park1/firm1/gw-b/resend")
        gw_a.subscribe("pp/v1/park1/firm1/gw-b/data")
        gw_b.subscribe("pp/v1/park1/firm1/gw-b/resend")
        assert ingest.publish("pp/v1/park1/firm1/gw-a/resend", b"req-a") in (0, 16)
        assert ingest.publish("pp/v1/park1/firm1/gw-b/resend", b"req-b") in (0, 16)
        assert gw_b.publish("pp/v1/park1/firm1/gw-b/data", b"data-b") in (0, 16)
        assert wait(lambda: ("pp/v1/park1/firm1/gw-a/resend", b"req-a") in gw_a.got)
        assert wait(lambda: ("pp/v1/park1/firm1/gw-b/resend", b"req-b") in gw_b.got)
        time.sleep(0.3)
        assert gw_a.got == [("pp/v1/park1/firm1/gw-a/resend", b"req-a")], "gw-a read another gateway's topics"
        assert gw_b.got == [("pp/v1/park1/firm1/gw-b/resend", b"req-b")]
        assert refused(b, "gw-a", "pp/v1/park1/firm1/gw-b/resend")
        assert refused(b, "gw-a", "pp/v1/park1/firm1/gw-a/resend")  # only the platform asks
        assert refused(b, "console", "pp/v1/park1/firm1/gw-a/resend")
    finally:
        for c in (gw_a, gw_b, ingest):
            c.close()


def test_deploy_broker_refuses_anonymous_and_wrong_password(broker_pattern: Broker) -> None:
    b = broker_pattern
    clients = [Client(port, None, reconnect=False) for port in (b.port, b.services_port)]
    clients += [Client(port, "gw-a", password="nope", reconnect=False) for port in (b.port, b.services_port)]
    # Each kind of account logs in on its own listener only.
    clients += [Client(b.services_port, "gw-a", reconnect=False), Client(b.port, "ingest", reconnect=False)]
    try:
        for c in clients:  # bad credentials / not authorised
            assert c.connack is not None and c.connack.value in (134, 135), (c.client_id, c.connack)
    finally:
        for c in clients:
            c.close()


def test_deploy_generated_acl_pins_park_and_firm(work: Path) -> None:
    pf = ParkFile(
        park=ParkInfo(id="park1", name="园区"),
        firms=[
            Firm(id="firm1", name="甲", land_mu=10, gateways=[Gateway(id="gw-a")]),
            Firm(id="firm2", name="乙", land_mu=10, gateways=[Gateway(id="gw-b")]),
        ],
    )
    acl = gateway_acl([pf])
    broker = start_broker(work, acl)
    gw = Client(broker.port, "gw-a")
    try:
        assert gw.publish("pp/v1/park1/firm1/gw-a/data") in (0, 16)
        # Allowed by the pattern ACL (park and firm are '+') but not by the generated one.
        assert gw.publish("pp/v1/park9/firm9/gw-a/data") == 135
        assert gw.publish("pp/v1/park1/firm2/gw-b/data") == 135
        assert "topic read pp/v1/park1/firm1/gw-a/resend" in acl
        assert "topic read pp/v1/park1/firm1/gw-a/#" not in acl
    finally:
        gw.close()
        broker.stop()


def test_deploy_acl_service_accounts_agree() -> None:
    def rules(text: str) -> list[str]:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        return lines[lines.index("user ingest") :]

    assert rules((DEPLOY / "acl").read_text()) == rules(SERVICE_ACL), (
        "deploy/mosquitto/acl and the generator disagree"
    )
    with pytest.raises(ValueError, match="used twice"):
        gateway_acl(
            [  # two parks' files naming the same gateway
                ParkFile(
                    park=ParkInfo(id=p, name=p),
                    firms=[Firm(id=f"{p}-a", name="a", land_mu=1, gateways=[Gateway(id="g")])],
                )
                for p in ("p1", "p2")
            ]
        )


def _certs(d: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
    d.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=parkpulse-test-ca",
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    for f in d.iterdir():
        f.chmod(0o644)


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make test certificates")
def test_deploy_tls_listener_option(work: Path) -> None:
    _certs(work / "certs")
    tls_port = free_port()
    broker = start_broker(work, (DEPLOY / "acl").read_text(), tls_port=tls_port)
    assert wait_port("127.0.0.1", tls_port, timeout=10)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-tls", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(work / "certs" / "ca.crt"))
    c.username_pw_set("gw-a", USERS["gw-a"])
    acks: dict[int, int] = {}
    c.on_publish = lambda cl, u, mid, rc, props: acks.__setitem__(mid, rc.value)
    try:
        c.connect("127.0.0.1", tls_port, keepalive=10)
        c.loop_start()
        assert wait(c.is_connected, 5), "TLS connection with the CA certificate failed"
        ok = c.publish("pp/v1/park1/firm1/gw-a/data", b"tls", qos=1)
        bad = c.publish("pp/v1/park1/firm1/gw-b/data", b"bad", qos=1)
        assert wait(lambda: ok.mid in acks and (bad.mid in acks or not c.is_connected()), 5)
        assert acks[ok.mid] in (0, 16)
        assert acks.get(bad.mid, 135) == 135  # the ACL applies on the TLS listener too
    finally:
        c.disconnect()
        c.loop_stop()
        broker.stop()
