"""Helpers of the console's fleet tests: a managed config stored for the seeded gateways through
the real `fleet` library, an app with the fleet pages mounted, form posting.

`console/app.py` registers the fleet router (the lead's one-line change); until it does, these
helpers mount it on the app they build, so the tests run the same routes either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from console_testkit import World, login, make_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient

import fleet
from console import _fleet_pages, create_app

MQTT_PASSWORD = "Pl4nt-broker-Secret-77"
URL_PASSWORD = "url-Secret-99x"

BASE_CONFIG: dict[str, Any] = {
    "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": 15020}],
    "devices": [
        {"id": "incomer", "bus": "lan", "device_id": 1, "profile": "acrel-adl400", "interval_s": 5},
        {"id": "boiler-feed", "bus": "lan", "device_id": 2, "profile": "acrel-adl400", "interval_s": 10},
    ],
    "dlt645_buses": [{"name": "meters-485", "type": "tcp", "host": "127.0.0.1", "port": 18899}],
    "dlt645_meters": [],
    "mqtt": [
        {
            "name": "plant-broker",
            "url": f"mqtt://plantuser:{URL_PASSWORD}@127.0.0.1:1883",
            "username": "plantuser",
            "password": MQTT_PASSWORD,
            "topics": [
                {"topic": "plant/line1", "device": "line1-sensor", "fields": {"kwh": "elec_import_kwh"}}
            ],
        }
    ],
}


def with_fleet_routes(app: FastAPI) -> FastAPI:
    if not any(getattr(r, "path", None) == "/fleet" for r in app.routes):
        app.include_router(_fleet_pages.router)
    return app


def store_config(
    dsn: str, gateway_id: str, config: dict[str, Any], *, by: str = "seed", reason: str = "seed"
) -> fleet.ConfigVersion:
    with psycopg.connect(dsn) as conn:
        return fleet.set_desired(conn, gateway_id, config, by=by, reason=reason)


def desired(dsn: str, gateway_id: str) -> fleet.ConfigVersion | None:
    with psycopg.connect(dsn) as conn:
        return fleet.desired(conn, gateway_id)


def history(dsn: str, gateway_id: str) -> list[fleet.ConfigVersion]:
    with psycopg.connect(dsn) as conn:
        return fleet.history(conn, gateway_id)


def report_status(dsn: str, gateway_id: str, *, applied: int | None, state: str = "applied") -> None:
    """What ingest stores from a managed gateway's retained status (`config` object)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        sha = conn.execute(
            "SELECT sha256 FROM fleet_configs WHERE gateway_id = %s AND version = %s", (gateway_id, applied)
        ).fetchone()
        conn.execute(
            """UPDATE gateway_status SET config_mode = 'managed', config_applied_version = %s,
                      config_applied_sha256 = %s, config_state = %s, config_at = now()
               WHERE gateway_id = %s""",
            (applied, sha[0] if sha else None, state, gateway_id),
        )


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_BASE = re.compile(r'name="base_version" value="([0-9]*)"')


def form_tokens(page: str) -> tuple[str, str]:
    """(csrf, base_version) of the first form of a page."""
    csrf, base = _CSRF.search(page), _BASE.search(page)
    assert csrf and base, "the page has a form with csrf and base_version"
    return csrf.group(1), base.group(1)


@pytest.fixture
def fleet_world(world: World) -> World:
    """The console's seeded world with version 1 stored for gateway 1 (park 1) and gateway 2 (park 2)."""
    store_config(world.dsn, world.gw1, BASE_CONFIG, reason="first managed config")
    store_config(world.dsn, world.gw2, BASE_CONFIG, reason="first managed config")
    return world


@pytest.fixture
def fleet_client(fleet_world: World) -> Iterator[Callable[[str], TestClient]]:
    """A signed-in TestClient per user (https base URL, so the Secure cookie is sent)."""
    made: list[TestClient] = []

    def as_user(user: str) -> TestClient:
        app = with_fleet_routes(create_app(make_settings(fleet_world.dsn)))
        c = TestClient(app, base_url="https://testserver", follow_redirects=False)
        c.__enter__()
        made.append(c)
        login(c, user, fleet_world.passwords[user])
        return c

    yield as_user
    for c in made:
        c.__exit__(None, None, None)
