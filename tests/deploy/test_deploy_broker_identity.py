"""Broker identities that cannot be borrowed (issue 9), on a real Mosquitto with the shipped config.

A gateway account tries ingest's client id and another gateway's, with clean_start false, on
both listeners. Before, Mosquitto handed it the victim's persistent session: ingest was knocked
off, and another gateway's batches were PUBACKed and never delivered. Now the gateway listener
replaces the client id by the username and the services' listener refuses gateway accounts, so
the victims stay connected and every batch reaches ingest.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto_testkit import (
    ACL_MONITOR,
    DEPLOY,
    SERVICES,
    Broker,
    Client,
    needs_mosquitto,
    start_broker,
    wait,
)

from ingest.settings import IngestSettings

pytestmark = needs_mosquitto

DATA = "$share/ingest/pp/v1/+/+/+/data"
GW_B_DATA = "pp/v1/park1/firm1/gw-b/data"


@pytest.fixture
def broker() -> Iterator[Broker]:
    work = Path(tempfile.mkdtemp(prefix="pp-deploy-identity-"))
    work.chmod(0o755)
    b = start_broker(work, (DEPLOY / "acl").read_text() + ACL_MONITOR)
    yield b
    b.stop()
    shutil.rmtree(work, ignore_errors=True)


def _ingest_client_id(broker: Broker) -> str:
    """The client id ingest chooses by default when it logs in with the shipped service account."""
    url = f"mqtt://ingest:{SERVICES['ingest']}@127.0.0.1:{broker.services_port}"
    return IngestSettings(mqtt_url=url, database_url="postgresql://127.0.0.1/unused").client_id


def _attack(port: int, client_id: str) -> Client:
    """gw-a connects with someone else's client id, asking for the stored session."""
    return Client(port, "gw-a", client_id=client_id, persistent=True, reconnect=False)


def test_gateway_cannot_borrow_ingests_or_another_gateways_client_id(broker: Broker) -> None:
    ingest_id = _ingest_client_id(broker)
    ingest = Client(broker.services_port, "ingest", client_id=ingest_id, persistent=True)
    gw_b = Client(broker.port, "gw-b", client_id="pp-gw-park1-gw-b", persistent=True)
    attackers: list[Client] = []
    try:
        assert ingest.accepted and gw_b.accepted
        assert ingest.subscribe(DATA) == [1]
        assert gw_b.publish(GW_B_DATA, b"b-0") in (0, 16)
        assert wait(lambda: (GW_B_DATA, b"b-0") in ingest.got)

        # On the gateway listener: accepted, but as itself — the broker replaced the client id by
        # the username, so there is no stored session to resume and nobody is knocked off.
        for n, victim_id in enumerate((ingest_id, "pp-gw-park1-gw-b"), start=1):
            attacker = _attack(broker.port, victim_id)
            attackers.append(attacker)
            assert attacker.accepted, attacker.connack
            assert attacker.session_present is False, f"gw-a resumed the session of {victim_id}"
            # While the attacker holds its connection another gateway sends a batch: it reaches ingest.
            assert gw_b.publish(GW_B_DATA, f"b-{n}".encode()) in (0, 16)
            assert wait(lambda n=n: (GW_B_DATA, f"b-{n}".encode()) in ingest.got), f"batch b-{n} lost"
            attacker.close()
            Client(broker.port, "gw-a", reconnect=False).close()  # clean start: gw-a's own session ends
        assert "as gw-a " in broker.log_text()  # Mosquitto's "New client connected … as gw-a (…)"

        # On the services' listener a gateway account does not get in at all.
        for victim_id in (ingest_id, "pp-gw-park1-gw-b"):
            attacker = _attack(broker.services_port, victim_id)
            attackers.append(attacker)
            assert attacker.connack is not None and attacker.connack.value in (134, 135), attacker.connack

        assert gw_b.publish(GW_B_DATA, b"b-3") in (0, 16)
        assert wait(lambda: (GW_B_DATA, b"b-3") in ingest.got)
        time.sleep(0.3)
        # The victims never lost their connection; the attackers received nothing.
        assert ingest.disconnects == 0 and ingest.c.is_connected()
        assert gw_b.disconnects == 0 and gw_b.c.is_connected()
        assert [p for t, p in ingest.got if t == GW_B_DATA] == [b"b-0", b"b-1", b"b-2", b"b-3"]
        assert all(not a.got for a in attackers)
    finally:
        for c in (ingest, gw_b, *attackers):
            c.close()


def test_ingests_default_client_id_has_a_per_install_secret_part(broker: Broker) -> None:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    guessable = f"pp-ingest-{host}-ingest"
    ingest_id = _ingest_client_id(broker)
    assert ingest_id.startswith(guessable + "-") and len(ingest_id) == len(guessable) + 17
    assert ingest_id == _ingest_client_id(broker), "the id must be stable so the session survives restarts"
    other_install = IngestSettings(
        mqtt_url="mqtt://ingest:another-password@127.0.0.1:1884", database_url="postgresql://127.0.0.1/unused"
    ).client_id
    assert other_install != ingest_id
    explicit = IngestSettings(
        mqtt_url="mqtt://ingest:pi@127.0.0.1:1884",
        client_id_secret="s3cret-tag-key",
        database_url="postgresql://127.0.0.1/unused",
    ).client_id
    assert explicit not in (ingest_id, guessable) and explicit.startswith(guessable + "-")
    assert "s3cret-tag-key" not in explicit and SERVICES["ingest"] not in ingest_id


def test_persistent_sessions_still_work_for_n_ingest_processes_and_gateways(broker: Broker) -> None:
    """The binding must not cost what the sessions are for: two ingest processes share the one
    service account with their own ids, each resumes its session; a gateway resumes its own."""
    ids = [f"{_ingest_client_id(broker)}-{i}" for i in (1, 2)]
    members = [Client(broker.services_port, "ingest", client_id=i, persistent=True) for i in ids]
    gw_b = Client(broker.port, "gw-b", persistent=True)
    gw_b.subscribe("pp/v1/park1/firm1/gw-b/resend")
    try:
        for m in members:
            assert m.accepted and m.subscribe(DATA) == [1]
        for n in range(20):
            assert gw_b.publish(GW_B_DATA, f"x-{n}".encode()) in (0, 16)
        assert wait(lambda: sum(len(m.got) for m in members) == 20)
        assert all(m.disconnects == 0 for m in members), "two ingest processes knocked each other off"
        # Ingest member 1 goes away; the broker keeps its session; it comes back and resumes.
        members[0].close()
        again = Client(broker.services_port, "ingest", client_id=ids[0], persistent=True)
        members[0] = again
        assert again.accepted and again.session_present is True
        # The gateway goes away while ingest asks it to re-send; it comes back to its own session.
        gw_b.close()
        assert members[1].publish("pp/v1/park1/firm1/gw-b/resend", b"req") in (0, 16)
        gw_b = Client(broker.port, "gw-b", client_id="anything-it-likes", persistent=True)
        assert gw_b.accepted and gw_b.session_present is True
        assert wait(lambda: ("pp/v1/park1/firm1/gw-b/resend", b"req") in gw_b.got)
    finally:
        for c in (*members, gw_b):
            c.close()
