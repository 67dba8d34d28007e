"""Ingest keeps a status' `config` object (a real ingest process, broker and database), and
v_gateway_fleet shows desired against applied, drift, devices and the last error."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from ingest_testkit import Park, q1, send, wait_for
from platform_testkit import config

import fleet
from parkpulse.services import MosquittoBroker
from parkpulse.wire import status_topic


def _status(gw: Any, cfg: dict[str, Any] | None, state: str = "online") -> tuple[str, bytes]:
    doc: dict[str, Any] = {
        "v": 1,
        "gateway": gw.gateway,
        "state": state,
        "version": "0.9.1",
        "spool_depth": 7,
    }
    if cfg is not None:
        doc["config"] = cfg
    return status_topic(gw.park, gw.firm, gw.gateway), orjson.dumps(doc)


def _fleet_row(dsn: str, gateway: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as c, c.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM v_gateway_fleet WHERE gateway_id = %s", (gateway,)).fetchone()
    assert row is not None
    return row


def test_status_config_is_stored_and_the_fleet_view_shows_drift(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    start_ingest(broker.url)
    g, other = park.gateways[0], park.gateways[1]
    with psycopg.connect(db, autocommit=True) as conn:
        v1 = fleet.set_desired(conn, g.gateway, config(), by="li.wei", reason="one")
        v2 = fleet.set_desired(
            conn, g.gateway, config({"id": "pump", "profile": "generic-meter"}), by="li.wei", reason="two"
        )
    # the gateway still runs version 1 and is applying version 2
    applying = {
        "mode": "managed",
        "desired_version": 2,
        "applied_version": 1,
        "applied_sha256": v1.sha256,
        "state": "applying",
        "at": 1_795_593_605_000,
    }
    send(broker.url, [_status(g, applying), _status(other, None)])
    wait_for(
        lambda: (
            q1(db, "SELECT config_state FROM gateway_status WHERE gateway_id = %s", g.gateway) == "applying"
        ),
        what="config state stored",
    )
    wait_for(
        lambda: q1(db, "SELECT state FROM gateway_status WHERE gateway_id = %s", other.gateway) == "online",
        what="other status stored",
    )
    row = _fleet_row(db, g.gateway)
    assert (row["mode"], row["desired_version"], row["applied_version"], row["config_state"]) == (
        "managed",
        2,
        1,
        "applying",
    )
    assert (
        row["drift"] is True
        and row["state"] == "online"
        and row["version"] == "0.9.1"
        and row["spool_depth"] == 7
    )
    assert row["config_at"].isoformat() == "2026-11-25T08:00:05+00:00"
    # the park file's meters plus the two the config registered (incomer, pump); none has reported: all failing
    assert (row["devices_ok"], row["devices_failing"]) == (0, len(g.devices) + 2)
    # the other gateway says nothing about its config: local mode, no drift
    assert (_fleet_row(db, other.gateway)["mode"], _fleet_row(db, other.gateway)["drift"]) == ("local", False)

    # applied: no drift; then a last will without the config object keeps what was reported
    applied = {**applying, "applied_version": 2, "applied_sha256": v2.sha256, "state": "applied"}
    send(broker.url, [_status(g, applied)])
    wait_for(
        lambda: (
            q1(db, "SELECT config_applied_version FROM gateway_status WHERE gateway_id = %s", g.gateway) == 2
        ),
        what="applied stored",
    )
    assert _fleet_row(db, g.gateway)["drift"] is False
    send(broker.url, [_status(g, None, state="offline")])
    wait_for(
        lambda: q1(db, "SELECT state FROM gateway_status WHERE gateway_id = %s", g.gateway) == "offline",
        what="last will stored",
    )
    row = _fleet_row(db, g.gateway)
    assert (row["state"], row["applied_version"], row["config_state"], row["drift"]) == (
        "offline",
        2,
        "applied",
        False,
    )

    # a refused push: the reason is the last error, and the gateway drifts from the new desired version
    with psycopg.connect(db, autocommit=True) as conn:
        fleet.rollback(conn, g.gateway, 1, by="li.wei", reason="back")
    rejected = {
        **applied,
        "desired_version": 3,
        "state": "rejected",
        "reason": "devices[1].host: unreachable",
    }
    send(broker.url, [_status(g, rejected)])
    wait_for(
        lambda: (
            q1(db, "SELECT config_state FROM gateway_status WHERE gateway_id = %s", g.gateway) == "rejected"
        ),
        what="rejection stored",
    )
    row = _fleet_row(db, g.gateway)
    assert (row["desired_version"], row["applied_version"], row["drift"]) == (3, 2, True)
    assert row["last_error"] == "devices[1].host: unreachable"


def test_a_bad_config_object_is_dead_lettered_named(
    db: str, broker: MosquittoBroker, park: Park, start_ingest: Any
) -> None:
    start_ingest(broker.url)
    g = park.gateways[0]
    send(broker.url, [_status(g, {"mode": "remote"})])
    wait_for(
        lambda: q1(db, "SELECT count(*) FROM dead_letters WHERE gateway_id = %s", g.gateway) == 1,
        what="dead letter",
    )
    assert q1(db, "SELECT field FROM dead_letters WHERE gateway_id = %s", g.gateway) == "config.mode"
    assert q1(db, "SELECT count(*) FROM gateway_status WHERE gateway_id = %s", g.gateway) == 0
    assert _fleet_row(db, g.gateway)["last_error"].startswith("status:")
