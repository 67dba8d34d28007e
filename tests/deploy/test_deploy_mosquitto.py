"""The production broker configuration (deploy/mosquitto/) on a real Mosquitto.

The test starts /usr/sbin/mosquitto with deploy/mosquitto/mosquitto.conf and acl — only the
container paths and the listener port are rewritten for a temporary directory — and a password
file made with mosquitto_passwd. It proves that a gateway can publish inside its own
pp/v1/{park}/{firm}/{gateway}/ prefix and nowhere else, that anonymous and wrong-password
clients are refused, and that ingest's shared subscription receives the data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from deploy_tools.mosquitto_acl import SERVICE_ACL, gateway_acl
from parkpulse.registry import Firm, Gateway, ParkFile, ParkInfo
from parkpulse.services import free_port, wait_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
MOSQUITTO = "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd")
# Test-only account appended to the production ACL so the test can see every message delivered.
_ACL_MONITOR = "\n# test only\nuser monitor\ntopic read #\n"
USERS = {"monitor": "pm", "gw-a": "pa", "gw-b": "pb", "ingest": "pi", "alerts": "pal", "console": "pc"}

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs /usr/sbin/mosquitto (./run setup)")


def _start(tmp: Path, acl_text: str, tls_port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    assert PASSWD, "mosquitto_passwd not installed (Debian package mosquitto)"
    conf_dir, data = tmp / "config", tmp / "data"
    (conf_dir / "conf.d").mkdir(parents=True)
    data.mkdir()
    port = free_port()
    text = (DEPLOY / "mosquitto.conf").read_text()
    assert "listener 1883\n" in text and "/mosquitto/config/" in text
    text = (text.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
                .replace("/mosquitto/config/", f"{conf_dir}/").replace("/mosquitto/data/", f"{data}/")
                .replace("log_dest stdout", f"log_dest file {tmp}/mosquitto.log"))
    (conf_dir / "mosquitto.conf").write_text(text)
    (conf_dir / "acl").write_text(acl_text)
    if tls_port is not None:  # enable the TLS option the way the README says: conf.d/tls.conf
        tls = (DEPLOY / "conf.d" / "tls.conf.example").read_text()
        assert "listener 8883\n" in tls
        (conf_dir / "conf.d" / "tls.conf").write_text(
            tls.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n").replace("/mosquitto/certs/", f"{tmp}/certs/"))
    pw = conf_dir / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run([PASSWD, *(["-c"] if i == 0 else []), "-b", str(pw), user, password], check=True,
                       capture_output=True)
    pw.chmod(0o600)
    (conf_dir / "acl").chmod(0o600)
    if os.geteuid() == 0:
        # Mosquitto started as root drops to the `mosquitto` user: let that user read the files.
        for path in (tmp, *tmp.rglob("*")):
            shutil.chown(path, "mosquitto", "mosquitto")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf_dir / "mosquitto.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    if not wait_port("127.0.0.1", port, timeout=10):
        proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
        log = (tmp / "mosquitto.log").read_text() if (tmp / "mosquitto.log").exists() else ""
        pytest.fail(f"mosquitto did not start:\n{out}\n{log}")
    return proc, port


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory under /tmp (pytest's tmp_path sits below a root-only 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="pp-deploy-mosquitto-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker_pattern(work: Path) -> Iterator[int]:
    proc, port = _start(work, (DEPLOY / "acl").read_text() + _ACL_MONITOR)
    yield port
    proc.terminate()
    proc.wait(10)


class Client:
    """A paho MQTT 5 client that records PUBACK reason codes and received messages."""

    def __init__(self, port: int, user: str | None, password: str | None = None) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}",
                             protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password if password is not None else USERS[user])
        self.connected = threading.Event()
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, int] = {}
        self.subacks: list[list[int]] = []
        self.got: list[tuple[str, bytes]] = []
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append([rc.value for rc in rcs])
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        self.connected.wait(5)

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        self.connack = rc
        self.connected.set()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, props: Properties | None) -> None:
        self.pubacks[mid] = rc.value

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


def _wait(cond: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def _refused(port: int, user: str, topic: str) -> bool:
    """A fresh client publishes once at QoS 1. Mosquitto 2.0 answers an unauthorised publish with
    PUBACK 135 (not authorised) and may then drop the connection; either counts as refused."""
    c = Client(port, user)
    try:
        rc = c.publish(topic, b"bad")
        return rc == 135 or (rc == -1 and not c.c.is_connected())
    finally:
        c.close()


def test_deploy_gateway_publishes_only_under_its_prefix(broker_pattern: int) -> None:
    port = broker_pattern
    monitor = Client(port, "monitor")  # test-only account that reads everything (see _ACL_MONITOR)
    ingest = Client(port, "ingest")
    console = Client(port, "console")
    gw = Client(port, "gw-a")
    try:
        assert ingest.connack is not None and ingest.connack.value == 0
        assert monitor.subscribe("#") == [1]
        assert ingest.subscribe("$share/ingest/pp/v1/+/+/+/data") == [1]
        assert console.subscribe("pp/v1/+/alerts/#") == [1]
        # Inside its own prefix: accepted and delivered to ingest's shared subscription.
        assert gw.publish("pp/v1/park1/firm1/gw-a/data", b"ok-1") in (0, 16)
        assert gw.publish("pp/v1/park1/firm1/gw-a/status", b"ok-2") in (0, 16)
        assert _wait(lambda: ("pp/v1/park1/firm1/gw-a/data", b"ok-1") in ingest.got)
        assert _wait(lambda: ("pp/v1/park1/firm1/gw-a/status", b"ok-2") in monitor.got)
        # Outside: another gateway's prefix, the alerts namespace, anything else — refused.
        for topic in ("pp/v1/park1/firm1/gw-b/data", "pp/v1/park1/alerts/gw-a/data", "pp/v1/park1/firm1/gw-a/cmd",
                      "pp/v1/park1/firm1/gw-a", "factory/line-1/telemetry", "pp/v1/park1/firm1/gw-a2/data"):
            assert _refused(port, "gw-a", topic), f"gw-a could publish to {topic}"
        # The alerts service may publish alerts; the console reads them.
        alerts = Client(port, "alerts")
        try:
            assert alerts.publish("pp/v1/park1/alerts/emission/1", b"alert") in (0, 16)
        finally:
            alerts.close()
        assert _wait(lambda: ("pp/v1/park1/alerts/emission/1", b"alert") in console.got)
        assert _refused(port, "gw-a", "pp/v1/park1/alerts/emission/2")
        # A gateway cannot read another gateway's stream.
        spy = Client(port, "gw-a")
        try:
            spy.subscribe("pp/v1/+/+/gw-b/data")
            gwb = Client(port, "gw-b")
            try:
                assert gwb.publish("pp/v1/park1/firm1/gw-b/data", b"b-1") in (0, 16)
            finally:
                gwb.close()
            assert _wait(lambda: ("pp/v1/park1/firm1/gw-b/data", b"b-1") in ingest.got)
            assert not spy.got
        finally:
            spy.close()
        time.sleep(0.3)
        leaked = [t for t, payload in monitor.got if payload == b"bad"]
        assert not leaked, f"refused publishes reached subscribers: {leaked}"
    finally:
        for c in (monitor, ingest, console, gw):
            c.close()


def test_deploy_ingest_may_ask_only_the_gateway_itself_to_resend(broker_pattern: int) -> None:
    """Gap fill: ingest publishes resend requests; a gateway reads its own resend topic only and
    cannot ask another gateway to re-send."""
    port = broker_pattern
    gw_a = Client(port, "gw-a")
    gw_b = Client(port, "gw-b")
    ingest = Client(port, "ingest")
    try:
        # Mosquitto 2.0 grants the SUBACK and applies the read ACL when it delivers.
        gw_a.subscribe("pp/v1/park1/firm1/gw-a/resend")
        gw_a.subscribe("pp/v1/park1/firm1/gw-b/resend")
        gw_a.subscribe("pp/v1/park1/firm1/gw-b/data")
        gw_b.subscribe("pp/v1/park1/firm1/gw-b/resend")
        assert ingest.publish("pp/v1/park1/firm1/gw-a/resend", b"req-a") in (0, 16)
        assert ingest.publish("pp/v1/park1/firm1/gw-b/resend", b"req-b") in (0, 16)
        assert gw_b.publish("pp/v1/park1/firm1/gw-b/data", b"data-b") in (0, 16)
        assert _wait(lambda: ("pp/v1/park1/firm1/gw-a/resend", b"req-a") in gw_a.got)
        assert _wait(lambda: ("pp/v1/park1/firm1/gw-b/resend", b"req-b") in gw_b.got)
        time.sleep(0.3)
        assert gw_a.got == [("pp/v1/park1/firm1/gw-a/resend", b"req-a")], "gw-a read another gateway's topics"
        assert gw_b.got == [("pp/v1/park1/firm1/gw-b/resend", b"req-b")]
        assert _refused(port, "gw-a", "pp/v1/park1/firm1/gw-b/resend")
        assert _refused(port, "gw-a", "pp/v1/park1/firm1/gw-a/resend")  # only the platform asks
        assert _refused(port, "console", "pp/v1/park1/firm1/gw-a/resend")
    finally:
        for c in (gw_a, gw_b, ingest):
            c.close()


def test_deploy_broker_refuses_anonymous_and_wrong_password(broker_pattern: int) -> None:
    anon = Client(broker_pattern, None)
    wrong = Client(broker_pattern, "gw-a", password="nope")
    try:
        assert anon.connack is not None and anon.connack.value in (134, 135)  # bad credentials / not authorised
        assert wrong.connack is not None and wrong.connack.value in (134, 135)
    finally:
        anon.close()
        wrong.close()


def test_deploy_generated_acl_pins_park_and_firm(work: Path) -> None:
    pf = ParkFile(park=ParkInfo(id="park1", name="园区"), firms=[
        Firm(id="firm1", name="甲", land_mu=10, gateways=[Gateway(id="gw-a")]),
        Firm(id="firm2", name="乙", land_mu=10, gateways=[Gateway(id="gw-b")]),
    ])
    acl = gateway_acl([pf])
    proc, port = _start(work, acl)
    gw = Client(port, "gw-a")
    try:
        assert gw.publish("pp/v1/park1/firm1/gw-a/data") in (0, 16)
        # Allowed by the pattern ACL (park and firm are '+') but not by the generated one.
        assert gw.publish("pp/v1/park9/firm9/gw-a/data") == 135
        assert gw.publish("pp/v1/park1/firm2/gw-b/data") == 135
        assert "topic read pp/v1/park1/firm1/gw-a/resend" in acl
        assert "topic read pp/v1/park1/firm1/gw-a/#" not in acl
    finally:
        gw.close()
        proc.terminate()
        proc.wait(10)


def test_deploy_acl_service_accounts_agree() -> None:
    def rules(text: str) -> list[str]:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        return lines[lines.index("user ingest"):]

    assert rules((DEPLOY / "acl").read_text()) == rules(SERVICE_ACL), "deploy/mosquitto/acl and the generator disagree"
    with pytest.raises(ValueError, match="used twice"):
        gateway_acl([  # two parks' files naming the same gateway
            ParkFile(park=ParkInfo(id=p, name=p), firms=[Firm(id=f"{p}-a", name="a", land_mu=1, gateways=[Gateway(id="g")])])
            for p in ("p1", "p2")
        ])


def _certs(d: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
    d.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=parkpulse-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt",
        "-days", "2", "-extfile", "ext.cnf")
    for f in d.iterdir():
        f.chmod(0o644)


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make test certificates")
def test_deploy_tls_listener_option(work: Path) -> None:
    _certs(work / "certs")
    tls_port = free_port()
    proc, _plain_port = _start(work, (DEPLOY / "acl").read_text(), tls_port=tls_port)
    assert wait_port("127.0.0.1", tls_port, timeout=10)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-tls", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(work / "certs" / "ca.crt"))
    c.username_pw_set("gw-a", USERS["gw-a"])
    acks: dict[int, int] = {}
    c.on_publish = lambda cl, u, mid, rc, props: acks.__setitem__(mid, rc.value)
    try:
        c.connect("127.0.0.1", tls_port, keepalive=10)
        c.loop_start()
        assert _wait(c.is_connected, 5), "TLS connection with the CA certificate failed"
        ok = c.publish("pp/v1/park1/firm1/gw-a/data", b"tls", qos=1)
        bad = c.publish("pp/v1/park1/firm1/gw-b/data", b"bad", qos=1)
        assert _wait(lambda: ok.mid in acks and (bad.mid in acks or not c.is_connected()), 5)
        assert acks[ok.mid] in (0, 16)
        assert acks.get(bad.mid, 135) == 135  # the ACL applies on the TLS listener too
    finally:
        c.disconnect()
        c.loop_stop()
        proc.terminate()
        proc.wait(10)
