"""The broker side of managed configs, on the production Mosquitto configuration (deploy/mosquitto/,
started by tests/deploy/mosquitto_testkit.py with real password files): only the `fleet` account
writes pp/v1/+/+/+/config, a gateway reads its own config topic and no other, and the publisher
works with the fleet account and fails, named, with a gateway's."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import mosquitto_testkit as mk
import pytest
from mosquitto_testkit import Broker, Client, needs_mosquitto, refused, start_broker, wait
from platform_testkit import KEY, Registry, config

import fleet
from fleet._publisher import Publisher
from parkpulse.registry import Firm, Gateway, ParkFile, ParkInfo
from parkpulse.wire import config_payload, config_topic, parse_config_push
from provisioning.mosquitto_acl import SERVICE_ACL, gateway_acl

pytestmark = needs_mosquitto
FLEET_PW = "pf-fleet-pw"
A = "pp/v1/park1/firm1/gw-a/config"
B = "pp/v1/park1/firm2/gw-b/config"


def _with_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test kit's service accounts plus `fleet` (its password file is written from this dict)."""
    monkeypatch.setitem(mk.SERVICES, "fleet", FLEET_PW)
    monkeypatch.setitem(mk.USERS, "fleet", FLEET_PW)


def _generated_acl() -> str:
    pf = ParkFile(
        park=ParkInfo(id="park1", name="p"),
        firms=[
            Firm(id="firm1", name="f1", land_mu=1, gateways=[Gateway(id="gw-a")]),
            Firm(id="firm2", name="f2", land_mu=1, gateways=[Gateway(id="gw-b")]),
        ],
    )
    return gateway_acl([pf])


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory under /tmp (pytest's tmp_path sits below a root-only 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="pp-fleet-acl-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["pattern", "generated"])
def acl_broker(
    request: pytest.FixtureRequest, work: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Broker]:
    _with_fleet(monkeypatch)
    acl = (mk.DEPLOY / "acl").read_text() if request.param == "pattern" else _generated_acl()
    b = start_broker(work, acl)
    yield b
    b.stop()


def _payload(gateway: str, version: int) -> bytes:
    return config_payload(gateway, version, {"devices": []}, issued_by="test", reason="acl")


def test_only_fleet_writes_config_and_each_gateway_reads_its_own(acl_broker: Broker) -> None:
    fl = Client(acl_broker.services_port, "fleet", FLEET_PW)
    assert fl.accepted
    try:
        fl.c.publish(A, _payload("gw-a", 1), qos=1, retain=True)
        assert wait(lambda: bool(fl.pubacks) and all(rc < 0x80 for rc in fl.pubacks.values()), 5)
        assert fl.publish(B, _payload("gw-b", 1)) in (0, 16)  # fleet may write any gateway's
        # gateways may not write config topics, not even their own; other services neither
        assert refused(acl_broker, "gw-a", A)
        assert refused(acl_broker, "gw-a", B)
        assert refused(acl_broker, "gw-b", A)
        assert refused(acl_broker, "ingest", A)
        assert refused(acl_broker, "console", B)
        # gw-a gets its retained config; a subscription to gw-b's is refused and delivers nothing
        gw = Client(acl_broker.port, "gw-a")
        try:
            assert gw.subscribe(A) == [1]
            assert wait(lambda: any(t == A for t, _ in gw.got), 5)
            push = parse_config_push(next(p for t, p in gw.got if t == A), "gw-a")
            assert push.version == 1
            gw.subscribe(B)
            gw.subscribe("pp/v1/+/+/+/config")
            assert fl.publish(B, _payload("gw-b", 2)) in (
                0,
                16,
            )  # a live message too, not only the retained one
            time.sleep(0.5)
            assert {t for t, _ in gw.got} == {A}
        finally:
            gw.close()
    finally:
        fl.close()


def test_the_generator_and_the_shipped_acl_grant_the_same() -> None:
    acl = _generated_acl()
    assert "topic read pp/v1/park1/firm1/gw-a/config" in acl
    assert "topic write pp/v1/park1/firm1/gw-a/config" not in acl
    assert "user fleet\ntopic readwrite pp/v1/+/+/+/config" in SERVICE_ACL
    assert "pattern read pp/v1/+/+/%u/config" in (mk.DEPLOY / "acl").read_text()
    from parkpulse.wire import reserved_gateway_id

    assert reserved_gateway_id("fleet") is not None  # no gateway may take the fleet account's name


def test_publisher_with_the_fleet_account_and_refused_with_a_gateways(
    registry: Registry, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_fleet(monkeypatch)
    broker = start_broker(work, (mk.DEPLOY / "acl").read_text())
    try:
        with registry.conn() as conn:
            v = fleet.set_desired(conn, registry.gw, config(), by="a", reason="acl")
            gw_pub = Publisher(
                registry.dsn,
                f"mqtt://gw-a:{mk.GATEWAYS['gw-a']}@127.0.0.1:{broker.port}",
                signing_key=KEY,
                ack_timeout_s=3,
            )
            gw_pub.connect()
            try:
                res = gw_pub.sync(conn)
            finally:
                gw_pub.close()
            assert (res.published, res.failed) == (0, 1)
            assert conn.execute("SELECT count(*) FROM fleet_published").fetchone() == (0,)
            pub = Publisher(
                registry.dsn, f"mqtt://fleet:{FLEET_PW}@127.0.0.1:{broker.services_port}", signing_key=KEY
            )
            pub.connect()
            try:
                assert pub.sync(conn).published == 1
            finally:
                pub.close()
        mon = Client(broker.services_port, "fleet", FLEET_PW)
        try:
            topic = config_topic(registry.park, registry.firm, registry.gw)
            mon.subscribe(topic)
            assert wait(lambda: mon.got, 5)
            push = parse_config_push(mon.got[0][1], registry.gw, verify_key=KEY.public_key(), max_age_s=60)
            assert push.sha256 == v.sha256
        finally:
            mon.close()
    finally:
        broker.stop()
